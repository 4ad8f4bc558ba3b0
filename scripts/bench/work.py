#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Benchmark workloads for scripts/bench/bench.py (loopback only).
  udp-send PORT SECS   flood 64-byte datagrams on a connected socket; prints {"sent", "secs", "rate"}
  udp-recv PORT        count datagrams until SIGTERM; prints {"received"}
  tcp-server PORT      accept and close, forever
  tcp-conns PORT N     open N short connections (1 byte each way); prints {"conns", "secs"}"""
import json, signal, socket, sys, time


def udp_send(port, secs):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(('127.0.0.1', port))
    buf, send, n = b'x' * 64, s.send, 0
    t0 = time.monotonic()
    end = t0 + secs
    while time.monotonic() < end:
        for _ in range(1000):
            try:
                send(buf)
            except (ConnectionRefusedError, BlockingIOError):
                continue
        n += 1000
    dt = time.monotonic() - t0
    print(json.dumps({'sent': n, 'secs': dt, 'rate': n / dt}), flush=True)


def udp_recv(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind(('127.0.0.1', port))
    n = 0
    def done(*_):
        print(json.dumps({'received': n}), flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, done)
    print('ready', flush=True)
    while True:
        s.recv(2048)
        n += 1


def tcp_server(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('127.0.0.1', port))
    s.listen(4096)
    print('ready', flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(b'y')
        c.close()


def tcp_conns(port, n):
    t0 = time.monotonic()
    for _ in range(n):
        c = socket.create_connection(('127.0.0.1', port))
        c.sendall(b'x')
        c.recv(1)
        c.close()
    print(json.dumps({'conns': n, 'secs': time.monotonic() - t0}), flush=True)


if __name__ == '__main__':
    cmd, args = sys.argv[1], [float(a) if '.' in a else int(a) for a in sys.argv[2:]]
    {'udp-send': udp_send, 'udp-recv': udp_recv, 'tcp-server': tcp_server, 'tcp-conns': tcp_conns}[cmd](*args)
