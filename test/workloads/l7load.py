#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""L7 view workload: known payloads over TCP v4/v6 and UDP, through every send/recv path there is.

  l7load.py --out F --port P

Talks to the e2e harness's servers (TCP echo and UDP echo on P, a TCP sink on P+1 that answers with its
byte count, P+2 closed). Writes one JSON line to F: for every flow (socket and remote) what it sent and
received, byte for byte (base64 of the whole stream), which calls moved the bytes, which sent ranges never
were in user memory (sendfile), whether proctap should copy the flow (a "candidate": its first bytes look
like HTTP or DNS) and where its copies should start (a flow that looks like nothing at first is given a few
calls). The test compares proctap's RECORD_DATA heads with these streams.
"""
import argparse
import base64
import ctypes
import json
import os
import socket
import tempfile

flows = []


class Flow:
    """One flow: what one socket exchanged with one remote, as the program's own calls returned it."""

    def __init__(self, name, sock, remote, candidate=True):
        self.name, self.sock, self.remote, self.candidate = name, sock, remote, candidate
        self.local_port = sock.getsockname()[1]
        self.tx, self.rx = bytearray(), bytearray()
        self.calls = {"tx": [], "rx": []}
        self.not_copied_tx = []
        self.start = {"tx": 0, "rx": 0}
        flows.append(self)

    def sent(self, data, n, how):
        self.tx += data[:n]
        self.calls["tx"].append([how, n])

    def received(self, data, how):
        self.rx += data
        self.calls["rx"].append([how, len(data)])

    def json(self):
        return {
            "name": self.name, "proto": "udp" if self.sock.type == socket.SOCK_DGRAM else "tcp",
            "localPort": self.local_port, "remoteAddr": self.remote[0], "remotePort": self.remote[1],
            "candidate": self.candidate, "tx": base64.b64encode(self.tx).decode(), "rx": base64.b64encode(self.rx).decode(),
            "calls": self.calls, "notCopiedTx": self.not_copied_tx, "start": self.start,
        }


