// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <optional>
#include <vector>

struct bpf_map;

namespace proctap {

// Size of one value as user space sees it: per-CPU maps return one 8-byte-aligned slot per
// possible CPU.
size_t MapValueSize(const bpf_map* map);

// Helpers behind the BpfObject map methods; `name` is only used in error messages.
std::optional<std::vector<uint8_t>> MapLookup(Napi::Env env, const bpf_map* map,
                                              const std::string& name, Napi::Value key);
void MapUpdate(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key,
               Napi::Value value, uint64_t flags);
bool MapDelete(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key);
std::optional<std::vector<uint8_t>> MapLookupAndDelete(Napi::Env env, const bpf_map* map,
                                                       const std::string& name, Napi::Value key);
Napi::Object MapDump(Napi::Env env, const bpf_map* map, const std::string& name);

}  // namespace proctap
