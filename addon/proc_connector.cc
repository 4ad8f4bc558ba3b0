// SPDX-License-Identifier: MIT
#include "proc_connector.h"

#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <vector>

#include "batch_records.h"
#include "errors.h"
#include "netns_thread.h"

namespace proctap {
namespace {

using Record = proc_event_record;
static_assert(sizeof(Record) == kProcRecordSize, "record layout is part of the JS contract");

// Every wake-up is one batch, but a sustained fork storm must still yield to JS now and then.
constexpr size_t kMaxBatchBytes = 8192 * sizeof(Record);

int SendMcastOp(int sock, proc_cn_mcast_op op) {
  // nlmsghdr | cn_msg | u32 op, laid out by hand: cn_msg ends in a flexible array.
  alignas(nlmsghdr) uint8_t msg[NLMSG_LENGTH(sizeof(cn_msg) + sizeof(uint32_t))] = {};
  auto* nl = reinterpret_cast<nlmsghdr*>(msg);
  nl->nlmsg_len = sizeof(msg);
  nl->nlmsg_type = NLMSG_DONE;
  auto* cn = static_cast<cn_msg*>(NLMSG_DATA(nl));
  cn->id.idx = CN_IDX_PROC;
  cn->id.val = CN_VAL_PROC;
  cn->len = sizeof(uint32_t);
  uint32_t op32 = op;
  std::memcpy(cn->data, &op32, sizeof(op32));
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  ssize_t n = sendto(sock, msg, sizeof(msg), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
  return n < 0 ? errno : 0;
}

uint64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

bool Decode(const proc_event& ev, Record* out) {
  *out = Record{};
  out->timestamp_ns = ev.timestamp_ns;
  switch (ev.what) {
    case proc_event::PROC_EVENT_FORK:
      out->kind = PROC_EVENT_KIND_FORK;
      out->pid = ev.event_data.fork.child_pid;
      out->tgid = ev.event_data.fork.child_tgid;
      out->parent_pid = ev.event_data.fork.parent_pid;
      out->parent_tgid = ev.event_data.fork.parent_tgid;
      return true;
    case proc_event::PROC_EVENT_EXEC:
      out->kind = PROC_EVENT_KIND_EXEC;
      out->pid = ev.event_data.exec.process_pid;
      out->tgid = ev.event_data.exec.process_tgid;
      return true;
    case proc_event::PROC_EVENT_EXIT:
      out->kind = PROC_EVENT_KIND_EXIT;
      out->pid = ev.event_data.exit.process_pid;
      out->tgid = ev.event_data.exit.process_tgid;
      out->parent_pid = ev.event_data.exit.parent_pid;
      out->parent_tgid = ev.event_data.exit.parent_tgid;
      out->exit_code = ev.event_data.exit.exit_code;
      out->exit_signal = ev.event_data.exit.exit_signal;
      return true;
    default:
      return false;  // acks, uid/gid/sid/comm/ptrace/coredump: not part of the contract
  }
}

// Parses one datagram; only the kernel (nl_pid 0) may speak for CN_IDX_PROC.
bool ParseDatagram(const uint8_t* buf, size_t len, BatchBuilder& batch) {
  auto* nlh = reinterpret_cast<const nlmsghdr*>(buf);
  int remaining = static_cast<int>(len);
  for (; NLMSG_OK(nlh, remaining); nlh = NLMSG_NEXT(nlh, remaining)) {
    if (nlh->nlmsg_type == NLMSG_NOOP || nlh->nlmsg_type == NLMSG_ERROR) continue;
    if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(cn_msg))) continue;
    auto* cn = static_cast<const cn_msg*>(NLMSG_DATA(nlh));
    if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC) continue;
    if (cn->len < sizeof(proc_event) || nlh->nlmsg_len < NLMSG_LENGTH(sizeof(cn_msg) + sizeof(proc_event))) continue;
    proc_event ev;
    std::memcpy(&ev, cn->data, sizeof(ev));
    Record rec;
    if (Decode(ev, &rec) && !batch.Append(&rec, sizeof(rec), nullptr, 0)) return false;
  }
  return true;
}