def http_request(method, path, body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: l7.test\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    return head + body


def dns_query(qid, name="l7.test"):
    header = qid.to_bytes(2, "big") + b"\x01\x00" + b"\x00\x01" + b"\x00\x00" * 3
    question = b"".join(len(p).to_bytes(1, "big") + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
    return header + question


def recv_exact(flow, n, how="recv"):
    """Reads the n echoed bytes back through `how` (recv, recvfrom, recv_into, read, readv, recvmsg)."""
    s, got = flow.sock, 0
    while got < n:
        want = n - got
        if how == "recv":
            data = s.recv(want)
        elif how == "recvfrom":
            data = s.recvfrom(want)[0]
        elif how == "read":
            data = os.read(s.fileno(), want)
        elif how in ("readv", "recvmsg"):
            # two buffers, the first small: the bytes cross a segment boundary
            a, b = bytearray(min(7, want)), bytearray(max(want - 7, 1))
            k = os.readv(s.fileno(), [a, b]) if how == "readv" else s.recvmsg_into([a, b])[0]
            data = bytes((a + b)[:k])
        else:
            raise ValueError(how)
        if not data:
            raise RuntimeError("echo closed early")
        flow.received(data, how)
        got += len(data)


def send_all(flow, data, how="send"):
    s, off = flow.sock, 0
    while off < len(data):
        chunk = data[off:]
        if how == "send":
            n = s.send(chunk)
        elif how == "sendto":
            n = s.sendto(chunk, flow.remote)
        elif how == "write":
            n = os.write(s.fileno(), chunk)
        elif how in ("writev", "sendmsg"):
            # three segments, the first short
            parts = [chunk[:5], chunk[5:40], chunk[40:]]
            n = os.writev(s.fileno(), parts) if how == "writev" else s.sendmsg(parts)
        else:
            raise ValueError(how)
        flow.sent(chunk, n, how)
        off += n


def tcp_flows(host, port, family, tag):
    peer = (host, port)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect(peer)
    f = Flow(f"{tag}-http", s, peer)
    # every way in, every way out; each exchange is echoed back
    for i, (out, back) in enumerate([("send", "recv"), ("write", "read"), ("sendto", "recvfrom"),
                                     ("sendmsg", "recvmsg"), ("writev", "readv")]):
        req = http_request("POST" if i % 2 else "GET", f"/{tag}/{out}", b"x" * (i * 50))
        send_all(f, req, out)
        recv_exact(f, len(req), back)
    # MSG_PEEK reads the same bytes twice: proctap copies them once, from the read that consumes them
    req = http_request("PUT", f"/{tag}/peek", b"p" * 30)
    send_all(f, req)
    got = 0
    while got == 0:
        got = len(s.recv(len(req), socket.MSG_PEEK))
    recv_exact(f, len(req))
    # a large write: the copy stops at the snaplen
    big = http_request("POST", f"/{tag}/big", bytes(range(256)) * 400)
    send_all(f, big)
    recv_exact(f, len(big))
    s.close()

    # looks like nothing for its first calls: copied from the first HTTP call on
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect(peer)
    f = Flow(f"{tag}-late", s, peer)
    junk = b"\x00\x07hello, not a protocol"
    send_all(f, junk)
    recv_exact(f, len(junk))
    f.start = {"tx": len(f.tx), "rx": len(f.rx)}
    for path in ("/late/1", "/late/2"):
        req = http_request("GET", path)
        send_all(f, req)
        recv_exact(f, len(req))
    s.close()

    # never looks like a decoded protocol within the first calls: never copied, not even HTTP later
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect(peer)
    f = Flow(f"{tag}-binary", s, peer, candidate=False)
    for i in range(3):
        junk = bytes([i, 0xFF, 0x10]) * 20
        send_all(f, junk)
        recv_exact(f, len(junk))
    req = http_request("GET", "/too-late")
    send_all(f, req)
    recv_exact(f, len(req))
    s.close()


def sendfile_flow(host, port, family, tag, size):
    """An HTTP response head by send(), then the body by sendfile(): never in user memory."""
    peer = (host, port + 1)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect(peer)
    f = Flow(f"{tag}-sendfile", s, peer)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode()
    send_all(f, head)
    with tempfile.TemporaryFile() as body:
        content = bytes((i * 7) & 0xFF for i in range(size))
        body.write(content)
        body.flush()
        off = 0
        while off < size:
            n = os.sendfile(s.fileno(), body.fileno(), off, size - off)
            f.not_copied_tx.append([len(f.tx), n])
            f.sent(content[off:], n, "sendfile")
            off += n
    s.shutdown(socket.SHUT_WR)
    data = b""
    while len(data) < 8:
        chunk = s.recv(8 - len(data))
        if not chunk:
            break
        f.received(chunk, "recv")
        data += chunk
    s.close()


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


libc = ctypes.CDLL(None, use_errno=True)


def mmsg(fd, payloads, names, send):
    """sendmmsg()/recvmmsg() of len(payloads) messages (recv: buffers of those sizes); msg_len starts as junk."""
    n = len(payloads)
    vec = (Mmsghdr * n)()
    keep = []
    for i, p in enumerate(payloads):
        buf = ctypes.create_string_buffer(p, len(p)) if send else ctypes.create_string_buffer(len(p))
        iov = Iovec(ctypes.cast(buf, ctypes.c_void_p), len(p))
        keep += [buf, iov]
        vec[i].hdr.iov = ctypes.pointer(iov)
        vec[i].hdr.iovlen = 1
        vec[i].len = 0xDEAD
        if names and names[i] is not None:
            vec[i].hdr.name = ctypes.cast(names[i], ctypes.c_void_p)
            vec[i].hdr.namelen = ctypes.sizeof(names[i])
    r = (libc.sendmmsg if send else libc.recvmmsg)(fd, vec, n, 0, *([] if send else [None]))
    if r != n:
        raise OSError(ctypes.get_errno(), f"{'send' if send else 'recv'}mmsg moved {r} of {n} messages")
    return [vec[i].len for i in range(n)], [keep[2 * i].raw[: vec[i].len] for i in range(n)]


def sockaddr_in(host, port):
    raw = socket.inet_pton(socket.AF_INET, host)
    return ctypes.create_string_buffer(socket.AF_INET.to_bytes(2, "little") + port.to_bytes(2, "big") + raw + b"\0" * 8, 16)


def udp_flows(port):
    # connected IPv4: send/recv, write/read, sendmsg/recvmsg with several segments, an empty datagram,
    # sendmmsg/recvmmsg
    peer = ("127.0.0.1", port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(peer)
    f = Flow("udp4-dns", s, peer)
    q = dns_query(1)
    f.sent(q, s.send(q), "send")
    f.received(s.recv(4096), "recv")
    q = dns_query(2, "write.l7.test")
    f.sent(q, os.write(s.fileno(), q), "write")
    f.received(os.read(s.fileno(), 4096), "read")
    q = dns_query(3, "sendmsg.l7.test")
    f.sent(q, s.sendmsg([q[:4], q[4:12], q[12:]]), "sendmsg")
    a, b = bytearray(6), bytearray(4096)
    n = s.recvmsg_into([a, b])[0]
    f.received(bytes((a + b)[:n]), "recvmsg")
    f.sent(b"", s.send(b""), "send")
    f.received(s.recv(4096), "recv")
    qs = [dns_query(10 + i, f"m{i}.l7.test") for i in range(3)]
    lens, _ = mmsg(s.fileno(), qs, None, True)
    for q, n in zip(qs, lens):
        f.sent(q, n, "sendmmsg")
    lens, got = mmsg(s.fileno(), [bytes(len(q)) for q in qs], None, False)
    for g in got:
        f.received(g, "recvmmsg")
    s.close()

    # unconnected IPv4, one sendmmsg to two remotes: the closed port's flow is given up first (not DNS),
    # the DNS flow's messages are the 2nd and 4th
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    closed = ("127.0.0.1", port + 2)
    f_dns = Flow("udp4-mmsg-dns", s, peer)
    f_junk = Flow("udp4-mmsg-junk", s, closed, candidate=False)
    for i in range(4):
        junk = b"not dns %d" % i
        f_junk.sent(junk, s.sendto(junk, closed), "sendto")
    msgs = [b"junk A", dns_query(20, "a.l7.test"), b"junk B", dns_query(21, "b.l7.test")]
    dests = [closed, peer, closed, peer]
    lens, _ = mmsg(s.fileno(), msgs, [sockaddr_in(*d) for d in dests], True)
    for m, d, n in zip(msgs, dests, lens):
        (f_dns if d == peer else f_junk).sent(m, n, "sendmmsg")
    for _ in range(2):
        data, addr = s.recvfrom(4096)
        f_dns.received(data, "recvfrom")
    s.close()

    # unconnected IPv6: sendto/recvfrom, sendmsg to an address
    peer6 = ("::1", port)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.bind(("::1", 0))
    f = Flow("udp6-dns", s, peer6)
    for i in range(3):
        q = dns_query(30 + i, f"v6-{i}.l7.test")
        f.sent(q, s.sendto(q, peer6), "sendto")
        f.received(s.recvfrom(4096)[0], "recvfrom")
    q = dns_query(40, "v6-sendmsg.l7.test")
    f.sent(q, s.sendmsg([q[:3], q[3:]], [], 0, peer6), "sendmsg")
    f.received(s.recvfrom(4096)[0], "recvfrom")
    # not DNS: never copied
    other = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    other.bind(("::1", 0))
    f = Flow("udp6-other", other, peer6, candidate=False)
    for i in range(5):
        m = b"hello %d" % i
        f.sent(m, f.sock.sendto(m, peer6), "sendto")
        f.received(f.sock.recvfrom(4096)[0], "recvfrom")
    f.sock.close()
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sendfile-size", type=int, default=300000)
    a = p.parse_args()
    tcp_flows("127.0.0.1", a.port, socket.AF_INET, "tcp4")
    tcp_flows("::1", a.port, socket.AF_INET6, "tcp6")
    sendfile_flow("127.0.0.1", a.port, socket.AF_INET, "tcp4", a.sendfile_size)
    udp_flows(a.port)
    line = json.dumps({"pid": os.getpid(), "flows": [f.json() for f in flows]}) + "\n"
    fd = os.open(a.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.write(fd, line.encode())
    os.close(fd)


if __name__ == "__main__":
    main()
