// SPDX-License-Identifier: MIT
#include "ring_buffer.h"

#include <bpf/libbpf.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "errors.h"
#include "libbpf_log.h"
#include "packet_filter.h"

namespace proctap {
namespace {

class RingBufferReader {
 public:
  explicit RingBufferReader(PacketFilterHook hook) : hook_(std::move(hook)) {}
  ~RingBufferReader() { ring_buffer__free(rb_); }
  RingBufferReader(const RingBufferReader&) = delete;
  RingBufferReader& operator=(const RingBufferReader&) = delete;

  // Returns 0 or -errno; the reader is the sample callback's context, so it exists first.
  int Open(int map_fd) {
    rb_ = ring_buffer__new(map_fd, OnSample, this, nullptr);
    return rb_ == nullptr ? -errno : 0;
  }

  void Run(BatchPump& pump, int poll_ms, size_t max_batch_bytes) {
    BatchBuilder batch(pump, max_batch_bytes);
    batch_ = &batch;
    pollfd fds[2] = {{ring_buffer__epoll_fd(rb_), POLLIN, 0}, {pump.stop_fd(), POLLIN, 0}};
    for (;;) {
      // Producers submit with BPF_RB_NO_WAKEUP, so the timeout, not readiness, is the usual
      // reason to wake up; consume unconditionally either way.
      int n = poll(fds, 2, poll_ms);
      if (n < 0 && errno != EINTR) return;
      bool stopping = n > 0 && (fds[1].revents & POLLIN);
      int err = ring_buffer__consume(rb_);
      if (err == -ECANCELED) return;  // Deliver() failed inside the callback: JS is gone
      if (!batch.Flush()) return;
      if (stopping) return;  // that consume was the final drain
    }
  }

 private:
  bool Rejected(const uint8_t* record, size_t size) const {
    if (hook_.program == nullptr || size < hook_.data_offset || size < 2) return false;
    uint16_t type;
    std::memcpy(&type, record, sizeof(type));
    if (type != hook_.record_type) return false;
    uint32_t caplen, origlen;
    std::memcpy(&caplen, record + hook_.caplen_offset, sizeof(caplen));
    std::memcpy(&origlen, record + hook_.origlen_offset, sizeof(origlen));
    if (caplen > size - hook_.data_offset) caplen = static_cast<uint32_t>(size - hook_.data_offset);
    if (RunPacketFilter(hook_.program, record + hook_.data_offset, caplen, origlen)) return false;
    hook_.filtered->fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  int Append(const void* data, size_t size) {
    if (Rejected(static_cast<const uint8_t*>(data), size)) return 0;
    uint32_t header[2] = {static_cast<uint32_t>(size), 0};
    return batch_->Append(header, sizeof(header), data, size) ? 0 : -ECANCELED;
  }

  static int OnSample(void* ctx, void* data, size_t size) {
    return static_cast<RingBufferReader*>(ctx)->Append(data, size);
  }

  PacketFilterHook hook_;
  ring_buffer* rb_ = nullptr;
  BatchBuilder* batch_ = nullptr;  // Run()'s, while it runs
};

}  // namespace

std::shared_ptr<BatchPump> StartRingBuffer(Napi::Env env, int map_fd, Napi::Function on_batch,
                                           const RingBufferOptions& options, Napi::Object owner) {
  auto reader = std::make_shared<RingBufferReader>(options.packet_filter);
  uint64_t mark = LibbpfLogMark();
  if (int err = reader->Open(map_fd)) ThrowErrno(env, err, "ring_buffer__new", LibbpfLogTail(mark));
  int poll_ms = options.poll_ms;
  size_t max_batch_bytes = options.max_batch_bytes;
  // The body's copy of `reader` is dropped on the poll thread when it ends, freeing the ring.
  return BatchPump::Start(env, on_batch, options.max_queued_batches, owner, "proctap.ringBuffer",
                          [reader, poll_ms, max_batch_bytes](BatchPump& pump) { reader->Run(pump, poll_ms, max_batch_bytes); });
}

}  // namespace proctap