void ReadLoop(BatchPump& pump, int sock, const std::atomic<bool>& paused) {
  alignas(nlmsghdr) static thread_local uint8_t buf[64 * 1024];
  pollfd fds[2] = {{sock, POLLIN, 0}, {pump.stop_fd(), POLLIN, 0}};
  BatchBuilder batch(pump, kMaxBatchBytes);
  for (;;) {
    // Paused: the socket is not read (its queue fills up and overflows); only a stop is waited for.
    int n = paused.load() ? poll(&fds[1], 1, 10) : poll(fds, 2, -1);
    if (paused.load() && n >= 0) {
      if (fds[1].revents & POLLIN) return;
      continue;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents & POLLIN) return;
    while (batch.pending_bytes() + sizeof(Record) <= kMaxBatchBytes) {
      sockaddr_nl from{};
      socklen_t from_len = sizeof(from);
      ssize_t got = recvfrom(sock, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          // The socket queue overflowed: events are gone. Say so and keep listening.
          Record rec{};
          rec.kind = PROC_EVENT_KIND_OVERFLOW;
          rec.timestamp_ns = MonotonicNs();
          if (!batch.Append(&rec, sizeof(rec), nullptr, 0)) return;
          continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        return;  // socket is unusable
      }
      if (from.nl_pid != 0) continue;
      if (!ParseDatagram(buf, static_cast<size_t>(got), batch)) return;
    }
    if (!batch.Flush()) return;
  }
}

}  // namespace

Napi::Function ProcConnector::Define(Napi::Env env) {
  return DefineClass(env, "ProcConnector",
                     {InstanceMethod<&ProcConnector::Close>("close"), InstanceMethod<&ProcConnector::SetPaused>("setPaused")});
}

void ProcConnector::SetPaused(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) ThrowTypeError(info.Env(), "setPaused(paused: boolean)");
  paused_->store(info[0].As<Napi::Boolean>().Value());
}

ProcConnector::ProcConnector(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ProcConnector>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsObject())
    ThrowTypeError(env, "ProcConnector(onBatch: function, options: {receiveBufferBytes, maxQueuedBatches, netnsPath?})");
  Napi::Object options = info[1].As<Napi::Object>();
  Napi::Value rcvbuf_value = options.Get("receiveBufferBytes");
  Napi::Value queued_value = options.Get("maxQueuedBatches");
  if (!rcvbuf_value.IsNumber() || !queued_value.IsNumber())
    ThrowTypeError(env, "options.receiveBufferBytes and options.maxQueuedBatches must be numbers");
  int rcvbuf = rcvbuf_value.As<Napi::Number>().Int32Value();
  int max_queued = queued_value.As<Napi::Number>().Int32Value();
  if (rcvbuf < 1 || max_queued < 1) throw Napi::RangeError::New(env, "options.receiveBufferBytes and options.maxQueuedBatches must be > 0");

  Napi::Value netns_value = options.Get("netnsPath");
  if (!netns_value.IsUndefined() && !netns_value.IsString()) ThrowTypeError(env, "options.netnsPath must be a string");
  if (netns_value.IsString()) {
    // The connector exists in one network namespace (the initial one): create the socket there.
    std::string step;
    int sock_err = 0;
    int err = RunInNetworkNamespaceOnly(netns_value.As<Napi::String>().Utf8Value(), [&] {
      sock_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
      if (sock_ < 0) sock_err = errno;
    }, &step);
    if (err) ThrowErrno(env, err, step.c_str());
    if (sock_ < 0) ThrowErrno(env, sock_err, "socket(NETLINK_CONNECTOR)");
  } else {
    sock_ = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
    if (sock_ < 0) ThrowErrno(env, errno, "socket(NETLINK_CONNECTOR)");
  }
  // FORCE ignores rmem_max (needs CAP_NET_ADMIN, which subscribing needs anyway).
  if (setsockopt(sock_, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0) {
    setsockopt(sock_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = CN_IDX_PROC;
  addr.nl_pid = 0;  // kernel picks a unique port id, so several listeners can coexist
  if (bind(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    int err = errno;
    CloseInternal();
    ThrowErrno(env, err, "bind(NETLINK_CONNECTOR, CN_IDX_PROC)");
  }
  if (int err = SendMcastOp(sock_, PROC_CN_MCAST_LISTEN)) {
    CloseInternal();
    ThrowErrno(env, err, "PROC_CN_MCAST_LISTEN");
  }
  listening_ = true;
  int sock = sock_;
  auto paused = paused_;
  try {
    pump_ = BatchPump::Start(env, info[0].As<Napi::Function>(), static_cast<size_t>(max_queued), Value(), "proctap.procConnector",
                             [sock, paused](BatchPump& pump) { ReadLoop(pump, sock, *paused); });
  } catch (...) {
    CloseInternal();
    throw;
  }
}

ProcConnector::~ProcConnector() { CloseInternal(); }

void ProcConnector::CloseInternal() {
  if (sock_ < 0) return;
  // The kernel counts listeners globally and only emits events while the count is non-zero.
  if (listening_) SendMcastOp(sock_, PROC_CN_MCAST_IGNORE);
  listening_ = false;
  if (pump_) {
    pump_->Abort();
    pump_.reset();
  }
  close(sock_);
  sock_ = -1;
}

void ProcConnector::Close(const Napi::CallbackInfo&) { CloseInternal(); }

}  // namespace proctap
