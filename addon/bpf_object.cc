// SPDX-License-Identifier: MIT
#include "bpf_object.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <thread>
#include <vector>

#include "errors.h"
#include "libbpf_log.h"
#include "map_ops.h"
#include "packet_filter.h"
#include "ring_buffer.h"

namespace proctap {
namespace {

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsString()) ThrowTypeError(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

double NumberArg(const Napi::CallbackInfo& info, size_t i, const char* what, double min, double max) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowTypeError(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= min && v <= max) || v != static_cast<double>(static_cast<int64_t>(v))) {
    ThrowTypeError(info.Env(), std::string(what) + " must be an integer in [" + std::to_string(static_cast<int64_t>(min)) +
                                   ", " + std::to_string(static_cast<int64_t>(max)) + "]");
  }
  return v;
}

// Internal maps are named "<obj prefix>.bss" in the kernel; users name them by ELF section.
std::string MapDisplayName(const bpf_map* map) {
  const char* name = bpf_map__name(map);
  if (!bpf_map__is_internal(map)) return name;
  const char* dot = std::strchr(name, '.');
  return dot ? dot : name;
}

Napi::Value BytesOrNull(Napi::Env env, const std::optional<std::vector<uint8_t>>& bytes) {
  if (!bytes) return env.Null();
  return Napi::Buffer<uint8_t>::Copy(env, bytes->data(), bytes->size());
}

// options.retprobe and options.pid (-1: every process) of attachUprobe and attachUprobeMulti.
void ParseUprobeOptions(Napi::Env env, const Napi::Object& opts, bool& retprobe, int& pid) {
  Napi::Value r = opts.Get("retprobe");
  if (!r.IsUndefined()) {
    if (!r.IsBoolean()) ThrowTypeError(env, "options.retprobe must be a boolean");
    retprobe = r.As<Napi::Boolean>().Value();
  }
  Napi::Value p = opts.Get("pid");
  if (!p.IsUndefined()) {
    double v = p.IsNumber() ? p.As<Napi::Number>().DoubleValue() : -2;
    if (!(v >= -1 && v <= INT_MAX) || v != static_cast<double>(static_cast<int64_t>(v))) {
      ThrowTypeError(env, "options.pid must be an integer in [-1, 2^31-1] (-1: every process)");
    }
    pid = static_cast<int>(v);
  }
}

}  // namespace

Napi::Function BpfObject::Define(Napi::Env env) {
  return DefineClass(env, "BpfObject",
                     {
                         InstanceMethod<&BpfObject::Programs>("programs"),
                         InstanceMethod<&BpfObject::Maps>("maps"),
                         InstanceMethod<&BpfObject::SetAutoload>("setAutoload"),
                         InstanceMethod<&BpfObject::SetMapMaxEntries>("setMapMaxEntries"),
                         InstanceMethod<&BpfObject::GetInitialValue>("getInitialValue"),
                         InstanceMethod<&BpfObject::SetInitialValue>("setInitialValue"),
                         InstanceMethod<&BpfObject::Load>("load"),
                         InstanceMethod<&BpfObject::Attach>("attach"),
                         InstanceMethod<&BpfObject::AttachCgroup>("attachCgroup"),
                         InstanceMethod<&BpfObject::AttachUprobe>("attachUprobe"),
                         InstanceMethod<&BpfObject::AttachUprobeMulti>("attachUprobeMulti"),
                         InstanceMethod<&BpfObject::SetExpectedAttachType>("setExpectedAttachType"),
                         InstanceMethod<&BpfObject::Detach>("detach"),
                         InstanceMethod<&BpfObject::MapLookup>("mapLookup"),
                         InstanceMethod<&BpfObject::MapUpdate>("mapUpdate"),
                         InstanceMethod<&BpfObject::MapDelete>("mapDelete"),
                         InstanceMethod<&BpfObject::MapLookupAndDelete>("mapLookupAndDelete"),
                         InstanceMethod<&BpfObject::MapDump>("mapDump"),
                         InstanceMethod<&BpfObject::StartRingBuffer>("startRingBuffer"),
                         InstanceMethod<&BpfObject::PacketsFilteredOut>("packetsFilteredOut"),
                         InstanceMethod<&BpfObject::StopRingBuffer>("stopRingBuffer"),
                         InstanceMethod<&BpfObject::Close>("close"),
                     });
}

