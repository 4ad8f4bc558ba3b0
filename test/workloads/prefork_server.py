#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A pre-forking TCP server, for `proctap attach` tests: it counts its own traffic.

The parent listens on 127.0.0.1 (an ephemeral port), forks --workers workers that accept() on the shared
listener, prints "ready PORT", then reads commands on stdin:
  spawn     fork one more worker (after an attach: the kernel follows it)
  report    every worker appends its counts to --out (one JSON line: pid, ppid, tcp, udp) and exits;
            then the parent exits too
Protocol, per connection: the client sends lines "N\\n"; the worker answers each with N bytes. A worker
serves one connection at a time, until the client closes it.
"""
import argparse
import json
import os
import signal
import socket
import sys


def serve(listener, out):
    counts = {p: {"txBytes": 0, "rxBytes": 0, "txCalls": 0, "rxCalls": 0} for p in ("tcp", "udp")}
    tcp = counts["tcp"]

    def report(*_):
        line = json.dumps({"pid": os.getpid(), "ppid": os.getppid(), **counts}) + "\n"
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        os.write(fd, line.encode())
        os.close(fd)
        os._exit(0)

    signal.signal(signal.SIGTERM, report)
    while True:
        conn, _ = listener.accept()
        pending = b""
        while True:
            data = conn.recv(65536)
            if not data:
                break
            tcp["rxCalls"] += 1
            tcp["rxBytes"] += len(data)
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                answer = b"a" * int(line)
                sent = 0
                while sent < len(answer):
                    n = conn.send(answer[sent:])
                    tcp["txCalls"] += 1
                    tcp["txBytes"] += n
                    sent += n
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    workers = []

    def spawn():
        pid = os.fork()
        if pid == 0:
            serve(listener, a.out)
        workers.append(pid)

    for _ in range(a.workers):
        spawn()
    print("ready", listener.getsockname()[1], " ".join(map(str, workers)), flush=True)
    for line in sys.stdin:
        if line.strip() == "spawn":
            spawn()
            print("spawned", workers[-1], flush=True)
        elif line.strip() == "report":
            break
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    for pid in workers:
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
