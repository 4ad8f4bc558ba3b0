#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Many short connections, counted by the workload itself (loopback only), for the folding tests.
A server thread accepts on 127.0.0.1 (an ephemeral port of its own) and answers each request of REQ
bytes with RESP bytes, then closes; the client side opens --conns connections to it one after the other,
each from a new ephemeral port. --refused K more connects go to a closed port. --quiet-children Q
children exit without any traffic; --busy-children B children each make one connection. Each process
appends {"pid", "ppid", "tcp": {...}, "udp": {...}} to --out."""
import argparse, json, os, socket, threading


def counts():
    return {"txBytes": 0, "rxBytes": 0, "txCalls": 0, "rxCalls": 0}


def serve(listener, n, req, resp, tcp, lock):
    for _ in range(n):
        c, _ = listener.accept()
        got = 0
        while got < req:
            d = c.recv(65536)
            if not d:
                break
            with lock:
                tcp["rxBytes"] += len(d)
                tcp["rxCalls"] += 1
            got += len(d)
        sent = c.send(b"r" * resp)
        with lock:
            tcp["txBytes"] += sent
            tcp["txCalls"] += 1
        c.close()


def connect_once(port, req, resp, tcp, lock):
    s = socket.create_connection(("127.0.0.1", port))
    sent = s.send(b"q" * req)
    with lock:
        tcp["txBytes"] += sent
        tcp["txCalls"] += 1
    got = 0
    while got < resp:
        d = s.recv(65536)
        if not d:
            break
        with lock:
            tcp["rxBytes"] += len(d)
            tcp["rxCalls"] += 1
        got += len(d)
    s.close()


def report(out, tcp):
    with open(out, "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "tcp": tcp, "udp": counts()}) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--conns", type=int, default=20)
    p.add_argument("--req", type=int, default=100)
    p.add_argument("--resp", type=int, default=1000)
    p.add_argument("--refused", type=int, default=0)
    p.add_argument("--quiet-children", type=int, default=0)
    p.add_argument("--busy-children", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    tcp, lock = counts(), threading.Lock()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connects to it are refused
    closed_port = closed.getsockname()[1]
    server = threading.Thread(target=serve, args=(listener, a.conns + a.busy_children, a.req, a.resp, tcp, lock))
    server.start()
    for _ in range(a.conns):
        connect_once(port, a.req, a.resp, tcp, lock)
    for _ in range(a.refused):
        try:
            socket.create_connection(("127.0.0.1", closed_port))
        except ConnectionRefusedError:
            pass
    kids = []
    for _ in range(a.quiet_children):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        kids.append(pid)
    for _ in range(a.busy_children):
        pid = os.fork()
        if pid == 0:
            own = counts()
            connect_once(port, a.req, a.resp, own, threading.Lock())
            report(a.out, own)
            os._exit(0)
        kids.append(pid)
        os.waitpid(pid, 0)  # one at a time: the server thread answers them in order
    for pid in kids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    server.join()
    listener.close()
    closed.close()
    report(a.out, tcp)
    print(json.dumps({"port": port, "closedPort": closed_port}))


if __name__ == "__main__":
    main()
