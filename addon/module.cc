// SPDX-License-Identifier: MIT
// Entry point: exports the NativeModule surface described in src/native/native.d.ts.
#include <napi.h>

#include <bpf/libbpf.h>
#include <dlfcn.h>

#include <climits>
#include <cstdlib>
#include <string>

#include "bpf_object.h"
#include "conntrack.h"
#include "fifo.h"
#include "libpcap_capture.h"
#include "libbpf_log.h"
#include "packet_filter.h"
#include "proc_connector.h"

namespace proctap {
namespace {

// Per-env so the addon also works when loaded from worker threads.
struct AddonData {
  Napi::FunctionReference bpf_object;
  Napi::FunctionReference proc_connector;
  Napi::FunctionReference packet_filter;
  Napi::FunctionReference libpcap_capture;
};

Napi::Value OpenObject(const Napi::CallbackInfo& info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  return data->bpf_object.New({info[0]});
}

Napi::Value OpenProcConnector(const Napi::CallbackInfo& info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  return data->proc_connector.New({info[0], info.Length() > 1 ? info[1] : info.Env().Undefined()});
}

Napi::Value CompilePacketFilter(const Napi::CallbackInfo& info) {
  auto* data = info.Env().GetInstanceData<AddonData>();
  return data->packet_filter.New({info[0], info[1], info[2]});
}

Napi::Value LibbpfVersion(const Napi::CallbackInfo& info) {
  std::string version = std::to_string(libbpf_major_version()) + "." + std::to_string(libbpf_minor_version());
  // libbpf has no runtime patch level; the loaded library's real file name (libbpf.so.1.1.2)
  // does, so take it from there when it agrees with major.minor.
  Dl_info dl{};
  if (dladdr(reinterpret_cast<void*>(&libbpf_major_version), &dl) && dl.dli_fname != nullptr) {
    if (char* real = realpath(dl.dli_fname, nullptr)) {
      std::string file = real;
      free(real);
      size_t at = file.rfind(".so.");
      if (at != std::string::npos) {
        std::string suffix = file.substr(at + 4);
        if (suffix.rfind(version + ".", 0) == 0) version = suffix;
      }
    }
  }
  return Napi::String::New(info.Env(), version);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InstallLibbpfLog();
  auto* data = new AddonData();
  data->bpf_object = Napi::Persistent(BpfObject::Define(env));
  data->proc_connector = Napi::Persistent(ProcConnector::Define(env));
  data->packet_filter = Napi::Persistent(PacketFilter::Define(env));
  data->libpcap_capture = Napi::Persistent(LibpcapCapture::Define(env));
  env.SetInstanceData<AddonData>(data);

  exports.Set("openObject", Napi::Function::New<OpenObject>(env, "openObject"));
  exports.Set("openProcConnector", Napi::Function::New<OpenProcConnector>(env, "openProcConnector"));
  exports.Set("compilePacketFilter", Napi::Function::New<CompilePacketFilter>(env, "compilePacketFilter"));
  exports.Set("LibpcapCapture", data->libpcap_capture.Value());
  exports.Set("listInterfaces", Napi::Function::New<ListInterfaces>(env, "listInterfaces"));
  exports.Set("conntrackDump", Napi::Function::New<ConntrackDump>(env, "conntrackDump"));
  exports.Set("makeFifo", Napi::Function::New<MakeFifo>(env, "makeFifo"));
  exports.Set("libbpfVersion", Napi::Function::New<LibbpfVersion>(env, "libbpfVersion"));
  exports.Set("PROC_RECORD_SIZE", Napi::Number::New(env, static_cast<double>(kProcRecordSize)));
  return exports;
}

}  // namespace
}  // namespace proctap

static Napi::Object InitProctap(Napi::Env env, Napi::Object exports) { return proctap::Init(env, exports); }

NODE_API_MODULE(proctap, InitProctap)
