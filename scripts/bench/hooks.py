#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Per-hook cost of the socket hooks, quickly: a narrow, repeatable part of `make bench` step 1.
  hooks.py [--reps N] [--secs S] [--mode send|pair] [--throughput] [ROOT...]
ROOT: proctap checkouts (built) to compare, alternating within every repetition (default: this one);
the word bpftrace runs the bench's bpftrace peer instead (needs tracefs mounted, as bench.py does).
send: a traced C loop writes 64 bytes at a time to an untraced reader (as iperf3 -l 64 in the bench: the
recv hook then measures the early exit of untraced processes). pair: both ends traced, in one process.
Prints the median ns/call (bpf_stats run_time_ns / run_cnt) of every program that ran, with the spread,
and the loop's writes/s; --throughput instead runs without bpf_stats, also untraced, for the ratio."""
import argparse, json, os, statistics, subprocess as sp, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402  (the e2e lock)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '../..'))
LOOP = os.path.join(ROOT, 'build/bench-hotloop')
PORT = 5307
BPFTRACE = ('tracepoint:sock:sock_send_length, tracepoint:sock:sock_recv_length '
            '/pid == cpid && args->ret > 0/ { @bytes[probe] = sum(args->ret); @calls[probe] = count(); }')


lock = server.lock  # the e2e lock


def progs():
    return {p['id']: p for p in json.loads(sp.run(['bpftool', '-j', 'prog', 'show'], check=True,
                                                   stdout=sp.PIPE).stdout)}


def one(root, mode, secs, stats):
    """One traced (root) or untraced (None) run: ({prog: ns/call}, writes/s)."""
    start = progs() if stats else {}
    rcv = None
    if mode == 'send':
        rcv = sp.Popen([LOOP, 'recv', str(PORT)], stdout=sp.DEVNULL)
        time.sleep(0.1)
        cmd = [LOOP, 'send', str(PORT), str(secs)]
    else:
        cmd = [LOOP, 'pair', str(secs)]
    if root == 'bpftrace':  # the bench's peer: a map count on the same tracepoints, for the traced pid only
        cmd = ['bpftrace', '-q', '-e', BPFTRACE, '-c', ' '.join(cmd)]
    elif root:
        cmd = [os.path.join(root, 'bin/proctap'), 'run', '-q', '--force', '--json', '/tmp/proctap-hooks.json', '--'] + cmd
    t0 = time.monotonic()
    p = sp.Popen(cmd, stdout=sp.PIPE, text=True)
    costs = {}
    if stats:
        before = None
        for _ in range(100):  # until proctap's programs run
            time.sleep(0.05)
            before = progs()
            if any(i not in start and q.get('run_cnt', 0) > 1000 for i, q in before.items()):
                break
        time.sleep(0.2)
        before = progs()
        time.sleep(secs / 2)
        after = progs()
        for i, q in after.items():
            if i in start or i not in before:
                continue
            n = q.get('run_cnt', 0) - before[i].get('run_cnt', 0)
            if n > 1000:
                costs[q.get('name', str(i))] = ((q['run_time_ns'] - before[i]['run_time_ns']) / n, n / (secs / 2))
    out = p.communicate()[0]
    wall = time.monotonic() - t0
    if rcv:
        rcv.wait(timeout=10)
    if p.returncode:
        raise SystemExit(f'{cmd} exited {p.returncode}')
    writes = next(int(line) for line in out.splitlines() if line.strip().isdigit())  # bpftrace prints maps after
    return costs, writes / secs, wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--reps', type=int, default=5)
    ap.add_argument('--secs', type=float, default=2.0)
    ap.add_argument('--mode', default='send', choices=['send', 'pair'])
    ap.add_argument('--throughput', action='store_true')
    ap.add_argument('roots', nargs='*', default=[ROOT])
    a = ap.parse_args()
    sp.run(['gcc', '-O2', '-Wall', '-o', LOOP, os.path.join(HERE, 'hotloop.c')], check=True)
    roots = [r if r == 'bpftrace' else os.path.abspath(r) for r in a.roots] + ([None] if a.throughput else [])
    res = {r: {'costs': {}, 'rate': []} for r in roots}
    old = sp.run(['sysctl', '-n', 'kernel.bpf_stats_enabled'], check=True, stdout=sp.PIPE, text=True).stdout.strip()
    with lock():
        if not a.throughput:
            sp.run(['sysctl', '-qw', 'kernel.bpf_stats_enabled=1'], check=True)
        try:
            for _ in range(a.reps):
                for r in roots:
                    costs, rate, _ = one(r, a.mode, a.secs, not a.throughput)
                    for k, v in costs.items():
                        res[r]['costs'].setdefault(k, []).append(v)
                    res[r]['rate'].append(rate)
        finally:
            sp.run(['sysctl', '-qw', f'kernel.bpf_stats_enabled={old}'], check=True)
    base = statistics.median(res[None]['rate']) if a.throughput else None
    for r in roots:
        rate = res[r]['rate']
        line = f'{r or "untraced"}: writes/s median {statistics.median(rate):,.0f} ({min(rate):,.0f}-{max(rate):,.0f})'
        if base:
            line += f', ratio {statistics.median(rate) / base:.3f}'
        print(line)
        for k, v in sorted(res[r]['costs'].items()):
            ns = [x[0] for x in v]
            rate = statistics.median(x[1] for x in v)
            print(f'  {k:24} {statistics.median(ns):7.1f} ns/call  ({min(ns):.1f}-{max(ns):.1f}, n={len(ns)}), {rate:,.0f} calls/s')


if __name__ == '__main__':
    main()