BpfObject::BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {
  std::string path = StringArg(info, 0, "path");
  uint64_t mark = LibbpfLogMark();
  obj_ = bpf_object__open_file(path.c_str(), nullptr);
  if (obj_ == nullptr) ThrowErrno(info.Env(), errno, "bpf_object__open_file '" + path + "'", LibbpfLogTail(mark));
}

BpfObject::~BpfObject() { CloseInternal(); }

void BpfObject::CloseInternal() {
  // The poll thread reads the ring's mmap: stop it before the map goes away.
  if (ring_) {
    ring_->Abort();
    ring_.reset();
  }
  // Destroying a perf-event link (syscalls:* tracepoints) waits for the kernel to unregister the
  // tracepoint: RCU grace periods, 60-90 ms each on 6.18. Concurrently, those waits overlap.
  std::vector<std::thread> destroyers;
  for (auto& [handle, link] : links_) destroyers.emplace_back(bpf_link__destroy, link);
  for (auto& [handle, fd] : raw_links_) destroyers.emplace_back(close, fd);
  for (auto& t : destroyers) t.join();
  links_.clear();
  raw_links_.clear();
  if (obj_ != nullptr) {
    bpf_object__close(obj_);
    obj_ = nullptr;
  }
}

bpf_object* BpfObject::Obj(Napi::Env env) const {
  if (obj_ == nullptr) ThrowError(env, "BpfObject is closed");
  return obj_;
}

// libbpf 1.1 answers most of these with a bare EINVAL; say what actually went wrong.
void BpfObject::RequireNotLoaded(Napi::Env env, const std::string& what) const {
  if (loaded_) ThrowErrno(env, EBUSY, what + " after load()");
}

bpf_program* BpfObject::Program(Napi::Env env, const Napi::Value& name) const {
  if (!name.IsString()) ThrowTypeError(env, "program name must be a string");
  std::string n = name.As<Napi::String>().Utf8Value();
  bpf_program* prog = bpf_object__find_program_by_name(Obj(env), n.c_str());
  if (prog == nullptr) ThrowError(env, "unknown BPF program '" + n + "'");
  return prog;
}

bpf_map* BpfObject::Map(Napi::Env env, const Napi::Value& name) const {
  if (!name.IsString()) ThrowTypeError(env, "map name must be a string");
  std::string n = name.As<Napi::String>().Utf8Value();
  bpf_map* map = bpf_object__find_map_by_name(Obj(env), n.c_str());
  if (map == nullptr) ThrowError(env, "unknown BPF map '" + n + "'");
  return map;
}

Napi::Value BpfObject::Programs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_program* prog;
  uint32_t i = 0;
  bpf_object__for_each_program(prog, Obj(env)) out.Set(i++, bpf_program__name(prog));
  return out;
}

Napi::Value BpfObject::Maps(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  bpf_map* map;
  uint32_t i = 0;
  bpf_object__for_each_map(map, Obj(env)) out.Set(i++, MapDisplayName(map));
  return out;
}

void BpfObject::SetAutoload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  if (!info[1].IsBoolean()) ThrowTypeError(env, "autoload must be a boolean");
  RequireNotLoaded(env, "setAutoload('" + std::string(bpf_program__name(prog)) + "')");
  int err = bpf_program__set_autoload(prog, info[1].As<Napi::Boolean>().Value());
  if (err) ThrowErrno(env, err, "bpf_program__set_autoload '" + std::string(bpf_program__name(prog)) + "'");
}

