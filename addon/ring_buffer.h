// SPDX-License-Identifier: MIT
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "batch_pump.h"

namespace proctap {

// Records of one type that carry a packet are run through a compiled packet filter on the poll thread;
// those it rejects never reach JS (counted in `filtered`).
struct PacketFilterHook {
  const void* program = nullptr;  // RunPacketFilter's program; kept alive by the caller
  uint16_t record_type = 0;       // u16 at offset 0 of a record
  uint32_t data_offset = 0;
  uint32_t caplen_offset = 0;     // u32
  uint32_t origlen_offset = 0;    // u32
  std::shared_ptr<std::atomic<uint64_t>> filtered;
};

struct RingBufferOptions {
  int poll_ms;
  size_t max_queued_batches;
  size_t max_batch_bytes;  // a batch is delivered before it would grow past this
  PacketFilterHook packet_filter;
};

// Opens libbpf's ring_buffer on `map_fd` and starts its poll thread. Batch framing:
// [u32 length][u32 0][record][zero pad to 8], repeated.
std::shared_ptr<BatchPump> StartRingBuffer(Napi::Env env, int map_fd, Napi::Function on_batch,
                                           const RingBufferOptions& options, Napi::Object owner);

}  // namespace proctap
