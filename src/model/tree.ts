// SPDX-License-Identifier: MIT
// The traced process tree, built from in-kernel fork/exec/exit records and the proc connector.
// Pure data: no /proc reads, no clocks. Times are CLOCK_MONOTONIC nanoseconds.
// A process is a pid plus its task start time: a pid reused within one trace is another node.
import type { ContainerReport } from '../schema/report';

export interface ProcessNode {
  pid: number;
  /** Kernel task start time (CLOCK_MONOTONIC ns): with pid, the process's identity; null until known. */
  startTime: bigint | null;
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
  /** Its container (trace/containers.ts): null when it runs in none, undefined until looked up. */
  container?: ContainerReport | null;
  /** Where the process became known: a traced root, a kernel fork record, or only the proc connector. */
  source: 'root' | 'kernel' | 'connector' | 'flow' | 'rebuild';
}

/** "pid/startTime": a map key for one process instance (start time 0 when unknown). */
export function processId(pid: number, startTime: bigint | null): string {
  return `${pid}/${startTime ?? 0n}`;
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

/** Folded-away instances whose exit times are remembered (ProcessTree.departed). */
export const DEPARTED_KEPT = 4096;

export class ProcessTree {
  /** Every instance, in order of discovery. */
  private readonly nodes: ProcessNode[] = [];
  /** The latest instance of each pid: the one a record without a start time is about. */
  private readonly current = new Map<number, ProcessNode>();
  private readonly byId = new Map<string, ProcessNode>();
  /** Every instance of each pid, in order of discovery. */
  private readonly byPid = new Map<number, ProcessNode[]>();
  /** Exit times of instances folded out of the tree (newest DEPARTED_KEPT): a proc connector event
   *  that runs behind the ring buffer must not bring a folded process back as a new one. */
  private readonly departed = new Map<number, number>();

  get size(): number {
    return this.nodes.length;
  }

  /** A live (not exited) instance of pid is known. */
  has(pid: number): boolean {
    const node = this.current.get(pid);
    return node !== undefined && node.exitNs === null;
  }

  /**
   * The instance of pid with this start time; without one (0n/null: the record did not say), the latest
   * instance. A known instance whose start time was not known yet (attach target, proc connector child)
   * takes the first start time seen for it, unless it had exited before that process started.
   */
  get(pid: number, startTime: bigint | null = null): ProcessNode | undefined {
    if (!startTime) return this.current.get(pid);
    const exact = this.byId.get(processId(pid, startTime));
    if (exact) return exact;
    const match = this.unboundMatch(pid, startTime, true);
    if (match) this.bind(match, startTime);
    return match;
  }

  /**
   * The node without a start time that is the process started at `startTime`: alive then (not exited
   * before it), and of those the one first seen nearest to it. The proc connector runs ahead of the ring
   * buffer, so several such nodes of one pid can wait for their kernel records; its fork stamp follows
   * the kernel's start time by microseconds.
   */
  private unboundMatch(pid: number, startTime: bigint, includeRoots: boolean): ProcessNode | undefined {
    const start = Number(startTime);
    let best: ProcessNode | undefined;
    let bestDistance = Infinity;
    for (const node of this.byPid.get(pid) ?? []) {
      if (node.startTime !== null || (node.exitNs !== null && node.exitNs < start)) continue;
      if (!includeRoots && (node.source === 'root' || node.source === 'kernel')) continue;
      const distance = node.startNs === null ? 0 : Math.abs(node.startNs - start);
      if (distance < bestDistance) {
        best = node;
        bestDistance = distance;
      }
    }
    return best;
  }

  list(): ProcessNode[] {
    return [...this.nodes];
  }

  /** An exited process folded into an aggregate (model/folds.ts) leaves the tree. */
  remove(node: ProcessNode): void {
    if (node.exitNs !== null) {
      this.departed.delete(node.pid);
      this.departed.set(node.pid, node.exitNs);
      if (this.departed.size > DEPARTED_KEPT) this.departed.delete(this.departed.keys().next().value!);
    }
    const at = this.nodes.indexOf(node);
    if (at >= 0) this.nodes.splice(at, 1);
    if (node.startTime !== null) this.byId.delete(processId(node.pid, node.startTime));
    const rest = (this.byPid.get(node.pid) ?? []).filter((n) => n !== node);
    if (rest.length) this.byPid.set(node.pid, rest);
    else this.byPid.delete(node.pid);
    if (this.current.get(node.pid) === node) {
      if (rest.length) this.current.set(node.pid, rest[rest.length - 1]);
      else this.current.delete(node.pid);
    }
  }

  private bind(node: ProcessNode, startTime: bigint): void {
    node.startTime = startTime;
    this.byId.set(processId(node.pid, startTime), node);
  }

  private add(node: ProcessNode): ProcessNode {
    this.nodes.push(node);
    this.byPid.set(node.pid, [...(this.byPid.get(node.pid) ?? []), node]);
    const latest = this.current.get(node.pid);
    const newer = !latest || latest.startTime === null || node.startTime === null || node.startTime >= latest.startTime;
    if (newer) this.current.set(node.pid, node);
    if (node.startTime !== null) this.byId.set(processId(node.pid, node.startTime), node);
    return node;
  }

  /** A process traced because it was asked for (launched command, attach target). */
  addRoot(pid: number, ppid: number, comm: string, argv: string[], startNs: number | null, startTime: bigint | null = null): ProcessNode {
    return this.add({ pid, startTime, ppid, comm, argv, startNs, exitNs: null, waitStatus: null, exitSource: null, source: 'root' });
  }

  /** A child: it starts with its parent's program and arguments until it execs. */
  onFork(pid: number, ppid: number, comm: string, tsNs: number, source: 'kernel' | 'connector' = 'kernel', startTime: bigint | null = null): void {
    const latest = this.current.get(pid);
    if (source === 'connector') {
      // No start time: a live instance (or one that exited after this event) is this process or newer.
      if (latest && (latest.exitNs === null || latest.exitNs >= tsNs)) return;
      // ... or one already folded away, when this event comes after its kernel exit record.
      const gone = this.departed.get(pid);
      if (!latest && gone !== undefined && gone >= tsNs) return;
    } else if (startTime) {
      const exact = this.byId.get(processId(pid, startTime));
      if (exact) {
        if (exact.source !== 'root' && exact.source !== 'kernel') this.adopt(exact, ppid, comm, tsNs);
        return;
      }
      // The proc connector often reports a fork before the ring buffer does: the kernel record wins.
      const early = this.unboundMatch(pid, startTime, false);
      if (early) {
        this.adopt(early, ppid, comm, tsNs);
        this.bind(early, startTime);
        return;
      }
    } else if (latest && latest.exitNs === null) {
      if (latest.source !== 'root' && latest.source !== 'kernel') this.adopt(latest, ppid, comm, tsNs);
      return;
    }
    // The parent runs while it forks: its latest instance is the one.
    const parent = this.current.get(ppid);
    this.add({
      netns: parent?.netns,
      pid,
      startTime: startTime || null,
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

  /** A node the proc connector (or a rebuild, or traffic) made, now known from its kernel fork record. */
  private adopt(node: ProcessNode, ppid: number, comm: string, tsNs: number): void {
    node.ppid = ppid;
    node.source = 'kernel';
    node.startNs = tsNs;
    if (comm) node.comm = comm;
    const parent = this.current.get(ppid);
    if (parent && node.argv.length === 0) node.argv = [...parent.argv];
  }

  onExec(pid: number, comm: string, argv: string[], startTime: bigint | null = null): void {
    const node = this.get(pid, startTime);
    if (!node) return;
    node.comm = comm;
    if (argv.length > 0) node.argv = argv;
  }

  /** Kernel exit records are authoritative; the proc connector only fills in what they missed. */
  onExit(pid: number, tsNs: number, waitStatus: number | null, source: 'kernel' | 'connector' = 'kernel', startTime: bigint | null = null): void {
    const node = this.get(pid, startTime);
    if (!node) return;
    if (node.exitSource === 'kernel') return;
    if (source === 'connector') {
      if (node.exitSource === 'connector') return;
      // An exit from before this instance started belongs to an earlier process with the pid.
      const started = node.startTime !== null ? Number(node.startTime) : node.startNs;
      if (started !== null && started > tsNs) return;
    }
    node.exitNs = tsNs;
    node.waitStatus = waitStatus;
    node.exitSource = source;
  }

  /** A pid seen only through its traffic (its fork record was lost): keep its bytes visible. */
  ensure(pid: number, startTime: bigint | null = null): ProcessNode {
    return (
      this.get(pid, startTime) ??
      this.add({ pid, startTime: startTime || null, ppid: 0, comm: '?', argv: [], startNs: null, exitNs: null, waitStatus: null, exitSource: null, source: 'flow' })
    );
  }

  /**
   * After lost process events (proc connector overflow): a process found alive in the traced cgroup or
   * under /proc that the tree does not know as alive is added. Returns the pids it added.
   */
  rebuild(alive: Array<{ pid: number; ppid: number; comm: string; argv: string[] }>, tsNs: number): number[] {
    const added: number[] = [];
    for (const p of alive) {
      if (this.has(p.pid)) continue;
      const parent = this.current.get(p.ppid);
      this.add({
        netns: parent?.netns,
        pid: p.pid,
        startTime: null,
        ppid: p.ppid,
        comm: p.comm || '?',
        argv: p.argv,
        startNs: tsNs,
        exitNs: null,
        waitStatus: null,
        exitSource: null,
        source: 'rebuild',
      });
      added.push(p.pid);
    }
    return added;
  }
}
