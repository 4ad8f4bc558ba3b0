// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <atomic>
#include <memory>

#include "batch_pump.h"
#include "batch_records.h"

namespace proctap {

// Size of one decoded proc event as delivered to JS (struct proc_event_record, batch_records.h).
constexpr size_t kProcRecordSize = sizeof(proc_event_record);

// Netlink proc connector listener: fork/exec/exit of every process, batched per wake-up.
class ProcConnector : public Napi::ObjectWrap<ProcConnector> {
 public:
  static Napi::Function Define(Napi::Env env);
  // new ProcConnector(onBatch, {receiveBufferBytes, maxQueuedBatches}): sizes are the caller's choice.
  explicit ProcConnector(const Napi::CallbackInfo& info);
  ~ProcConnector() override;

 private:
  void Close(const Napi::CallbackInfo& info);
  void SetPaused(const Napi::CallbackInfo& info);  // setPaused(bool): stop/resume reading the socket
  void CloseInternal();

  int sock_ = -1;
  bool listening_ = false;
  std::shared_ptr<std::atomic<bool>> paused_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<BatchPump> pump_;
};

}  // namespace proctap
