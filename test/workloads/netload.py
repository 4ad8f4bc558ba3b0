#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Test workload that counts its own network I/O.

Every process appends one JSON line to --out: its pid, ppid and what its own send/recv calls returned
(bytes and calls per protocol and direction). proctap's report must equal these counts exactly.
Counting rule (docs/schema.md): a call is counted when it returned >= 1 byte (TCP) or >= 0 (UDP).

  netload.py tree     --out F --port P            parent + 2 children + grandchild, TCP v4/v6 + UDP
  netload.py udp      --out F --port P            unconnected UDP sendto/recvfrom, v4 and v6
  netload.py sendfile --out F --port P --size N   sendfile() of an N-byte file over TCP
  netload.py short    --out F --port P --count N  N short TCP request/response connections
  netload.py pair     --out F                     a child server and its parent client, both traced
  netload.py gateway  --out F --port P [--host A | --ipv6] --count N --size S
                                                  N echo exchanges of S bytes on one TCP connection to A,
                                                  default: the default gateway (run --isolate's host end)
  netload.py patterns --out F --port P            a beacon, a bulk upload, a fan-out to closed ports and
                                                  request/response (needs the harness's servers)
  netload.py resolve  --out F --port P --dns A --name N
                                                  ask DNS server A (UDP port 53) for N's A and AAAA records
                                                  itself, then TCP echo to every address answered
  netload.py upload   --out F --host H --port P --size N [--port2 Q]
                                                  N bytes to a sink at H:P that answers with an 8-byte count
                                                  (and the same to H:Q)
  netload.py connect  --out F --host H --port P   one connect() that is expected to time out
"""
import argparse
import json
import os
import socket
import sys
import tempfile

out_path = None
counts = None


def reset_counts():
    global counts
    counts = {p: {"txBytes": 0, "rxBytes": 0, "txCalls": 0, "rxCalls": 0} for p in ("tcp", "udp")}


def report():
    line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), **counts}) + "\n"
    fd = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.write(fd, line.encode())
    os.close(fd)


def send(sock, data, proto="tcp", addr=None):
    total = 0
    while total < len(data) or (proto == "udp" and total == 0):
        chunk = data[total:]
        n = sock.sendto(chunk, addr) if addr else sock.send(chunk)
        if n > 0 or proto == "udp":
            counts[proto]["txCalls"] += 1
            counts[proto]["txBytes"] += n
        total += n
        if proto == "udp":
            break
    return total


def recv_exact(sock, n):
    got = 0
    while got < n:
        data = sock.recv(min(65536, n - got))
        if not data:
            raise RuntimeError("peer closed early after %d of %d bytes" % (got, n))
        counts["tcp"]["rxCalls"] += 1
        counts["tcp"]["rxBytes"] += len(data)
        got += len(data)


def tcp_echo(host, port, total, chunk):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.connect((host, port))
    sent = 0
    while sent < total:
        sent += send(s, b"x" * min(chunk, total - sent))
    recv_exact(s, total)
    s.close()


def udp_exchange(host, port, sizes):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    for size in sizes:
        send(s, b"u" * size, "udp", (host, port))
        data, _ = s.recvfrom(65535)
        counts["udp"]["rxCalls"] += 1
        counts["udp"]["rxBytes"] += len(data)
    s.close()


def child(fn):
    """Fork a child that runs fn immediately (no pause before its first connect) and reports."""
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        reset_counts()
        try:
            fn()
            report()
        finally:
            os._exit(0)
    return pid


def scenario_tree(a):
    def grandchild():
        udp_exchange("127.0.0.1", a.port, [1, 100, 1000, 0])

    def child_v6():
        tcp_echo("::1", a.port, 30000, 7000)
        os.waitpid(child(grandchild), 0)

    def child_v4():
        tcp_echo("127.0.0.1", a.port, 12345, 1000)

    pids = [child(child_v4), child(child_v6)]
    tcp_echo("127.0.0.1", a.port, 100000, 16384)
    for pid in pids:
        os.waitpid(pid, 0)


def scenario_udp(a):
    udp_exchange("127.0.0.1", a.port, [10, 200, 1400, 0, 65000])
    udp_exchange("::1", a.port, [1, 2, 3, 4000])


def scenario_sendfile(a):
    with tempfile.TemporaryFile() as f:
        f.write(os.urandom(a.size))
        f.flush()
        s = socket.create_connection(("127.0.0.1", a.port))
        offset = 0
        while offset < a.size:
            n = os.sendfile(s.fileno(), f.fileno(), offset, a.size - offset)
            counts["tcp"]["txCalls"] += 1
            counts["tcp"]["txBytes"] += n
            offset += n
        s.shutdown(socket.SHUT_WR)
        recv_exact(s, 8)  # the sink answers with the byte count it got, 8 bytes
        s.close()


def scenario_short(a):
    for i in range(a.count):
        tcp_echo("127.0.0.1", a.port, 64 + i, 4096)


def scenario_pair(a):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def serve():
        for _ in range(3):
            conn, _ = server.accept()
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                counts["tcp"]["rxCalls"] += 1
                counts["tcp"]["rxBytes"] += len(data)
                send(conn, data)
            conn.close()

    pid = child(serve)
    server.close()
    for size in (1000, 50000, 3):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        send(s, b"p" * size)
        recv_exact(s, size)
        s.close()
    os.waitpid(pid, 0)


def scenario_patterns(a):
    import time
    # request/response: 6 small requests on one connection, each answered with 40x the bytes (port+3)
    rr = socket.create_connection(("127.0.0.1", a.port + 3))
    for i in range(6):
        send(rr, b"q" * 50)
        recv_exact(rr, 50 * 40)
    rr.close()
    # bulk: 8 MiB to the sink (port+1), which answers with an 8-byte count
    bulk = socket.create_connection(("127.0.0.1", a.port + 1))
    sent = 0
    while sent < 8 << 20:
        sent += send(bulk, b"b" * 65536)
    bulk.shutdown(socket.SHUT_WR)
    recv_exact(bulk, 8)
    bulk.close()
    # fan-out to 12 closed ports: every connect is refused
    for i in range(12):
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", a.port + 100 + i))
        except ConnectionRefusedError:
            pass
        s.close()
    # beacon: 20 bytes every 300 ms on one persistent connection to the echo server
    beacon = socket.create_connection(("127.0.0.1", a.port))
    for i in range(7):
        send(beacon, b"h" * 20)
        recv_exact(beacon, 20)
        time.sleep(0.3)
    beacon.close()


def default_gateway():
    with open("/proc/net/route") as f:
        for line in f.read().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                return socket.inet_ntoa(bytes.fromhex(fields[2])[::-1])
    raise RuntimeError("no default route")


def default_gateway6():
    with open("/proc/net/ipv6_route") as f:
        for line in f.read().splitlines():
            fields = line.split()
            if fields[0] == "0" * 32 and fields[1] == "00" and fields[4] != "0" * 32:
                return socket.inet_ntop(socket.AF_INET6, bytes.fromhex(fields[4]))
    raise RuntimeError("no IPv6 default route")


def scenario_gateway(a):
    host = a.host or (default_gateway6() if a.ipv6 else default_gateway())
    s = socket.create_connection((host, a.port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(a.count):
        send(s, b"g" * a.size)
        recv_exact(s, a.size)
    s.close()


def dns_query(server, name, qtype):
    """One UDP DNS query, sent by this process; returns the addresses of the answer's A/AAAA records."""
    import random
    import struct
    qid = random.randrange(65536)
    question = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0" + struct.pack("!HH", qtype, 1)
    query = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    send(s, query, "udp", (server, 53))
    data, _ = s.recvfrom(65535)
    counts["udp"]["rxCalls"] += 1
    counts["udp"]["rxBytes"] += len(data)
    s.close()

    def skip_name(at):
        while True:
            n = data[at]
            if n & 0xC0 == 0xC0:
                return at + 2
            if n == 0:
                return at + 1
            at += 1 + n

    rid, flags, qd, an = struct.unpack("!HHHH", data[:8])
    assert rid == qid and flags & 0x8000, "not an answer to our query"
    at = 12
    for _ in range(qd):
        at = skip_name(at) + 4
    addrs = []
    for _ in range(an):
        at = skip_name(at)
        rtype, _, _, rdlen = struct.unpack("!HHIH", data[at:at + 10])
        rdata = data[at + 10:at + 10 + rdlen]
        if rtype == 1:
            addrs.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            addrs.append(socket.inet_ntop(socket.AF_INET6, rdata))
        at += 10 + rdlen
    return addrs


def scenario_resolve(a):
    for qtype in (1, 28):
        for addr in dns_query(a.dns, a.name, qtype):
            tcp_echo(addr, a.port, 1000, 1000)


def upload(host, port, size):
    s = socket.create_connection((host, port))
    sent = 0
    while sent < size:
        sent += send(s, b"r" * min(65536, size - sent))
    s.shutdown(socket.SHUT_WR)
    recv_exact(s, 8)
    s.close()


def scenario_upload(a):
    upload(a.host, a.port, a.size)
    if a.port2:
        upload(a.host, a.port2, a.size)


def scenario_connect(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.connect((a.host, a.port))
        raise SystemExit("connect() succeeded, expected a timeout")
    except (TimeoutError, OSError) as e:
        if getattr(e, "errno", None) != 110:
            raise
    s.close()


def main():
    global out_path
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["tree", "udp", "sendfile", "short", "pair", "patterns", "resolve", "upload", "connect", "gateway"])
    p.add_argument("--dns")
    p.add_argument("--name")
    p.add_argument("--host")
    p.add_argument("--port2", type=int, default=0)
    p.add_argument("--ipv6", action="store_true", help="gateway: the IPv6 default gateway")
    p.add_argument("--out", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--count", type=int, default=50)
    a = p.parse_args()
    out_path = a.out
    reset_counts()
    globals()["scenario_" + a.scenario](a)
    report()


if __name__ == "__main__":
    main()
