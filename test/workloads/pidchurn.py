#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PID reuse under fast spawn/exit churn, for `proctap run`.

Run as root in a new PID namespace (`unshare --pid --fork python3 pidchurn.py PORT ROUNDS`): sets the
namespace's pid_max to 400 (per PID namespace since Linux 6.14), so namespace pids wrap, and in each
round forks a child, reaps it, then creates another child with the very same host pid and namespace pid
(clone3 with set_tid: proctap sees host pids, which a small namespace pid_max alone never recycles).

Every child sends a count of bytes of its own (seq-specific) over a TCP connection the parent opened and
the children inherit (one socket, so one socket cookie, for every process), and one UDP datagram of its
own over a socket of its own; then it reports its host pid, namespace pid and start time (clock ticks)
through a pipe. At the end the parent prints one JSON object: {"children": [...], "reused": N,
"sinkBytes": what the TCP sink counted}.
"""
import ctypes
import json
import os
import signal
import socket
import struct
import sys

SYS_CLONE3 = 435
libc = ctypes.CDLL(None, use_errno=True)


class CloneArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "flags", "pidfd", "child_tid", "parent_tid", "exit_signal", "stack", "stack_size", "tls",
        "set_tid", "set_tid_size", "cgroup")]


def clone_with_pids(pids):
    """fork() into the given pids, innermost PID namespace first; raises OSError (EEXIST if taken)."""
    tids = (ctypes.c_int32 * len(pids))(*pids)
    args = CloneArgs(exit_signal=signal.SIGCHLD, set_tid=ctypes.addressof(tids), set_tid_size=len(pids))
    pid = libc.syscall(SYS_CLONE3, ctypes.byref(args), ctypes.c_size_t(ctypes.sizeof(args)))
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return pid


def tcp_bytes(seq):
    return 1000 + 37 * seq


def udp_bytes(seq):
    return 1 + seq % 200


def child(seq, tcp, port, report_fd):
    """Sends this child's bytes, reports who it was, exits."""
    tcp.sendall(b"t" * tcp_bytes(seq))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b"u" * udp_bytes(seq), ("127.0.0.1", port))
    status = open("/proc/self/status").read()
    nspid = [int(x) for x in status.split("NSpid:")[1].split("\n")[0].split()]
    start_ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
    line = json.dumps({"seq": seq, "hostPid": nspid[0], "nsPid": nspid[-1], "startTicks": start_ticks,
                       "tcpTx": tcp_bytes(seq), "udpTx": udp_bytes(seq)}) + "\n"
    os.write(report_fd, line.encode())
    os._exit(0)


def main():
    port, rounds = int(sys.argv[1]), int(sys.argv[2])
    if os.getpid() != 1:
        sys.exit("pidchurn.py: run me as the first process of a new PID namespace (unshare --pid --fork)")
    with open("/proc/sys/kernel/pid_max", "w") as f:
        f.write("400")
    tcp = socket.create_connection(("127.0.0.1", port + 1))
    report_r, report_w = os.pipe()
    children, reused, seq = [], 0, 0

    def reap(pid):
        os.waitpid(pid, 0)
        line = b""
        while not line.endswith(b"\n"):
            line += os.read(report_r, 1)
        children.append(json.loads(line))
        return children[-1]

    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:
            child(seq, tcp, port, report_w)
        first = reap(pid)
        seq += 1
        try:
            pid = clone_with_pids([first["nsPid"], first["hostPid"]])
        except OSError:
            continue  # someone else took the host pid meanwhile: no reuse this round
        if pid == 0:
            child(seq, tcp, port, report_w)
        second = reap(pid)
        seq += 1
        reused += second["hostPid"] == first["hostPid"]
    tcp.shutdown(socket.SHUT_WR)
    counted = b""
    while len(counted) < 8:
        chunk = tcp.recv(8 - len(counted))
        if not chunk:
            break
        counted += chunk
    print(json.dumps({"children": children, "reused": reused, "sinkBytes": struct.unpack("<Q", counted)[0]}))


if __name__ == "__main__":
    main()
