// SPDX-License-Identifier: MIT
#include "batch_pump.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "errors.h"

namespace proctap {

std::shared_ptr<BatchPump> BatchPump::Start(Napi::Env env, Napi::Function on_batch,
                                            size_t max_queued, Napi::Object owner,
                                            const char* resource_name, Body body) {
  std::shared_ptr<BatchPump> pump(new BatchPump());
  pump->stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (pump->stop_fd_ < 0) ThrowErrno(env, errno, "eventfd");
  pump->body_ = std::move(body);

  auto* keep_alive = new std::shared_ptr<BatchPump>(pump);
  try {
    pump->tsfn_ = Tsfn::New(
        env, on_batch, resource_name, max_queued, 1, pump.get(),
        [](Napi::Env, std::shared_ptr<BatchPump>* self, BatchPump*) {
          (*self)->OnFinalize();
          delete self;
        },
        keep_alive);
  } catch (...) {
    delete keep_alive;
    throw;
  }
  pump->owner_ = Napi::Persistent(owner);

  // Signals belong to Node's main thread; an EINTR storm in poll() helps nobody.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  try {
    pump->thread_ = std::thread([raw = pump.get()] { raw->Run(); });
  } catch (const std::system_error& e) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pump->finished_ = true;
    pump->owner_.Reset();
    pump->tsfn_.Abort();
    ThrowErrno(env, e.code().value(), "std::thread");
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pump;
}

BatchPump::~BatchPump() {
  Join();
  if (stop_fd_ >= 0) close(stop_fd_);
}

void BatchPump::Run() {
  body_(*this);
  // Free the body's resources (ring buffer, socket) here, before JS can observe completion.
  body_ = nullptr;
  if (closing_) return;
  auto* done = new Item();
  done->done = true;
  if (tsfn_.BlockingCall(done) != napi_ok) {
    delete done;
    return;
  }
  tsfn_.Release();
}

bool BatchPump::Deliver(std::vector<uint8_t>&& bytes) {
  if (closing_) return false;
  auto* item = new Item();
  item->bytes = std::move(bytes);
  if (tsfn_.BlockingCall(item) != napi_ok) {
    delete item;
    closing_ = true;
    return false;
  }
  return true;
}

void BatchPump::CallJs(Napi::Env env, Napi::Function fn, BatchPump* pump, Item* item) {
  std::unique_ptr<Item> owned(item);
  if (env == nullptr) return;  // TSFN torn down with items still queued
  if (item->done) {
    pump->Join();
    pump->Finish();
    return;
  }
  // The ArrayBuffer adopts the vector's storage: no copy, freed by V8's GC.
  auto* storage = new std::vector<uint8_t>(std::move(item->bytes));
  Napi::ArrayBuffer batch = Napi::ArrayBuffer::New(
      env, storage->data(), storage->size(),
      [](Napi::Env, void*, std::vector<uint8_t>* v) { delete v; }, storage);
  try {
    fn.Call({batch});
  } catch (const Napi::Error& e) {
    // Node 20 only warns (DEP0168) about exceptions escaping a TSFN callback and drops them;
    // a throwing onBatch is a bug that must surface as 'uncaughtException' like any callback.
    napi_fatal_exception(env, e.Value());
  }
}

void BatchPump::SignalStop() {
  uint64_t one = 1;
  ssize_t ignored = write(stop_fd_, &one, sizeof(one));
  (void)ignored;  // only fails when the counter is already non-zero
}

void BatchPump::Join() {
  if (thread_.joinable()) thread_.join();
}

void BatchPump::Finish() {
  if (finished_) return;
  finished_ = true;
  owner_.Reset();
  auto waiters = std::move(stop_waiters_);
  for (auto& deferred : waiters) deferred.Resolve(deferred.Env().Undefined());
}

Napi::Promise BatchPump::Stop(Napi::Env env) {
  auto deferred = Napi::Promise::Deferred::New(env);
  if (finished_) {
    deferred.Resolve(env.Undefined());
  } else {
    stop_waiters_.push_back(deferred);
    SignalStop();
  }
  return deferred.Promise();
}

void BatchPump::Abort() {
  if (finished_) return;
  SignalStop();
  // Wakes a worker blocked in BlockingCall. Acquire first: Abort consumes a thread reference.
  if (!tsfn_finalized_ && tsfn_.Acquire() == napi_ok) tsfn_.Abort();
  Join();
  Finish();
}

void BatchPump::OnFinalize() {
  // Normal completion has already joined; at env teardown the worker may still be polling.
  tsfn_finalized_ = true;
  SignalStop();
  Join();
  finished_ = true;
  stop_waiters_.clear();
  owner_.Reset();
}

bool BatchBuilder::Append(const void* header, size_t header_size, const void* payload, size_t payload_size) {
  size_t framed = (header_size + payload_size + 7) & ~size_t{7};
  if (!batch_.empty() && batch_.size() + framed > max_bytes_ && !Flush()) return false;
  if (batch_.capacity() == 0) batch_.reserve(std::min<size_t>(max_bytes_, 256 * 1024));
  size_t at = batch_.size();
  batch_.resize(at + framed, 0);
  std::memcpy(batch_.data() + at, header, header_size);
  if (payload_size > 0) std::memcpy(batch_.data() + at + header_size, payload, payload_size);
  records_++;
  return true;
}

bool BatchBuilder::Flush() {
  if (batch_.empty()) return true;
  std::vector<uint8_t> out;
  out.swap(batch_);
  records_ = 0;
  return pump_.Deliver(std::move(out));
}

}  // namespace proctap
