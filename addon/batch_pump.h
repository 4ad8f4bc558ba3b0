// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace proctap {

// A dedicated reader thread plus the ThreadSafeFunction that hands its byte batches to JS,
// one JS call per batch. Shared by the ring buffer and the proc connector.
//
// Lifetime: the owner (an ObjectWrap) and the TSFN finalizer each hold a shared_ptr, so the
// pump outlives whichever goes first. The thread is always joined on the JS thread, at the
// latest in the TSFN finalizer, which runs before Node frees the TSFN itself.
class BatchPump : public std::enable_shared_from_this<BatchPump> {
 public:
  using Body = std::function<void(BatchPump&)>;

  // JS thread. `owner` is kept alive until the pump finishes so GC cannot silently stop it.
  static std::shared_ptr<BatchPump> Start(Napi::Env env, Napi::Function on_batch,
                                          size_t max_queued, Napi::Object owner,
                                          const char* resource_name, Body body);
  ~BatchPump();

  // Worker thread. Blocks while max_queued batches wait for JS (back-pressure). Returns false
  // once JS is gone or the pump was aborted: the body must then return.
  bool Deliver(std::vector<uint8_t>&& bytes);
  // Readable once a stop was requested; the body polls it next to its own fd.
  int stop_fd() const { return stop_fd_; }

  // JS thread. Graceful: the body sees stop_fd, drains, returns; the promise resolves after the
  // last batch callback ran.
  Napi::Promise Stop(Napi::Env env);
  // JS thread. Immediate: undelivered batches are dropped, the thread is joined on return.
  void Abort();
  // JS thread: true until the final batch was delivered or the pump was aborted.
  bool active() const { return !finished_; }

 private:
  struct Item {
    std::vector<uint8_t> bytes;
    bool done = false;
  };
  static void CallJs(Napi::Env env, Napi::Function fn, BatchPump* pump, Item* item);
  using Tsfn = Napi::TypedThreadSafeFunction<BatchPump, Item, CallJs>;

  BatchPump() = default;
  void Run();
  void SignalStop();
  void Join();
  void Finish();  // JS thread: releases the owner, resolves Stop() promises
  void OnFinalize();

  Tsfn tsfn_;
  Body body_;
  std::thread thread_;
  int stop_fd_ = -1;
  std::atomic<bool> closing_{false};    // worker saw napi_closing: it must not touch tsfn_ again
  bool finished_ = false;               // JS thread only
  bool tsfn_finalized_ = false;         // JS thread only: tsfn_ is freed, never call it
  Napi::ObjectReference owner_;
  std::vector<Napi::Promise::Deferred> stop_waiters_;
};

// Frames records into the worker's current batch: each record is a fixed header then its payload, zero
// padded to 8 bytes. Once max_bytes would be passed the batch is delivered first, so one burst cannot pin
// hundreds of MiB in JS. Worker thread only. Shared by the ring buffer, libpcap and the proc connector.
class BatchBuilder {
 public:
  BatchBuilder(BatchPump& pump, size_t max_bytes) : pump_(pump), max_bytes_(max_bytes) {}
  // False once JS is gone (Deliver failed): the caller must stop.
  bool Append(const void* header, size_t header_size, const void* payload, size_t payload_size);
  // Delivers what is pending (nothing to do when empty). False once JS is gone.
  bool Flush();
  size_t pending_bytes() const { return batch_.size(); }
  int stop_fd() const { return pump_.stop_fd(); }
  // Records in the batch being built.
  uint64_t pending_records() const { return records_; }

 private:
  BatchPump& pump_;
  size_t max_bytes_;
  std::vector<uint8_t> batch_;
  uint64_t records_ = 0;
};

}  // namespace proctap