void BpfObject::SetMapMaxEntries(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  auto entries = static_cast<uint32_t>(NumberArg(info, 1, "maxEntries", 1, UINT32_MAX));
  RequireNotLoaded(env, "setMapMaxEntries('" + MapDisplayName(map) + "')");
  int err = bpf_map__set_max_entries(map, entries);
  if (err) ThrowErrno(env, err, "bpf_map__set_max_entries '" + MapDisplayName(map) + "'");
}

Napi::Value BpfObject::GetInitialValue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  std::string name = MapDisplayName(map);
  size_t size = 0;
  const void* data = bpf_map__initial_value(map, &size);
  if (data == nullptr) ThrowError(env, "map '" + name + "' has no initial value (not a global data map)");
  int fd = bpf_map__fd(map);
  if (fd < 0) return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t*>(data), size);
  // libbpf 1.1 only re-mmaps global data over the kernel map in skeletons, so after a plain
  // bpf_object__load() the pointer above is a stale staging copy: read element 0 instead.
  std::vector<uint8_t> live(bpf_map__value_size(map));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(fd, &zero, live.data())) ThrowErrno(env, errno, "read of map '" + name + "'");
  return Napi::Buffer<uint8_t>::Copy(env, live.data(), live.size());
}

void BpfObject::SetInitialValue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  std::string name = MapDisplayName(map);
  if (info.Length() < 2 || !info[1].IsBuffer()) ThrowTypeError(env, "initial value for map '" + name + "' must be a Buffer");
  auto value = info[1].As<Napi::Buffer<uint8_t>>();
  RequireNotLoaded(env, "setInitialValue('" + name + "')");
  size_t size = 0;
  if (bpf_map__initial_value(map, &size) != nullptr && size != value.Length()) {
    ThrowTypeError(env, "initial value for map '" + name + "' must be " + std::to_string(size) + " bytes, got " +
                            std::to_string(value.Length()));
  }
  int err = bpf_map__set_initial_value(map, value.Data(), value.Length());
  if (err) ThrowErrno(env, err, "bpf_map__set_initial_value '" + name + "'");
}

void BpfObject::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_object* obj = Obj(env);
  RequireNotLoaded(env, "load()");
  loaded_ = true;  // libbpf refuses a second attempt even after a failed one
  uint64_t mark = LibbpfLogMark();
  int err = bpf_object__load(obj);
  if (err) ThrowErrno(env, err, "bpf_object__load '" + std::string(bpf_object__name(obj)) + "'", LibbpfLogTail(mark));
}

uint32_t BpfObject::AddLink(Napi::Env env, bpf_link* link, int err, const std::string& what, uint64_t mark) {
  if (link == nullptr) ThrowErrno(env, err ? err : EINVAL, what, LibbpfLogTail(mark));
  uint32_t handle = next_link_++;
  links_[handle] = link;
  return handle;
}

Napi::Value BpfObject::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  uint64_t mark = LibbpfLogMark();
  // libbpf 1.x: NULL and errno on failure.
  bpf_link* link = bpf_program__attach(prog);
  int err = errno;
  uint32_t handle = AddLink(env, link, err, "bpf_program__attach '" + std::string(bpf_program__name(prog)) + "'", mark);
  return Napi::Number::New(env, handle);
}

Napi::Value BpfObject::AttachCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  std::string path = StringArg(info, 1, "cgroupPath");
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, errno, "open cgroup '" + path + "'");
  uint64_t mark = LibbpfLogMark();
  bpf_link* link = bpf_program__attach_cgroup(prog, fd);
  int err = errno;
  close(fd);  // the link holds its own reference to the cgroup
  uint32_t handle = AddLink(
      env, link, err, "bpf_program__attach_cgroup '" + std::string(bpf_program__name(prog)) + "' to '" + path + "'", mark);
  return Napi::Number::New(env, handle);
}

