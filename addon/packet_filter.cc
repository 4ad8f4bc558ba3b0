// SPDX-License-Identifier: MIT
#include "packet_filter.h"

#include <pcap/pcap.h>

#include <cstring>
#include <string>

#include "errors.h"

namespace proctap {

Napi::Function PacketFilter::Define(Napi::Env env) {
  return DefineClass(env, "PacketFilter", {InstanceMethod<&PacketFilter::Matches>("matches")});
}

// new PacketFilter(expression, linkType, snaplen): compiles with pcap_compile on a dead handle, so
// syntax errors surface before anything is traced.
PacketFilter::PacketFilter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketFilter>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsNumber() || !info[2].IsNumber())
    ThrowTypeError(env, "PacketFilter(expression: string, linkType: number, snaplen: number)");
  std::string expression = info[0].As<Napi::String>().Utf8Value();
  int link_type = info[1].As<Napi::Number>().Int32Value();
  int snaplen = info[2].As<Napi::Number>().Int32Value();
  pcap_t* dead = pcap_open_dead(link_type, snaplen);
  if (dead == nullptr) ThrowError(env, "pcap_open_dead failed");
  auto* program = new bpf_program{};
  if (pcap_compile(dead, program, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
    std::string message = pcap_geterr(dead);
    pcap_close(dead);
    delete program;
    ThrowError(env, "invalid filter '" + expression + "': " + message);
  }
  pcap_close(dead);
  program_ = program;
}

bool RunPacketFilter(const void* program, const uint8_t* data, uint32_t caplen, uint32_t len) {
  struct pcap_pkthdr header {};
  header.caplen = caplen;
  header.len = len < caplen ? caplen : len;
  return pcap_offline_filter(static_cast<const struct bpf_program*>(program), &header, data) != 0;
}

PacketFilter::~PacketFilter() {
  if (program_ == nullptr) return;
  pcap_freecode(program_);
  delete program_;
}

// matches(data: Uint8Array, originalLength: number): boolean
Napi::Value PacketFilter::Matches(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    ThrowTypeError(env, "matches(data: Uint8Array, originalLength: number)");
  auto data = info[0].As<Napi::Uint8Array>();
  struct pcap_pkthdr header {};
  header.caplen = static_cast<bpf_u_int32>(data.ByteLength());
  header.len = info[1].As<Napi::Number>().Uint32Value();
  if (header.len < header.caplen) header.len = header.caplen;
  return Napi::Boolean::New(env, pcap_offline_filter(program_, &header, data.Data()) != 0);
}

}  // namespace proctap
