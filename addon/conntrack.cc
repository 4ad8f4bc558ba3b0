// SPDX-License-Identifier: MIT
#include "conntrack.h"

#include <arpa/inet.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "errors.h"
#include "netns_thread.h"

namespace proctap {
namespace {

struct Tuple {
  std::string src, dst;
  int protocol = -1;
  std::optional<uint16_t> src_port, dst_port, icmp_id;
  std::optional<uint8_t> icmp_type, icmp_code;
};

struct Entry {
  int family = 0;
  Tuple original, reply;
  std::optional<uint32_t> status, id, mark, timeout;
  std::optional<uint16_t> zone;
  std::optional<uint8_t> tcp_state;
};

uint16_t Be16(const nlattr* a) {
  uint16_t v;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN, sizeof(v));
  return ntohs(v);
}

uint32_t Be32(const nlattr* a) {
  uint32_t v;
  std::memcpy(&v, reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN, sizeof(v));
  return ntohl(v);
}

uint8_t U8(const nlattr* a) { return reinterpret_cast<const uint8_t*>(a)[NLA_HDRLEN]; }

size_t PayloadLen(const nlattr* a) { return a->nla_len - NLA_HDRLEN; }

// Calls fn(type, attr) for each well-formed attribute in [data, data+len).
template <typename Fn>
void ForEachAttr(const uint8_t* data, size_t len, Fn fn) {
  while (len >= NLA_HDRLEN) {
    auto* a = reinterpret_cast<const nlattr*>(data);
    if (a->nla_len < NLA_HDRLEN || a->nla_len > len) return;
    fn(a->nla_type & NLA_TYPE_MASK, a);
    size_t step = NLA_ALIGN(a->nla_len);
    if (step >= len) return;
    data += step;
    len -= step;
  }
}

template <typename Fn>
void ForEachNested(const nlattr* parent, Fn fn) {
  ForEachAttr(reinterpret_cast<const uint8_t*>(parent) + NLA_HDRLEN, PayloadLen(parent), fn);
}

std::string Address(const nlattr* a, int af) {
  char text[INET6_ADDRSTRLEN] = {};
  size_t need = af == AF_INET ? 4 : 16;
  if (PayloadLen(a) < need) return std::string();
  inet_ntop(af, reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN, text, sizeof(text));
  return text;
}

Tuple ParseTuple(const nlattr* tuple) {
  Tuple t;
  ForEachNested(tuple, [&](int type, const nlattr* a) {
    if (type == CTA_TUPLE_IP) {
      ForEachNested(a, [&](int ip, const nlattr* v) {
        if (ip == CTA_IP_V4_SRC) t.src = Address(v, AF_INET);
        if (ip == CTA_IP_V4_DST) t.dst = Address(v, AF_INET);
        if (ip == CTA_IP_V6_SRC) t.src = Address(v, AF_INET6);
        if (ip == CTA_IP_V6_DST) t.dst = Address(v, AF_INET6);
      });
    } else if (type == CTA_TUPLE_PROTO) {
      ForEachNested(a, [&](int proto, const nlattr* v) {
        size_t n = PayloadLen(v);
        if (proto == CTA_PROTO_NUM && n >= 1) t.protocol = U8(v);
        if (proto == CTA_PROTO_SRC_PORT && n >= 2) t.src_port = Be16(v);
        if (proto == CTA_PROTO_DST_PORT && n >= 2) t.dst_port = Be16(v);
        if ((proto == CTA_PROTO_ICMP_ID || proto == CTA_PROTO_ICMPV6_ID) && n >= 2) t.icmp_id = Be16(v);
        if ((proto == CTA_PROTO_ICMP_TYPE || proto == CTA_PROTO_ICMPV6_TYPE) && n >= 1) t.icmp_type = U8(v);
        if ((proto == CTA_PROTO_ICMP_CODE || proto == CTA_PROTO_ICMPV6_CODE) && n >= 1) t.icmp_code = U8(v);
      });
    }
  });
  return t;
}

Entry ParseEntry(int family, const uint8_t* attrs, size_t len) {
  Entry e;
  e.family = family;
  ForEachAttr(attrs, len, [&](int type, const nlattr* a) {
    size_t n = PayloadLen(a);
    switch (type) {
      case CTA_TUPLE_ORIG: e.original = ParseTuple(a); break;
      case CTA_TUPLE_REPLY: e.reply = ParseTuple(a); break;
      case CTA_STATUS: if (n >= 4) e.status = Be32(a); break;
      case CTA_ID: if (n >= 4) e.id = Be32(a); break;
      case CTA_MARK: if (n >= 4) e.mark = Be32(a); break;
      case CTA_TIMEOUT: if (n >= 4) e.timeout = Be32(a); break;
      case CTA_ZONE: if (n >= 2) e.zone = Be16(a); break;
      case CTA_PROTOINFO:
        ForEachNested(a, [&](int info, const nlattr* tcp) {
          if (info != CTA_PROTOINFO_TCP) return;
          ForEachNested(tcp, [&](int field, const nlattr* v) {
            if (field == CTA_PROTOINFO_TCP_STATE && PayloadLen(v) >= 1) e.tcp_state = U8(v);
          });
        });
        break;
    }
  });
  return e;
}

// The whole dump, on the calling thread (which may have entered another netns). Returns 0 or errno.
int Dump(int family, std::vector<Entry>* out, std::string* step) {
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (sock < 0) {
    *step = "socket(NETLINK_NETFILTER)";
    return errno;
  }
  int rcvbuf = 4 << 20;
  if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  struct {
    nlmsghdr nh;
    nfgenmsg nfg;
  } req{};
  req.nh.nlmsg_len = sizeof(req);
  req.nh.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.nh.nlmsg_seq = 1;
  req.nfg.nfgen_family = static_cast<uint8_t>(family);
  req.nfg.version = NFNETLINK_V0;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(sock, &req, sizeof(req), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    int err = errno;
    close(sock);
    *step = "ctnetlink IPCTNL_MSG_CT_GET";
    return err;
  }
  std::vector<uint8_t> buf(256 * 1024);
  for (;;) {
    ssize_t got = recv(sock, buf.data(), buf.size(), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      int err = errno;  // ENOBUFS: the dump outran the socket buffer; the caller may retry
      close(sock);
      *step = "ctnetlink dump recv";
      return err;
    }
    int remaining = static_cast<int>(got);
    for (auto* nh = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(nh, remaining); nh = NLMSG_NEXT(nh, remaining)) {
      if (nh->nlmsg_type == NLMSG_DONE) {
        close(sock);
        return 0;
      }
      if (nh->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(nh));
        if (e->error == 0) continue;
        close(sock);
        *step = "ctnetlink dump";
        return -e->error;
      }
      if ((nh->nlmsg_type >> 8) != NFNL_SUBSYS_CTNETLINK || nh->nlmsg_len < NLMSG_LENGTH(sizeof(nfgenmsg))) continue;
      auto* nfg = static_cast<const nfgenmsg*>(NLMSG_DATA(nh));
      const uint8_t* attrs = reinterpret_cast<const uint8_t*>(nfg) + NLMSG_ALIGN(sizeof(nfgenmsg));
      size_t len = nh->nlmsg_len - NLMSG_LENGTH(NLMSG_ALIGN(sizeof(nfgenmsg)));
      out->push_back(ParseEntry(nfg->nfgen_family, attrs, len));
    }
  }
}

