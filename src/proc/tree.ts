// SPDX-License-Identifier: MIT
// The traced process tree, built from in-kernel fork/exec/exit records and the proc connector.
// Pure data: no /proc reads, no clocks. Times are CLOCK_MONOTONIC nanoseconds.

export interface ProcessNode {
  pid: number;
  ppid: number;
  comm: string;
  argv: string[];
  /** null when the process existed before the trace began (attach). */
  startNs: number | null;
  exitNs: number | null;
  /** Raw wait status ((code << 8) | signal) once known. */
  waitStatus: number | null;
  exitSource: 'kernel' | 'connector' | null;
  /** Network namespace inode and namespace pid, where they differ from proctap's own (containers). */
  netns?: number;
  nspid?: number;
  /** Where the process became known: a traced root, a kernel fork record, or only the proc connector. */
  source: 'root' | 'kernel' | 'connector' | 'flow';
}

export interface ExitStatus {
  exitCode: number | null;
  exitSignal: number | null;
}

/** Shell convention: code for a normal exit, 128+N for death by signal N. */
export function decodeWaitStatus(status: number | null): ExitStatus {
  if (status === null) return { exitCode: null, exitSignal: null };
  const signal = status & 0x7f;
  if (signal === 0) return { exitCode: (status >> 8) & 0xff, exitSignal: null };
  return { exitCode: 128 + signal, exitSignal: signal };
}

export class ProcessTree {
  private readonly nodes = new Map<number, ProcessNode>();

  get size(): number {
    return this.nodes.size;
  }

  has(pid: number): boolean {
    return this.nodes.has(pid);
  }

  get(pid: number): ProcessNode | undefined {
    return this.nodes.get(pid);
  }

  list(): ProcessNode[] {
    return [...this.nodes.values()];
  }

  /** A process traced because it was asked for (launched command, attach target). */
  addRoot(pid: number, ppid: number, comm: string, argv: string[], startNs: number | null): ProcessNode {
    const node: ProcessNode = { pid, ppid, comm, argv, startNs, exitNs: null, waitStatus: null, exitSource: null, source: 'root' };
    this.nodes.set(pid, node);
    return node;
  }

  /** A child: it starts with its parent's program and arguments until it execs. */
  onFork(pid: number, ppid: number, comm: string, tsNs: number, source: 'kernel' | 'connector' = 'kernel'): void {
    const existing = this.nodes.get(pid);
    if (existing) {
      // The proc connector often reports a fork before the ring buffer does: the kernel record wins.
      if (source === 'kernel' && (existing.source === 'connector' || existing.source === 'flow')) {
        existing.ppid = ppid;
        existing.source = source;
        existing.startNs = tsNs;
        if (comm) existing.comm = comm;
        const parent = this.nodes.get(ppid);
        if (parent && existing.argv.length === 0) existing.argv = [...parent.argv];
      }
      return;
    }
    const parent = this.nodes.get(ppid);
    this.nodes.set(pid, {
      netns: parent?.netns,
      pid,
      ppid,
      comm: comm || parent?.comm || '?',
      argv: parent ? [...parent.argv] : [],
      startNs: tsNs,
      exitNs: null,
      waitStatus: null,
      exitSource: null,
      source,
    });
  }

  onExec(pid: number, comm: string, argv: string[]): void {
    const node = this.nodes.get(pid);
    if (!node) return;
    node.comm = comm;
    if (argv.length > 0) node.argv = argv;
  }

  /** Kernel exit records are authoritative; the proc connector only fills in what they missed. */
  onExit(pid: number, tsNs: number, waitStatus: number | null, source: 'kernel' | 'connector' = 'kernel'): void {
    const node = this.nodes.get(pid);
    if (!node) return;
    if (node.exitSource === 'kernel') return;
    if (source === 'connector' && node.exitSource === 'connector') return;
    node.exitNs = tsNs;
    node.waitStatus = waitStatus;
    node.exitSource = source;
  }

  /** A pid seen only through its traffic (its fork record was lost): keep its bytes visible. */
  ensure(pid: number): ProcessNode {
    let node = this.nodes.get(pid);
    if (!node) {
      node = { pid, ppid: 0, comm: '?', argv: [], startNs: null, exitNs: null, waitStatus: null, exitSource: null, source: 'flow' };
      this.nodes.set(pid, node);
    }
    return node;
  }
}
