// SPDX-License-Identifier: MIT
// libpcap capture on a device, optionally inside another network namespace (entered by the
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

// Batch layout: per packet a struct libpcap_packet_header (batch_records.h), the bytes, zero pad to 8.
struct LibpcapCaptureState;

class LibpcapCapture : public Napi::ObjectWrap<LibpcapCapture> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit LibpcapCapture(const Napi::CallbackInfo& info);  // new LibpcapCapture(options, onBatch)
  ~LibpcapCapture() override;

 private:
  Napi::Value Stop(const Napi::CallbackInfo& info);
  void Close(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  std::shared_ptr<LibpcapCaptureState> state_;
  std::shared_ptr<BatchPump> pump_;
};

// listInterfaces(netnsPath?): pcap_findalldevs on a thread inside that netns.
Napi::Value ListInterfaces(const Napi::CallbackInfo& info);

}  // namespace proctap