// attachUprobe(program, binaryPath, symbol, {retprobe, pid, cookie}): libbpf resolves the symbol in the
// file's ELF symbol tables (.dynsym, then .symtab) and turns it into a file offset.
Napi::Value BpfObject::AttachUprobe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  std::string binary = StringArg(info, 1, "binaryPath");
  std::string symbol = StringArg(info, 2, "symbol");
  bool retprobe = false;
  int pid = -1;
  uint64_t cookie = 0;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsObject()) ThrowTypeError(env, "options must be an object");
    Napi::Object opts = info[3].As<Napi::Object>();
    ParseUprobeOptions(env, opts, retprobe, pid);
    Napi::Value c = opts.Get("cookie");
    if (c.IsBigInt()) {
      bool lossless = false;
      cookie = c.As<Napi::BigInt>().Uint64Value(&lossless);
      if (!lossless) ThrowTypeError(env, "options.cookie must fit in 64 bits");
    } else if (c.IsNumber()) {
      double v = c.As<Napi::Number>().DoubleValue();
      if (!(v >= 0 && v <= 9007199254740991.0) || v != static_cast<double>(static_cast<int64_t>(v))) {
        ThrowTypeError(env, "options.cookie must be a non-negative integer");
      }
      cookie = static_cast<uint64_t>(v);
    } else if (!c.IsUndefined()) {
      ThrowTypeError(env, "options.cookie must be a number or a bigint");
    }
  }
  LIBBPF_OPTS(bpf_uprobe_opts, opts);
  opts.retprobe = retprobe;
  opts.func_name = symbol.c_str();
  opts.bpf_cookie = cookie;
  uint64_t mark = LibbpfLogMark();
  bpf_link* link = bpf_program__attach_uprobe_opts(prog, pid, binary.c_str(), 0, &opts);
  int err = errno;
  uint32_t handle = AddLink(env, link, err,
                            "bpf_program__attach_uprobe_opts '" + std::string(bpf_program__name(prog)) + "' " +
                                (retprobe ? "at the return of " : "at ") + symbol + " in '" + binary + "'",
                            mark);
  return Napi::Number::New(env, handle);
}

void BpfObject::SetExpectedAttachType(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  auto type = static_cast<uint32_t>(NumberArg(info, 1, "attachType", 0, 1023));
  RequireNotLoaded(env, "setExpectedAttachType('" + std::string(bpf_program__name(prog)) + "')");
  int err = bpf_program__set_expected_attach_type(prog, static_cast<bpf_attach_type>(type));
  if (err) ThrowErrno(env, err, "bpf_program__set_expected_attach_type '" + std::string(bpf_program__name(prog)) + "'");
}

// The part of union bpf_attr that BPF_LINK_CREATE reads for BPF_TRACE_UPROBE_MULTI (kernel 6.6+); libbpf
// 1.1 predates it, so the syscall is made here. Layout as in include/uapi/linux/bpf.h.
struct UprobeMultiAttr {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;
  uint32_t pid;
  uint32_t pad;
};
constexpr uint32_t kTraceUprobeMulti = 48;   // BPF_TRACE_UPROBE_MULTI
constexpr uint32_t kUprobeMultiReturn = 1;   // BPF_F_UPROBE_MULTI_RETURN