Napi::Object TupleObject(Napi::Env env, const Tuple& t) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("src", t.src);
  o.Set("dst", t.dst);
  o.Set("protocol", Napi::Number::New(env, t.protocol));
  if (t.src_port) o.Set("srcPort", Napi::Number::New(env, *t.src_port));
  if (t.dst_port) o.Set("dstPort", Napi::Number::New(env, *t.dst_port));
  if (t.icmp_id) o.Set("icmpId", Napi::Number::New(env, *t.icmp_id));
  if (t.icmp_type) o.Set("icmpType", Napi::Number::New(env, *t.icmp_type));
  if (t.icmp_code) o.Set("icmpCode", Napi::Number::New(env, *t.icmp_code));
  return o;
}

}  // namespace

Napi::Value ConntrackDump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family = AF_UNSPEC;
  std::string netns_path;
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsObject()) ThrowTypeError(env, "conntrackDump(options?: { family?: 'ipv4' | 'ipv6', netnsPath?: string })");
    Napi::Object options = info[0].As<Napi::Object>();
    Napi::Value f = options.Get("family");
    if (!f.IsUndefined()) {
      std::string name = f.IsString() ? f.As<Napi::String>().Utf8Value() : "";
      if (name == "ipv4") family = AF_INET;
      else if (name == "ipv6") family = AF_INET6;
      else ThrowTypeError(env, "conntrackDump: family must be 'ipv4' or 'ipv6'");
    }
    Napi::Value ns = options.Get("netnsPath");
    if (!ns.IsUndefined()) {
      if (!ns.IsString()) ThrowTypeError(env, "conntrackDump: netnsPath must be a string");
      netns_path = ns.As<Napi::String>().Utf8Value();
    }
  }
  std::vector<Entry> entries;
  std::string step;
  int err = 0;
  if (netns_path.empty()) {
    err = Dump(family, &entries, &step);
  } else {
    int dump_err = 0;
    err = RunInNetns(netns_path, [&] { dump_err = Dump(family, &entries, &step); }, &step);
    if (err == 0) err = dump_err;
  }
  if (err != 0) ThrowErrno(env, err, step);

  Napi::Array out = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    const Entry& e = entries[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("family", e.family == AF_INET6 ? "ipv6" : e.family == AF_INET ? "ipv4" : std::to_string(e.family));
    o.Set("original", TupleObject(env, e.original));
    o.Set("reply", TupleObject(env, e.reply));
    if (e.id) o.Set("id", Napi::Number::New(env, *e.id));
    if (e.status) o.Set("status", Napi::Number::New(env, *e.status));
    if (e.mark) o.Set("mark", Napi::Number::New(env, *e.mark));
    if (e.timeout) o.Set("timeout", Napi::Number::New(env, *e.timeout));
    if (e.zone) o.Set("zone", Napi::Number::New(env, *e.zone));
    if (e.tcp_state) o.Set("tcpState", Napi::Number::New(env, *e.tcp_state));
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

}  // namespace proctap
