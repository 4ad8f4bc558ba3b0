#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A long-running process for `proctap attach` tests that counts its own traffic after a signal.

Opens a TCP connection and exchanges --before bytes (sent before any attach: must NOT be counted),
prints "ready", waits for a line on stdin, then sends --bytes over the same connection, reads the
echo, forks a child that exchanges UDP datagrams, and appends per-process JSON counts (post-signal
only) to --out. With --echo-server it first starts a TCP+UDP echo server of its own, untraced, in a
forked process (for namespaces the test creates).
"""
import argparse
import json
import os
import socket
import sys


def counts():
    return {p: {"txBytes": 0, "rxBytes": 0, "txCalls": 0, "rxCalls": 0} for p in ("tcp", "udp")}


def report(out, c):
    # NSpid from the host's /proc: the host pid first, the pid in the process's own namespace last
    with open("/proc/self/status") as f:
        nspid = [int(x) for x in f.read().split("NSpid:")[1].split("\n")[0].split()]
    line = json.dumps({"pid": nspid[0], "nsPid": nspid[-1], "ppid": os.getppid(), **c}) + "\n"
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.write(fd, line.encode())
    os.close(fd)


def echo_server(port):
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("127.0.0.1", port))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    if os.fork() == 0:
        while True:
            data, addr = udp.recvfrom(65535)
            udp.sendto(data, addr)
    while True:
        conn, _ = tcp.accept()
        if os.fork() == 0:
            while True:
                data = conn.recv(65536)
                if not data:
                    os._exit(0)
                conn.sendall(data)
        conn.close()


def exchange_tcp(sock, total, c):
    sent = 0
    while sent < total:
        n = sock.send(b"a" * min(4096, total - sent))
        if c is not None:
            c["tcp"]["txCalls"] += 1
            c["tcp"]["txBytes"] += n
        sent += n
    got = 0
    while got < total:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError("echo closed")
        if c is not None:
            c["tcp"]["rxCalls"] += 1
            c["tcp"]["rxBytes"] += len(data)
        got += len(data)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--before", type=int, default=5000)
    p.add_argument("--bytes", type=int, default=40000)
    p.add_argument("--datagrams", type=int, default=7)
    p.add_argument("--out", required=True)
    p.add_argument("--echo-server", action="store_true")
    a = p.parse_args()
    if a.echo_server:
        server = os.fork()
        if server == 0:
            os.setpgid(0, 0)  # the server and its forks die together at the end
            echo_server(a.port)
        import time
        time.sleep(0.3)
    sock = socket.create_connection(("127.0.0.1", a.port))
    exchange_tcp(sock, a.before, None)
    print("ready", flush=True)
    sys.stdin.readline()
    c = counts()
    exchange_tcp(sock, a.bytes, c)
    child = os.fork()
    if child == 0:
        cc = counts()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(a.datagrams):
            n = u.sendto(b"d" * (10 * i + 1), ("127.0.0.1", a.port))
            cc["udp"]["txCalls"] += 1
            cc["udp"]["txBytes"] += n
            data, _ = u.recvfrom(65535)
            cc["udp"]["rxCalls"] += 1
            cc["udp"]["rxBytes"] += len(data)
        report(a.out, cc)
        os._exit(0)
    os.waitpid(child, 0)
    sock.close()
    report(a.out, c)
    if a.echo_server:
        os.killpg(server, 9)


if __name__ == "__main__":
    main()
