// SPDX-License-Identifier: MIT
#include "map_ops.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"

namespace proctap {
namespace {

// Kernel-internal "not supported" (ENOTSUPP), as returned by bpf(2).
constexpr int kEnotsupp = 524;

bool IsPercpu(const bpf_map* map) {
  switch (bpf_map__type(map)) {
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE:
      return true;
    default:
      return false;
  }
}

Napi::Buffer<uint8_t> Bytes(Napi::Env env, Napi::Value value, size_t expected, const char* what,
                            const std::string& name) {
  if (!value.IsBuffer()) ThrowTypeError(env, std::string(what) + " for map '" + name + "' must be a Buffer");
  auto buf = value.As<Napi::Buffer<uint8_t>>();
  if (buf.Length() != expected) {
    ThrowTypeError(env, std::string(what) + " for map '" + name + "' must be " +
                            std::to_string(expected) + " bytes, got " + std::to_string(buf.Length()));
  }
  return buf;
}

int Fd(Napi::Env env, const bpf_map* map, const std::string& name) {
  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowError(env, "map '" + name + "' is not loaded (call load() first)");
  return fd;
}

// Every element in BPF_MAP_LOOKUP_BATCH calls of up to `chunk` elements (a 4096-slot array in one call
// where the key walk makes 8192). Returns false, having read nothing, where the kernel or the map type
// has no batches (EINVAL before 5.6, ENOTSUPP for some types): the caller walks the keys instead.
bool DumpBatched(Napi::Env env, int fd, const std::string& name, size_t key_size, size_t value_size, size_t limit,
                 std::vector<uint8_t>& keys, std::vector<uint8_t>& values, size_t& count) {
  // The batch token is a key for arrays, a u32 bucket index for hash maps.
  std::vector<uint8_t> in(key_size < 8 ? 8 : key_size), out(in.size());
  size_t chunk = limit < 1024 ? limit : 1024;
  bool first = true;
  count = 0;
  while (count < limit) {
    size_t want = chunk < limit - count ? chunk : limit - count;
    keys.resize((count + want) * key_size);
    values.resize((count + want) * value_size);
    __u32 n = static_cast<__u32>(want);
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : in.data(), out.data(), keys.data() + count * key_size,
                                   values.data() + count * value_size, &n, &opts);
    err = err < 0 ? -err : 0;
    if (err && err != ENOENT) {
      // a hash bucket holds more than `want` elements: nothing was copied, the same batch again, larger
      if (err == ENOSPC && want < limit - count) {
        chunk *= 2;
        continue;
      }
      if (first && (err == EINVAL || err == kEnotsupp || err == EOPNOTSUPP)) return false;
      ThrowErrno(env, err, "batch lookup in map '" + name + "'");
    }
    count += n;
    if (err == ENOENT) break;  // the last batch
    in.swap(out);
    first = false;
  }
  keys.resize(count * key_size);
  values.resize(count * value_size);
  return true;
}

}  // namespace

size_t MapValueSize(const bpf_map* map) {
  size_t size = bpf_map__value_size(map);
  if (!IsPercpu(map)) return size;
  int cpus = libbpf_num_possible_cpus();
  return ((size + 7) & ~size_t{7}) * (cpus > 0 ? cpus : 1);
}

std::optional<std::vector<uint8_t>> MapLookup(Napi::Env env, const bpf_map* map,
                                              const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  std::vector<uint8_t> value(MapValueSize(map));
  int err = bpf_map__lookup_elem(map, k.Data(), k.Length(), value.data(), value.size(), 0);
  if (err == -ENOENT) return std::nullopt;
  if (err) ThrowErrno(env, err, "lookup in map '" + name + "'");
  return value;
}

void MapUpdate(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key,
               Napi::Value value, uint64_t flags) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  auto v = Bytes(env, value, MapValueSize(map), "value", name);
  int err = bpf_map__update_elem(map, k.Data(), k.Length(), v.Data(), v.Length(), flags);
  if (err) ThrowErrno(env, err, "update of map '" + name + "'");
}

bool MapDelete(Napi::Env env, const bpf_map* map, const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  int err = bpf_map__delete_elem(map, k.Data(), k.Length(), 0);
  if (err == -ENOENT) return false;
  if (err) ThrowErrno(env, err, "delete from map '" + name + "'");
  return true;
}

std::optional<std::vector<uint8_t>> MapLookupAndDelete(Napi::Env env, const bpf_map* map,
                                                       const std::string& name, Napi::Value key) {
  Fd(env, map, name);
  auto k = Bytes(env, key, bpf_map__key_size(map), "key", name);
  std::vector<uint8_t> value(MapValueSize(map));
  int err = bpf_map__lookup_and_delete_elem(map, k.Data(), k.Length(), value.data(), value.size(), 0);
  if (err == -ENOENT) return std::nullopt;
  if (err == -EINVAL || err == -kEnotsupp || err == -EOPNOTSUPP) {
    // Older kernels and some map types lack the combined command; not atomic, but equivalent.
    auto found = MapLookup(env, map, name, key);
    if (found && !MapDelete(env, map, name, key)) return std::nullopt;
    return found;
  }
  if (err) ThrowErrno(env, err, "lookup-and-delete in map '" + name + "'");
  return value;
}

Napi::Object MapDump(Napi::Env env, const bpf_map* map, const std::string& name) {
  int fd = Fd(env, map, name);
  size_t key_size = bpf_map__key_size(map);
  size_t value_size = MapValueSize(map);
  if (key_size == 0) ThrowTypeError(env, "map '" + name + "' has no keys to iterate");
  // A hash map restarts iteration when the previous key vanishes under us: max_entries bounds
  // the walk so concurrent deletes cannot loop forever.
  size_t limit = bpf_map__max_entries(map);
  std::vector<uint8_t> keys, values;
  std::vector<uint8_t> cur(key_size), next(key_size), value(value_size);
  size_t count = 0;
  bool first = true;
  bool batched = DumpBatched(env, fd, name, key_size, value_size, limit, keys, values, count);
  for (size_t steps = 0; !batched && count < limit && steps <= 2 * limit; steps++) {
    int err = bpf_map_get_next_key(fd, first ? nullptr : cur.data(), next.data());
    if (err) {
      err = errno;
      if (err == ENOENT) break;
      ThrowErrno(env, err, "iteration of map '" + name + "'");
    }
    first = false;
    cur.swap(next);
    err = bpf_map__lookup_elem(map, cur.data(), key_size, value.data(), value_size, 0);
    if (err == -ENOENT) continue;  // deleted since get_next_key
    if (err) ThrowErrno(env, err, "lookup in map '" + name + "'");
    keys.insert(keys.end(), cur.begin(), cur.end());
    values.insert(values.end(), value.begin(), value.end());
    count++;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("count", Napi::Number::New(env, static_cast<double>(count)));
  out.Set("keySize", Napi::Number::New(env, static_cast<double>(key_size)));
  out.Set("valueSize", Napi::Number::New(env, static_cast<double>(value_size)));
  out.Set("keys", Napi::Buffer<uint8_t>::Copy(env, keys.data(), keys.size()));
  out.Set("values", Napi::Buffer<uint8_t>::Copy(env, values.data(), values.size()));
  return out;
}

}  // namespace proctap