// attachUprobeMulti(program, binaryPath, offsets, {cookies, retprobe, pid}): one link probing every file
// offset of binaryPath. The program must be loaded with expected attach type BPF_TRACE_UPROBE_MULTI.
Napi::Value BpfObject::AttachUprobeMulti(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_program* prog = Program(env, info[0]);
  std::string binary = StringArg(info, 1, "binaryPath");
  if (info.Length() < 3 || !info[2].IsArray()) ThrowTypeError(env, "offsets must be an array of numbers");
  Napi::Array list = info[2].As<Napi::Array>();
  std::vector<uint64_t> offsets, cookies;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d > 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d))) ThrowTypeError(env, "offsets must be positive integers");
    offsets.push_back(static_cast<uint64_t>(d));
  }
  if (offsets.empty()) ThrowTypeError(env, "offsets must not be empty");
  bool retprobe = false;
  int pid = -1;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsObject()) ThrowTypeError(env, "options must be an object");
    Napi::Object opts = info[3].As<Napi::Object>();
    ParseUprobeOptions(env, opts, retprobe, pid);
    Napi::Value c = opts.Get("cookies");
    if (!c.IsUndefined()) {
      if (!c.IsArray() || c.As<Napi::Array>().Length() != offsets.size()) ThrowTypeError(env, "options.cookies must be an array as long as offsets");
      Napi::Array cs = c.As<Napi::Array>();
      for (uint32_t i = 0; i < cs.Length(); i++) {
        Napi::Value v = cs.Get(i);
        double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
        if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<int64_t>(d))) ThrowTypeError(env, "cookies must be non-negative integers");
        cookies.push_back(static_cast<uint64_t>(d));
      }
    }
  }
  int prog_fd = bpf_program__fd(prog);
  if (prog_fd < 0) ThrowError(env, "program '" + std::string(bpf_program__name(prog)) + "' is not loaded");
  UprobeMultiAttr attr{};
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = kTraceUprobeMulti;
  attr.path = reinterpret_cast<uint64_t>(binary.c_str());
  attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
  attr.cookies = cookies.empty() ? 0 : reinterpret_cast<uint64_t>(cookies.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  attr.multi_flags = retprobe ? kUprobeMultiReturn : 0;
  attr.pid = static_cast<uint32_t>(pid < 0 ? 0 : pid);  // the kernel's "every process" is 0
  int fd = static_cast<int>(syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
  if (fd < 0) {
    ThrowErrno(env, errno, "uprobe_multi link of '" + std::string(bpf_program__name(prog)) + "' on " + std::to_string(offsets.size()) +
                               " offsets of '" + binary + "'" + (retprobe ? " (return)" : ""));
  }
  uint32_t handle = next_link_++;
  raw_links_[handle] = fd;
  return Napi::Number::New(env, handle);
}

void BpfObject::Detach(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber()) ThrowTypeError(info.Env(), "link must be a number");
  double handle = info[0].As<Napi::Number>().DoubleValue();
  if (!(handle >= 0 && handle <= UINT32_MAX)) return;
  auto raw = raw_links_.find(static_cast<uint32_t>(handle));
  if (raw != raw_links_.end() && raw->first == handle) {
    close(raw->second);
    raw_links_.erase(raw);
    return;
  }
  auto it = links_.find(static_cast<uint32_t>(handle));
  if (it == links_.end() || it->first != handle) return;
  bpf_link__destroy(it->second);
  links_.erase(it);
}

Napi::Value BpfObject::MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  return BytesOrNull(env, proctap::MapLookup(env, map, MapDisplayName(map), info[1]));
}

void BpfObject::MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  uint64_t flags = 0;
  if (info.Length() > 3 && !info[3].IsUndefined()) flags = static_cast<uint64_t>(NumberArg(info, 3, "flags", 0, 7));
  proctap::MapUpdate(env, map, MapDisplayName(map), info[1], info[2], flags);
}

Napi::Value BpfObject::MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  return Napi::Boolean::New(env, proctap::MapDelete(env, map, MapDisplayName(map), info[1]));
}

Napi::Value BpfObject::MapLookupAndDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  return BytesOrNull(env, proctap::MapLookupAndDelete(env, map, MapDisplayName(map), info[1]));
}

Napi::Value BpfObject::MapDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  return proctap::MapDump(env, map, MapDisplayName(map));
}

