// SPDX-License-Identifier: MIT
// libpcap live capture on a device, optionally inside another network namespace (entered by the
// capture thread only). Mechanism only: device, filter and what to do with the packets belong to TS.
#pragma once

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "batch_pump.h"

namespace proctap {

// Per packet in a batch: u64 tsNs (CLOCK_REALTIME), u32 caplen, u32 origlen, caplen bytes, zero pad to 8.
constexpr size_t kLivePacketHeaderSize = 16;

struct LiveCaptureState;

class LiveCapture : public Napi::ObjectWrap<LiveCapture> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit LiveCapture(const Napi::CallbackInfo& info);  // new LiveCapture(options, onBatch)
  ~LiveCapture() override;

 private:
  Napi::Value Stop(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  std::shared_ptr<LiveCaptureState> state_;
  std::shared_ptr<BatchPump> pump_;
};

// listInterfaces(netnsPath?): pcap_findalldevs on a thread inside that netns.
Napi::Value ListInterfaces(const Napi::CallbackInfo& info);

}  // namespace proctap
