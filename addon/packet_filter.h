// SPDX-License-Identifier: MIT
// A tcpdump filter expression compiled by libpcap, run on raw packet bytes (mechanism only: the
// expression and what to do with the verdict belong to TypeScript).
#pragma once
#include <napi.h>

#include <cstdint>

// pcap's struct bpf_insn clashes with linux/bpf.h: keep libpcap out of this header.
struct bpf_program;

namespace proctap {

// Runs a compiled filter (opaque here: pcap's struct, not libbpf's of the same name) on one packet.
// Pure and reentrant: the ring-buffer poll thread calls it.
bool RunPacketFilter(const void* program, const uint8_t* data, uint32_t caplen, uint32_t len);

class PacketFilter : public Napi::ObjectWrap<PacketFilter> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit PacketFilter(const Napi::CallbackInfo& info);
  ~PacketFilter() override;
  /** The compiled program, for RunPacketFilter; lives as long as this object. */
  const void* program() const { return program_; }

 private:
  Napi::Value Matches(const Napi::CallbackInfo& info);
  struct bpf_program* program_ = nullptr;
};

}  // namespace proctap
