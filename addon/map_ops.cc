// SPDX-License-Identifier: MIT
#include "map_ops.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "errors.h"

namespace proctap {
namespace {

// Kernel-internal "not supported" (ENOTSUPP), as returned by bpf(2).
constexpr int kEnotsupp = 524;

bool IsPercpu(const bpf_map* map) {
  switch (bpf_map__type(map)) {
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
      return true;
    default:
      return false;
  }
}

Napi::Buffer<uint8_t> Bytes(Napi::Env env, Napi::Value value, size_t expected, const char* what,
                            const std::string& name) {
  if (!value.IsBuffer()) ThrowTypeError(env, std::string(what) + " for map '" + name + "' must be a Buffer");
  auto buf = value.As<Napi::Buffer<uint8_t>>();
  if (buf.Length() != expected) {
    ThrowTypeError(env, std::string(what) + " for map '" + name + "' must be " +
                            std::to_string(expected) + " bytes, got " + std::to_string(buf.Length()));
  }
  return buf;
}

int Fd(Napi::Env env, const bpf_map* map, const std::string& name) {
  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowError(env, "map '" + name + "' is not loaded (call load() first)");
  return fd;
}

}  // namespace

size_t MapValueSize(const bpf_map* map) {
  size_t size = bpf_map__value_size(map);
  if (!IsPercpu(map)) return size;
  int cpus = libbpf_num_possible_cpus();
  return ((size + 7) & ~size_t{7}) * (cpus > 0 ? cpus : 1);
}

std::optional<std::vector<uint8_t>> MapLookup(Napi::Env env, const bpf_map* map,
                                              const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  std::vector<uint8_t> value(MapValueSize(map));
  int err = bpf_map__lookup_elem(map, k.Data(), k.Length(), value.data(), value.size(), 0);
  if (err == -ENOENT) return std::nullopt;
  if (err) ThrowErrno(env, err, "lookup in map '" + name + "'");
  return value;
}

void MapUpdate(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key,
               Napi::Value value, uint64_t flags) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  auto v = Bytes(env, value, MapValueSize(map), "value", name);
  int err = bpf_map__update_elem(map, k.Data(), k.Length(), v.Data(), v.Length(), flags);
  if (err) ThrowErrno(env, err, "update of map '" + name + "'");
}

bool MapDelete(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  int err = bpf_map__delete_elem(map, k.Data(), k.Length(), 0);
  if (err == -ENOENT) return false;
  if (err) ThrowErrno(env, err, "delete from map '" + name + "'");
  return true;
}

std::optional<std::vector<uint8_t>> MapLookupAndDelete(Napi::Env env, const bpf_map* map,
                                                       const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  std::vector<uint8_t> value(MapValueSize(map));
  int err = bpf_map__lookup_and_delete_elem(map, k.Data(), k.Length(), value.data(), value.size(), 0);
  if (err == -ENOENT) return std::nullopt;
  if (err == -EINVAL || err == -kEnotsupp || err == -EOPNOTSUPP) {
    // Older kernels and some map types lack the combined command; not atomic, but equivalent.
    auto found = MapLookup(env, map, name, key);
    if (found && !MapDelete(env, map, name, key)) return std::nullopt;
    return found;
  }
  if (err) ThrowErrno(env, err, "lookup-and-delete in map '" + name + "'");
  return value;
}

Napi::Object MapDump(Napi::Env env, const bpf_map* map, const std::string& name) {
  int fd = Fd(env, map, name);
  size_t key_size = bpf_map__key_size(map);
  size_t value_size = MapValueSize(map);
  if (key_size == 0) ThrowTypeError(env, "map '" + name + "' has no keys to iterate");
  // A hash map restarts iteration when the previous key vanishes under us: max_entries bounds
  // the walk so concurrent deletes cannot loop forever.
  size_t limit = bpf_map__max_entries(map);
  std::vector<uint8_t> keys, values;
  std::vector<uint8_t> cur(key_size), next(key_size), value(value_size);
  size_t count = 0;
  bool first = true;
  for (size_t steps = 0; count < limit && steps <= 2 * limit; steps++) {
    int err = bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data());
    if (err) {
      err = errno;
      if (err == ENOENT) break;
      ThrowErrno(env, err, "iteration of map '" + name + "'");
    }
    first = false;
    cur.swap(next);
    err = bpf_map__lookup_elem(map, cur.data(), key_size, value.data(), value_size, 0);
    if (err == -ENOENT) continue;  // deleted since get_next_key
    if (err) ThrowErrno(env, err, "lookup in map '" + name + "'");
    keys.insert(keys.end(), cur.begin(), cur.end());
    values.insert(values.end(), value.begin(), value.end());
    count++;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  out.Set("keySize", Napi::Number::New(env, static_cast<double>(key_size)));
  out.Set("valueSize", Napi::Number::New(env, static_cast<double>(value_size)));
  out.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  out.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
  return out;
}

}  // namespace proctap
