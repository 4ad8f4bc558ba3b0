// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <cstdint>
#include <map>
#include <atomic>
#include <memory>
#include <string>

#include "batch_pump.h"

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct bpf_link;

namespace proctap {

// One libbpf bpf_object, with the links attached from it and at most one ring buffer pump.
class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit BpfObject(const Napi::CallbackInfo& info);  // new BpfObject(path): bpf_object__open_file
  ~BpfObject() override;

 private:
  Napi::Value Programs(const Napi::CallbackInfo& info);
  Napi::Value Maps(const Napi::CallbackInfo& info);
  void SetAutoload(const Napi::CallbackInfo& info);
  void SetMapMaxEntries(const Napi::CallbackInfo& info);
  Napi::Value GetInitialValue(const Napi::CallbackInfo& info);
  void SetInitialValue(const Napi::CallbackInfo& info);
  void Load(const Napi::CallbackInfo& info);
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value AttachCgroup(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobe(const Napi::CallbackInfo& info);
  Napi::Value AttachUprobeMulti(const Napi::CallbackInfo& info);
  void SetExpectedAttachType(const Napi::CallbackInfo& info);
  void Detach(const Napi::CallbackInfo& info);
  Napi::Value MapLookup(const Napi::CallbackInfo& info);
  void MapUpdate(const Napi::CallbackInfo& info);
  Napi::Value MapDelete(const Napi::CallbackInfo& info);
  Napi::Value MapLookupAndDelete(const Napi::CallbackInfo& info);
  Napi::Value MapDump(const Napi::CallbackInfo& info);
  void StartRingBuffer(const Napi::CallbackInfo& info);
  Napi::Value StopRingBuffer(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);

  void CloseInternal();
  bpf_object* Obj(Napi::Env env) const;
  void RequireNotLoaded(Napi::Env env, const std::string& what) const;
  bpf_program* Program(Napi::Env env, const Napi::Value& name) const;
  bpf_map* Map(Napi::Env env, const Napi::Value& name) const;
  uint32_t AddLink(Napi::Env env, bpf_link* link, int err, const std::string& what, uint64_t mark);

  bpf_object* obj_ = nullptr;
  bool loaded_ = false;
  std::map<uint32_t, bpf_link*> links_;
  std::map<uint32_t, int> raw_links_;  // link fds made with bpf(BPF_LINK_CREATE) directly (uprobe_multi)
  uint32_t next_link_ = 1;
  std::shared_ptr<BatchPump> ring_;
  std::shared_ptr<std::atomic<uint64_t>> filtered_;
  Napi::ObjectReference filter_ref_;
  Napi::Value PacketsFilteredOut(const Napi::CallbackInfo& info);
};

}  // namespace proctap
