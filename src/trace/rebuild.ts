// SPDX-License-Identifier: MIT
// When the proc connector overflows (ENOBUFS), fork/exit events are gone: every process that is alive and
// traced now (run: the cgroup's cgroup.procs; attach: the kernel's traced set) goes into the process tree
// if it is not there yet, read from /proc; exits still come from the kernel's records.
import { readArgv, readStatus } from '../proc/procfs';
import type { TraceModel } from '../model/model';

/** Where the processes that should be in the tree now are found. */
export interface TracedNow {
  /** For the warning: "the command's cgroup.procs", "the kernel's traced set". */
  source: string;
  pids: () => number[];
}

export const monotonicNs = (): number => Number(process.hrtime.bigint());

export class TreeRebuilder {
  private lastWarningMs = -Infinity;

  constructor(
    private readonly model: TraceModel,
    private readonly tracedNow: TracedNow,
    private readonly log: (line: string) => void,
  ) {}

  /** Adds what is missing; warns at most once a second. */
  rebuild(): void {
    const alive: Array<{ pid: number; ppid: number; comm: string; argv: string[] }> = [];
    for (const pid of this.tracedNow.pids()) {
      const status = readStatus(pid);
      if (status) alive.push({ pid, ppid: status.ppid, comm: status.name, argv: readArgv(pid) });
    }
    const added = this.model.tree.rebuild(alive, monotonicNs());
    const now = Date.now();
    if (now - this.lastWarningMs < 1000) return;
    this.lastWarningMs = now;
    this.log(
      `proctap: warning: proc connector overflow (ENOBUFS, ${this.model.connectorOverflows} so far): process events were lost; ` +
        `process tree rebuilt from ${this.tracedNow.source} and /proc (${added.length} added)`,
    );
  }
}