void BpfObject::StartRingBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bpf_map* map = Map(env, info[0]);
  std::string name = MapDisplayName(map);
  if (bpf_map__type(map) != BPF_MAP_TYPE_RINGBUF) ThrowTypeError(env, "map '" + name + "' is not a BPF_MAP_TYPE_RINGBUF");
  if (info.Length() < 2 || !info[1].IsFunction()) ThrowTypeError(env, "onBatch must be a function");
  if (info.Length() < 3 || !info[2].IsObject()) ThrowTypeError(env, "options must be an object");
  Napi::Object opts = info[2].As<Napi::Object>();
  Napi::Value poll_ms = opts.Get("pollMs");
  Napi::Value max_queued = opts.Get("maxQueuedBatches");
  if (!poll_ms.IsNumber() || !max_queued.IsNumber()) ThrowTypeError(env, "options.pollMs and options.maxQueuedBatches must be numbers");
  RingBufferOptions options{};
  double p = poll_ms.As<Napi::Number>().DoubleValue();
  double q = max_queued.As<Napi::Number>().DoubleValue();
  if (!(p >= 1 && p <= INT_MAX)) ThrowTypeError(env, "options.pollMs must be in [1, 2^31-1]");
  if (!(q >= 1 && q <= 1e6)) ThrowTypeError(env, "options.maxQueuedBatches must be in [1, 1000000]");
  options.poll_ms = static_cast<int>(p);
  options.max_queued_batches = static_cast<size_t>(q);
  Napi::Value max_batch = opts.Get("maxBatchBytes");
  if (!max_batch.IsNumber()) ThrowTypeError(env, "options.maxBatchBytes must be a number");
  double b = max_batch.As<Napi::Number>().DoubleValue();
  if (!(b >= 4096 && b <= (1 << 30))) ThrowTypeError(env, "options.maxBatchBytes must be in [4096, 2^30]");
  options.max_batch_bytes = static_cast<size_t>(b);
  Napi::Value hook = opts.Get("packetFilter");
  if (hook.IsObject()) {
    Napi::Object h = hook.As<Napi::Object>();
    Napi::Value filter = h.Get("filter");
    if (!filter.IsObject()) ThrowTypeError(env, "options.packetFilter.filter must be a PacketFilter");
    PacketFilter* compiled = Napi::ObjectWrap<PacketFilter>::Unwrap(filter.As<Napi::Object>());
    if (compiled == nullptr || compiled->program() == nullptr) ThrowTypeError(env, "options.packetFilter.filter must be a PacketFilter");
    auto number = [&](const char* key) {
      Napi::Value v = h.Get(key);
      if (!v.IsNumber()) ThrowTypeError(env, std::string("options.packetFilter.") + key + " must be a number");
      return v.As<Napi::Number>().Uint32Value();
    };
    options.packet_filter.program = compiled->program();
    options.packet_filter.record_type = static_cast<uint16_t>(number("recordType"));
    options.packet_filter.data_offset = number("dataOffset");
    options.packet_filter.caplen_offset = number("capLenOffset");
    options.packet_filter.origlen_offset = number("origLenOffset");
    filtered_ = std::make_shared<std::atomic<uint64_t>>(0);
    options.packet_filter.filtered = filtered_;
    filter_ref_ = Napi::Persistent(filter.As<Napi::Object>());  // the program lives as long as the ring
  }

  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowError(env, "map '" + name + "' is not loaded (call load() first)");
  if (ring_ && ring_->active()) ThrowError(env, "a ring buffer is already running on this object");
  ring_ = proctap::StartRingBuffer(env, fd, info[1].As<Napi::Function>(), options, Value());
}

Napi::Value BpfObject::StopRingBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ring_) {
    auto deferred = Napi::Promise::Deferred::New(env);
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  return ring_->Stop(env);
}

Napi::Value BpfObject::PacketsFilteredOut(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), filtered_ ? static_cast<double>(filtered_->load()) : 0);
}

void BpfObject::Close(const Napi::CallbackInfo&) { CloseInternal(); }

}  // namespace proctap
