// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <memory>

#include "batch_pump.h"

namespace proctap {

// Size of one decoded proc event as delivered to JS (layout in src/native/native.d.ts).
constexpr size_t kProcRecordSize = 40;

// Netlink proc connector listener: fork/exec/exit of every process, batched per wake-up.
class ProcConnector : public Napi::ObjectWrap<ProcConnector> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit ProcConnector(const Napi::CallbackInfo& info);  // new ProcConnector(onBatch)
  ~ProcConnector() override;

 private:
  void Close(const Napi::CallbackInfo& info);
  void CloseInternal();

  int sock_ = -1;
  bool listening_ = false;
  std::shared_ptr<BatchPump> pump_;
};

}  // namespace proctap
