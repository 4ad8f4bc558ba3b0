// SPDX-License-Identifier: MIT
#include "libpcap_capture.h"

#include <net/if.h>
#include <pthread.h>
#include <pcap/pcap.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <vector>

#include "batch_records.h"
#include "errors.h"
#include "netns_thread.h"

namespace proctap {

struct LibpcapCaptureState {
  // Options (all chosen by the caller), fixed before the thread starts.
  std::string device;
  std::string netns_path;
  std::string filter;
  bool has_filter = false;
  int snaplen = 0;
  int buffer_size = 0;
  bool promisc = false;
  int timeout_ms = 0;        // TPACKET_V3 block timeout
  int drain_ms = 0;          // at stop: how long to wait for the kernel's last partly filled block
  size_t max_batch_bytes = 0;
  int link_type_request = -1;

  // Open result: written by the capture thread, then `opened` is set under `mu`.
  std::mutex mu;
  std::condition_variable cv;
  bool opened = false;
  int open_errno = 0;
  std::string open_code;
  std::string open_error;
  std::string warning;
  int link_type = -1;

  // Written by the capture thread before it returns; read on the JS thread once the pump finished.
  std::atomic<uint64_t> delivered{0};
  bool have_stats = false;
  uint64_t received = 0, dropped = 0, if_dropped = 0;
  std::string error;
};

namespace {

uint64_t MonotonicMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

class CaptureThread {
 public:
  CaptureThread(BatchPump& pump, LibpcapCaptureState& s) : batch_(pump, s.max_batch_bytes), s_(s) {}
  ~CaptureThread() {
    if (p_ != nullptr) pcap_close(p_);
  }

  void Run() {
    pthread_setname_np(pthread_self(), "proctap-pcap");
    bool ok = Open();
    {
      std::lock_guard<std::mutex> lock(s_.mu);
      s_.opened = true;
    }
    s_.cv.notify_all();
    if (!ok) return;
    Loop();
    pcap_stat st{};
    if (pcap_stats(p_, &st) == 0) {
      s_.received = st.ps_recv;
      s_.dropped = st.ps_drop;
      s_.if_dropped = st.ps_ifdrop;
      s_.have_stats = true;
    } else if (s_.error.empty()) {
      s_.error = std::string("pcap_stats: ") + pcap_geterr(p_);
    }
    pcap_close(p_);
    p_ = nullptr;
  }

 private:
  bool Fail(int err, const std::string& code, const std::string& message) {
    s_.open_errno = err;
    s_.open_code = code;
    s_.open_error = message;
    return false;
  }

  bool FailPcap(int status, const std::string& what) {
    std::string detail = p_ != nullptr ? pcap_geterr(p_) : "";
    std::string message = what + ": " + pcap_statustostr(status);
    if (!detail.empty() && detail != pcap_statustostr(status)) message += " (" + detail + ")";
    const char* code = "PCAP_ERROR";
    switch (status) {
      case PCAP_ERROR_NO_SUCH_DEVICE: code = "ENODEV"; break;
      case PCAP_ERROR_PERM_DENIED: code = "EPERM"; break;
      case PCAP_ERROR_IFACE_NOT_UP: code = "ENETDOWN"; break;
      case PCAP_ERROR_PROMISC_PERM_DENIED: code = "EPERM"; break;
    }
    return Fail(0, code, message);
  }

