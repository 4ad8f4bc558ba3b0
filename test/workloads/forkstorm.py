#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A fork storm for the proc connector overflow test: `forkstorm.py N HOLD_S`.

Forks N children as fast as it can (each also forks a grandchild, so the tree has depth), keeps every
one of them alive for HOLD_S seconds, prints {"alive": [pids]} (the processes alive at that moment,
from /proc), then lets them exit and reaps them. No child sends anything: only process events can put
them in proctap's tree.
"""
import json
import os
import sys
import time


def main():
    n, hold = int(sys.argv[1]), float(sys.argv[2])
    gate_r, gate_w = os.pipe()
    kids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(gate_w)
            grandchild = os.fork()
            os.read(gate_r, 1)  # returns at EOF: when the parent closes its end
            if grandchild:
                os.waitpid(grandchild, 0)
            os._exit(0)
        kids.append(pid)
    os.close(gate_r)
    time.sleep(hold)
    alive = []
    for kid in kids:
        alive.append(kid)
        children = f"/proc/{kid}/task/{kid}/children"
        if os.path.exists(children):
            alive.extend(int(p) for p in open(children).read().split())
    print(json.dumps({"alive": sorted(alive)}), flush=True)
    os.close(gate_w)
    for kid in kids:
        os.waitpid(kid, 0)


if __name__ == "__main__":
    main()
