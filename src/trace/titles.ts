// SPDX-License-Identifier: MIT
// Process titles as ps shows them. A program may write its title over its arguments after it starts
// (nginx's "worker process", redis, postgres, sshd, Python's setproctitle), and a forked child starts with
// its parent's: so /proc/PID/cmdline is read again, once the batch that said so is handled, after a
// process is first seen (its fork: the child, and the parent, which often set its own title before
// forking workers), after it execs, at its first traffic (servers name themselves before serving), and
// for every process still running when the trace ends.
import { readArgv } from '../proc/procfs';
import type { TraceRecord } from '../kernel/records';
import type { ProcessTree } from '../model/tree';

/** Reads per batch at most (a fork storm's children are read at the end, if they still run). */
export const TITLE_READS_PER_BATCH = 256;

export class TitleReader {
  private readonly pending = new Set<number>();
  /** Processes whose first traffic was seen (a flow record): read once for it. */
  private readonly talked = new Set<number>();

  constructor(
    private readonly tree: ProcessTree,
    private readonly read: (pid: number) => string[] = readArgv,
  ) {}

  onRecord(record: TraceRecord): void {
    if (this.pending.size >= TITLE_READS_PER_BATCH) return;
    if (record.type === 'fork') {
      this.pending.add(record.tgid);
      this.pending.add(record.ppid);
    } else if (record.type === 'exec') {
      this.pending.add(record.tgid);
    } else if (record.type === 'flow' && !this.talked.has(record.tgid)) {
      this.talked.add(record.tgid);
      this.pending.add(record.tgid);
    }
  }

  afterBatch(): void {
    for (const pid of this.pending) this.refresh(pid);
    this.pending.clear();
  }

  /** At the end of the trace: the titles of the processes that still run. */
  refreshRunning(): void {
    for (const node of this.tree.list()) if (node.exitNs === null) this.refresh(node.pid);
  }

  private refresh(pid: number): void {
    const node = this.tree.get(pid);
    if (!node || node.exitNs !== null) return;
    const argv = this.read(pid); // [] once gone, or a zombie: keep what the records said
    if (argv.length > 0) node.argv = argv;
  }
}