  bool Open() {
    if (!s_.netns_path.empty()) {
      std::string step;
      if (int err = EnterNetnsOnThisThread(s_.netns_path, &step))
        return Fail(err, ErrnoCode(err), step + ": " + std::strerror(err));
    }
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    p_ = pcap_create(s_.device.c_str(), errbuf);
    if (p_ == nullptr) return Fail(0, "PCAP_ERROR", std::string("pcap_create ") + s_.device + ": " + errbuf);
    // TPACKET_V3: the kernel fills whole blocks and hands one over when full or after timeout_ms.
    pcap_set_snaplen(p_, s_.snaplen);
    pcap_set_promisc(p_, s_.promisc ? 1 : 0);
    pcap_set_timeout(p_, s_.timeout_ms);
    pcap_set_immediate_mode(p_, 0);
    pcap_set_buffer_size(p_, s_.buffer_size);
    if (int rc = pcap_set_tstamp_precision(p_, PCAP_TSTAMP_PRECISION_NANO))
      return FailPcap(rc, "pcap_set_tstamp_precision(nano) " + s_.device);
    int rc = pcap_activate(p_);
    if (rc < 0) return FailPcap(rc, "pcap_activate " + s_.device);
    if (rc > 0) s_.warning = std::string(pcap_statustostr(rc)) + ": " + pcap_geterr(p_);
    if (s_.link_type_request >= 0 && pcap_set_datalink(p_, s_.link_type_request) != 0)
      return Fail(0, "PCAP_ERROR", "pcap_set_datalink(" + std::to_string(s_.link_type_request) + ") " + s_.device + ": " + pcap_geterr(p_));
    if (s_.has_filter) {
      bpf_program program{};
      if (pcap_compile(p_, &program, s_.filter.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0)
        return Fail(0, "EINVAL", "invalid filter '" + s_.filter + "': " + pcap_geterr(p_));
      int set = pcap_setfilter(p_, &program);
      pcap_freecode(&program);
      if (set != 0) return Fail(0, "PCAP_ERROR", std::string("pcap_setfilter: ") + pcap_geterr(p_));
    }
    if (pcap_setnonblock(p_, 1, errbuf) != 0) return Fail(0, "PCAP_ERROR", std::string("pcap_setnonblock: ") + errbuf);
    s_.link_type = pcap_datalink(p_);
    return true;
  }

  // Returns false when the capture must end (error, or JS is gone).
  bool Dispatch() {
    int n = pcap_dispatch(p_, -1, OnPacket, reinterpret_cast<u_char*>(this));
    if (gone_) return false;
    if (n == PCAP_ERROR) {
      s_.error = std::string("pcap_dispatch: ") + pcap_geterr(p_);
      return false;
    }
    return Flush();
  }

  void Loop() {
    int fd = pcap_get_selectable_fd(p_);
    pollfd fds[2] = {{fd, POLLIN, 0}, {batch_.stop_fd(), POLLIN, 0}};
    uint64_t drain_until = 0;
    for (;;) {
      int wait = s_.timeout_ms;
      if (drain_until != 0) {
        uint64_t now = MonotonicMs();
        if (now >= drain_until) break;
        wait = static_cast<int>(drain_until - now);
      }
      int n = poll(fds, drain_until != 0 ? 1 : 2, wait);
      if (n < 0 && errno != EINTR) {
        s_.error = std::string("poll: ") + std::strerror(errno);
        break;
      }
      if (!Dispatch()) return;
      if (n > 0 && (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL))) {
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        s_.error = "capture on " + s_.device + " ended: " + (err != 0 ? std::strerror(err) : "device went away");
        return;
      }
      if (drain_until == 0 && n > 0 && (fds[1].revents & POLLIN)) {
        // Close the door first: a kernel filter that rejects everything (attached under libpcap, so
        // its own filter state is untouched) means no packet is counted from now on that will not
        // also be delivered. Then wait drain_ms for the block timer: the kernel hands a partly filled
        // block over only when it fires.
        RejectFurtherPackets(fd);
        drain_until = MonotonicMs() + static_cast<uint64_t>(s_.drain_ms);
      }
    }
    Dispatch();
  }

  // SO_ATTACH_FILTER with the one-instruction classic BPF program "ret #0".
  static void RejectFurtherPackets(int fd) {
    struct Insn {
      uint16_t code;
      uint8_t jt, jf;
      uint32_t k;
    } reject_all = {0x06 /* BPF_RET | BPF_K */, 0, 0, 0};
    struct {
      unsigned short len;
      Insn* filter;
    } program = {1, &reject_all};
    setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program));
  }

