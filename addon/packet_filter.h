// SPDX-License-Identifier: MIT
// A tcpdump filter expression compiled by libpcap, run on raw packet bytes (mechanism only: the
// expression and what to do with the verdict belong to TypeScript).
#pragma once
#include <napi.h>

// pcap's struct bpf_insn clashes with linux/bpf.h: keep libpcap out of this header.
struct bpf_program;

namespace proctap {

class PacketFilter : public Napi::ObjectWrap<PacketFilter> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit PacketFilter(const Napi::CallbackInfo& info);
  ~PacketFilter() override;

 private:
  Napi::Value Matches(const Napi::CallbackInfo& info);
  struct bpf_program* program_ = nullptr;
};

}  // namespace proctap
