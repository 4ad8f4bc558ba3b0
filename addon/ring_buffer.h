// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <memory>

#include "batch_pump.h"

namespace proctap {

struct RingBufferOptions {
  int poll_ms;
  size_t max_queued_batches;
};

// Opens libbpf's ring_buffer on `map_fd` and starts its poll thread. Batch framing:
// [u32 length][u32 0][record][zero pad to 8], repeated.
std::shared_ptr<BatchPump> StartRingBuffer(Napi::Env env, int map_fd, Napi::Function on_batch,
                                           const RingBufferOptions& options, Napi::Object owner);

}  // namespace proctap