  static void OnPacket(u_char* user, const pcap_pkthdr* h, const u_char* bytes) {
    auto* self = reinterpret_cast<CaptureThread*>(user);
    if (self->gone_) return;
    // The handle was opened with PCAP_TSTAMP_PRECISION_NANO: the field named tv_usec holds nanoseconds.
    libpcap_packet_header header{};
    header.timestamp_ns = static_cast<uint64_t>(h->ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(h->ts.tv_usec);
    header.cap_len = h->caplen;
    header.orig_len = h->len;
    uint64_t before = self->batch_.pending_records();
    if (!self->batch_.Append(&header, sizeof(header), bytes, h->caplen)) {
      self->gone_ = true;
      pcap_breakloop(self->p_);
      return;
    }
    // Append delivered the earlier packets first when the batch was full.
    if (self->batch_.pending_records() <= before) self->s_.delivered.fetch_add(before, std::memory_order_relaxed);
  }

  bool Flush() {
    if (gone_) return false;
    uint64_t count = batch_.pending_records();
    if (!batch_.Flush()) {
      gone_ = true;
      return false;
    }
    s_.delivered.fetch_add(count, std::memory_order_relaxed);
    return true;
  }

  BatchBuilder batch_;
  LibpcapCaptureState& s_;
  pcap_t* p_ = nullptr;
  bool gone_ = false;
};

Napi::Object StatsObject(Napi::Env env, const LibpcapCaptureState& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("received", Napi::Number::New(env, static_cast<double>(s.received)));
  o.Set("dropped", Napi::Number::New(env, static_cast<double>(s.dropped)));
  o.Set("ifDropped", Napi::Number::New(env, static_cast<double>(s.if_dropped)));
  o.Set("delivered", Napi::Number::New(env, static_cast<double>(s.delivered.load())));
  if (!s.error.empty()) o.Set("error", Napi::String::New(env, s.error));
  return o;
}

std::string OptionalString(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return std::string();
  if (!v.IsString()) ThrowTypeError(o.Env(), std::string("LibpcapCapture: ") + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

int OptionalInt(Napi::Object o, const char* key, int fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string("LibpcapCapture: ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

int RequiredInt(Napi::Object o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) ThrowTypeError(o.Env(), std::string("LibpcapCapture: ") + key + " must be a number");
  return v.As<Napi::Number>().Int32Value();
}

}  // namespace

Napi::Function LibpcapCapture::Define(Napi::Env env) {
  return DefineClass(env, "LibpcapCapture",
                     {InstanceMethod<&LibpcapCapture::Stop>("stop"), InstanceMethod<&LibpcapCapture::Close>("close"),
                      InstanceMethod<&LibpcapCapture::Stats>("stats")});
}

LibpcapCapture::LibpcapCapture(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LibpcapCapture>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsFunction())
    ThrowTypeError(env, "LibpcapCapture(options: object, onBatch: function)");
  Napi::Object options = info[0].As<Napi::Object>();
  auto state = std::make_shared<LibpcapCaptureState>();
  state->device = OptionalString(options, "device");
  if (state->device.empty()) ThrowTypeError(env, "LibpcapCapture: device must be a non-empty string");
  state->netns_path = OptionalString(options, "netnsPath");
  state->has_filter = !options.Get("filter").IsUndefined();
  state->filter = OptionalString(options, "filter");
  state->snaplen = RequiredInt(options, "snaplen");
  state->buffer_size = RequiredInt(options, "bufferSize");
  state->timeout_ms = RequiredInt(options, "timeoutMs");
  state->drain_ms = RequiredInt(options, "drainMs");
  int max_batch_bytes = RequiredInt(options, "maxBatchBytes");
  int max_queued = RequiredInt(options, "maxQueuedBatches");
  state->link_type_request = OptionalInt(options, "linkType", -1);
  Napi::Value promisc = options.Get("promisc");
  state->promisc = promisc.IsBoolean() && promisc.As<Napi::Boolean>().Value();
  if (state->snaplen <= 0 || state->timeout_ms <= 0 || state->buffer_size <= 0 || state->drain_ms < 0 ||
      max_batch_bytes < 4096 || max_queued < 1)
    throw Napi::RangeError::New(env, "LibpcapCapture: snaplen, timeoutMs, bufferSize and maxQueuedBatches must be > 0, drainMs >= 0, maxBatchBytes >= 4096");
  state->max_batch_bytes = static_cast<size_t>(max_batch_bytes);
  state_ = state;

  pump_ = BatchPump::Start(env, info[1].As<Napi::Function>(), static_cast<size_t>(max_queued), Value(), "proctap.libpcapCapture",
                           [state](BatchPump& pump) { CaptureThread(pump, *state).Run(); });
  // Opening takes milliseconds; waiting here lets the constructor throw the real error.
  {
    std::unique_lock<std::mutex> lock(state->mu);
    state->cv.wait(lock, [&] { return state->opened; });
  }
  if (state->link_type < 0) {
    pump_->Abort();
    pump_.reset();
    Napi::Error error = Napi::Error::New(env, state->open_error);
    error.Set("code", Napi::String::New(env, state->open_code));
    if (state->open_errno != 0) error.Set("errno", Napi::Number::New(env, state->open_errno));
    throw error;
  }
  Value().Set("linkType", Napi::Number::New(env, state->link_type));
  Value().Set("device", Napi::String::New(env, state->device));
  if (!state->warning.empty()) Value().Set("warning", Napi::String::New(env, state->warning));
}

LibpcapCapture::~LibpcapCapture() {
  if (pump_) pump_->Abort();
}

// stop(): graceful; resolves with the final statistics once the last batch was delivered.
Napi::Value LibpcapCapture::Stop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Napi::Promise::Deferred::New(env);
  if (!pump_ || !pump_->active()) {
    deferred.Resolve(StatsObject(env, *state_));
    return deferred.Promise();
  }
  Napi::Promise stopped = pump_->Stop(env);
  auto state = state_;
  Napi::Function resolve = Napi::Function::New(env, [deferred, state](const Napi::CallbackInfo& cb) {
    deferred.Resolve(StatsObject(cb.Env(), *state));
  });
  stopped.Get("then").As<Napi::Function>().Call(stopped, {resolve});
  return deferred.Promise();
}

// close(): immediate; undelivered batches are dropped. Idempotent.
void LibpcapCapture::Close(const Napi::CallbackInfo&) {
  if (pump_) pump_->Abort();
}

// stats(): the final statistics once the capture thread has ended, else null.
Napi::Value LibpcapCapture::Stats(const Napi::CallbackInfo& info) {
  if (pump_ && pump_->active()) return info.Env().Null();
  return StatsObject(info.Env(), *state_);
}

Napi::Value ListInterfaces(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns_path;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) ThrowTypeError(env, "listInterfaces(netnsPath?: string)");
    netns_path = info[0].As<Napi::String>().Utf8Value();
  }
  struct Device {
    std::string name, description;
    uint32_t flags = 0;
    unsigned index = 0;
    int link_type = -1;
  };
  std::vector<Device> devices;
  std::string failure;
  std::string step;
  int err = RunInNetns(netns_path, [&] {
    char errbuf[PCAP_ERRBUF_SIZE] = {};
    pcap_if_t* all = nullptr;
    if (pcap_findalldevs(&all, errbuf) != 0) {
      failure = std::string("pcap_findalldevs: ") + errbuf;
      return;
    }
    for (pcap_if_t* d = all; d != nullptr; d = d->next) {
      Device dev;
      dev.name = d->name;
      if (d->description != nullptr) dev.description = d->description;
      dev.flags = d->flags;
      dev.index = if_nametoindex(d->name);
      // The link type libpcap would report: activate briefly with a small ring.
      if (pcap_t* p = pcap_create(d->name, errbuf)) {
        pcap_set_snaplen(p, 96);
        pcap_set_immediate_mode(p, 1);
        pcap_set_buffer_size(p, 64 * 1024);
        if (pcap_activate(p) >= 0) dev.link_type = pcap_datalink(p);
        pcap_close(p);
      }
      devices.push_back(dev);
    }
    pcap_freealldevs(all);
  }, &step);
  if (err != 0) ThrowErrno(env, err, step);
  if (!failure.empty()) ThrowError(env, failure);
  Napi::Array out = Napi::Array::New(env, devices.size());
  for (size_t i = 0; i < devices.size(); i++) {
    const Device& d = devices[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", d.name);
    if (!d.description.empty()) o.Set("description", d.description);
    o.Set("index", Napi::Number::New(env, d.index));
    o.Set("flags", Napi::Number::New(env, d.flags));
    o.Set("loopback", Napi::Boolean::New(env, (d.flags & PCAP_IF_LOOPBACK) != 0));
    o.Set("up", Napi::Boolean::New(env, (d.flags & PCAP_IF_UP) != 0));
    o.Set("running", Napi::Boolean::New(env, (d.flags & PCAP_IF_RUNNING) != 0));
    o.Set("linkType", d.link_type >= 0 ? Napi::Value(Napi::Number::New(env, d.link_type)) : env.Null());
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

}  // namespace proctap
