// SPDX-License-Identifier: MIT
// `proctap attach`: trace running processes (by pid, comm or cgroup) and their future children, until
// every target has exited, Ctrl-C, or --duration. Targets are never signalled: only observed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2Mount } from '../proc/cgroup';
import {
  isAlive,
  netnsInode,
  openSockets,
  pidsByComm,
  readArgv,
  readCgroupPath,
  readChildren,
  readDescendants,
  readStatus,
} from '../proc/procfs';
import type { AttachedProcess, Report, Target } from '../schema/report';
import { assembleReport } from '../report/assemble';
import type { AttachFacts, PreexistingSocket } from '../report/attach';
import type { ProcessNode } from '../model/tree';
import { LINKTYPE_LINUX_SLL2 } from '../pcap/pcapng';
import type { LibpcapDevice } from './capture';
import { ListenerRegistry } from './listeners';
import { TraceSession, finishProgress, monotonicNs, type FinishProgress, type SessionOptions } from './session';
import { onStopSignals, sleep } from './signals';
import { containerTarget } from './containers';

export interface AttachOptions extends Omit<SessionOptions, 'followChildren' | 'countUnownedPackets' | 'match' | 'tracedNow'> {
  pids: number[];
  comm?: string;
  /** cgroup v2 path relative to the mount, e.g. /system.slice/redis.service */
  cgroup?: string;
  /** A container by id (or a unique prefix) or name: its cgroup, as --cgroup (trace/containers.ts). */
  container?: string;
  durationMs?: number;
  followChildren: boolean;
  /** --netns-capture: capture every interface of the targets' network namespaces with libpcap. */
  netnsCapture?: boolean;
}

/**
 * attach --netns-capture: libpcap's "any" device inside each distinct network namespace of the targets
 * (entered by the capture thread only, as nsenter would), so the file holds everything the container
 * sees on its interfaces, also packets no socket owns (ARP, ICMP).
 */
export function netnsCaptureDevices(pids: number[], log: (line: string) => void): LibpcapDevice[] {
  const ownNetns = netnsInode('self');
  const seen = new Map<number, LibpcapDevice>();
  for (const pid of pids) {
    const inode = netnsInode(pid);
    if (inode === null || seen.has(inode)) continue;
    if (inode === ownNetns) log(`proctap: pid ${pid} shares proctap's network namespace: --netns-capture captures every interface of this host`);
    seen.set(inode, { device: 'any', linkType: LINKTYPE_LINUX_SLL2, netnsPath: `/proc/${pid}/ns/net`, name: `any (netns ${inode})`, description: `every interface of the network namespace of pid ${pid}` });
  }
  if (seen.size === 0) throw new AttachError('--netns-capture needs a running target (a pid, or a --comm/--cgroup that matches now)');
  return [...seen.values()];
}

export class AttachError extends Error {}

interface ResolvedTargets {
  targets: Target[];
  /** What is taken now, parents before children: the targets, then (following children) their subtrees. */
  taken: Array<{ pid: number; via: AttachedProcess['via'] }>;
  pids: number[];
  cgroupDirs: string[];
  match: SessionOptions['match'];
  /** --no-children: listed pids whose children now are left out. */
  childrenLeftOut: Array<{ pid: number; children: number[] }>;
}

/** proctap and the processes it runs under (sudo, the shell): never traced, even below a target. */
function selfAndAncestors(): Set<number> {
  const chain = new Set<number>([process.pid]);
  for (let pid = process.ppid; pid > 1 && !chain.has(pid); pid = readStatus(pid)?.ppid ?? 0) chain.add(pid);
  return chain;
}

function resolveTargets(options: AttachOptions, mount: string): ResolvedTargets {
  const targets: Target[] = [];
  const pids = new Map<number, AttachedProcess['via']>();
  const take = (pid: number, via: AttachedProcess['via']) => void (pids.has(pid) || pids.set(pid, via));
  const cgroupDirs = new Set<string>();
  let match: SessionOptions['match'];
  for (const pid of options.pids) {
    if (pid === process.pid) throw new AttachError(`pid ${pid} is proctap itself`);
    const status = readStatus(pid);
    if (!status) throw new AttachError(`no process with pid ${pid}`);
    targets.push({ kind: 'pid', pid, comm: status.name, argv: readArgv(pid) });
    take(pid, 'pid');
  }
  if (options.comm !== undefined) {
    if (options.comm.length === 0 || options.comm.length > 15) throw new AttachError(`--comm must be 1 to 15 characters (a kernel comm), got '${options.comm}'`);
    targets.push({ kind: 'comm', comm: options.comm });
    for (const pid of pidsByComm(options.comm)) take(pid, 'comm');
    match = { ...match, comm: options.comm };
    cgroupDirs.add(mount); // a matching process may start in any cgroup
  }
  const container = options.container !== undefined ? containerTarget(options.container) : null;
  if (container) {
    targets.push(container.target);
    for (const pid of container.pids) take(pid, 'container');
  }
  const cgroup = options.cgroup ?? container?.target.cgroup;
  if (cgroup !== undefined) {
    const dir = path.resolve(path.join(mount, path.posix.normalize(`/${cgroup}`)));
    if (!dir.startsWith(mount) || !fs.existsSync(path.join(dir, 'cgroup.procs'))) {
      throw new AttachError(`unknown cgroup '${cgroup}' (no ${path.join(dir, 'cgroup.procs')})`);
    }
    if (!container) targets.push({ kind: 'cgroup', path: cgroup });
    for (const line of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line) take(Number(line), container ? 'container' : 'cgroup');
    match = { ...match, cgroupId: fs.statSync(dir, { bigint: true }).ino };
    cgroupDirs.add(dir);
  }
  const childrenLeftOut: ResolvedTargets['childrenLeftOut'] = [];
  if (options.followChildren) {
    // The subtree that runs now (nginx's workers, a shell's jobs), as the kernel follows later forks.
    for (const d of readDescendants([...pids.keys()], selfAndAncestors())) take(d.pid, 'descendant');
  } else {
    for (const pid of options.pids) {
      const children = readChildren(pid) ?? [];
      if (children.length > 0) childrenLeftOut.push({ pid, children });
    }
  }
  // Socket and packet hooks go on the targets' own cgroups; attribution stays by socket owner.
  for (const pid of pids.keys()) {
    const cg = readCgroupPath(pid);
    if (cg !== null) cgroupDirs.add(path.join(mount, cg));
  }
  const taken = [...pids].map(([pid, via]) => ({ pid, via }));
  return { targets, taken, pids: [...pids.keys()], cgroupDirs: outermost([...cgroupDirs]), match, childrenLeftOut };
}

/** Hooks on a cgroup run for its descendants too: hooking both would count their packets twice. */
export function outermost(dirs: string[]): string[] {
  const unique = [...new Set(dirs.map((d) => path.resolve(d)))];
  return unique.filter((d) => !unique.some((other) => other !== d && d.startsWith(`${other}/`)));
}

/** Stops on Ctrl-C/SIGTERM/SIGHUP without touching the targets. */
function stopSignal(log: (line: string) => void): { promise: Promise<void>; stop: (why: string) => void; dispose: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((r) => (resolve = r));
  const stop = (why: string) => {
    log(`proctap: ${why}: detaching`);
    resolve();
  };
  return { promise, stop, dispose: onStopSignals(stop) };
}

export interface AttachResult {
  report: Report;
  /** An output (capture file, event stream) failed to write: the trace was stopped early. */
  outputError: Error | null;
  /** Finishing's progress line: the caller steps it through writing the outputs. */
  progress: FinishProgress;
}

export async function attachTraced(options: AttachOptions): Promise<AttachResult> {
  const mount = cgroup2Mount();
  const resolved = resolveTargets(options, mount);
  const waiting = options.comm !== undefined || options.cgroup !== undefined || options.container !== undefined;
  if (resolved.pids.length === 0 && !waiting) throw new AttachError('nothing to attach to');

  /* Load & verify, attach, start consuming: then add the targets so no event between is missed */
  const libpcapDevices = options.netnsCapture ? netnsCaptureDevices(resolved.pids, options.log) : [];
  const session = new TraceSession({
    ...options,
    // sockets opened before the attach are decoded as seen mid-stream (model/l7.ts)
    l7: options.l7 ? { ...options.l7, fromStart: false } : undefined,
    followChildren: options.followChildren,
    countUnownedPackets: false,
    match: resolved.match,
  });
  for (const t of resolved.targets) if (t.kind === 'cgroup' || t.kind === 'container') session.containers.setMatchedCgroup(t.kind === 'cgroup' ? t.path : t.cgroup);
  const stop = stopSignal(options.log);
  session.outputs.onFailure = () => stop.stop('an output failed');
  try {
    session.attach(resolved.cgroupDirs);
    session.start(resolved.cgroupDirs.length === 1 ? `cgroup ${resolved.cgroupDirs[0]}` : 'cgroups of the targets', libpcapDevices);
    const startedAt = new Date();
    const originNs = monotonicNs();
    session.model.setOrigin(originNs);
    const preexisting: PreexistingSocket[] = [];
    const attached: AttachedProcess[] = [];
    const listeners = new ListenerRegistry(session.probes, session.model.connections);
    const ownNetns = netnsInode('self');
    const takeNow = (pid: number, via: AttachedProcess['via']) => {
      session.probes.addTraced(pid);
      const status = readStatus(pid);
      if (!status) {
        session.probes.removeTraced(pid);
        if (via === 'pid') throw new AttachError(`pid ${pid} exited during setup`);
        return;
      }
      const node = session.model.tree.addRoot(pid, status.ppid, status.name, readArgv(pid), null);
      const netns = netnsInode(pid);
      if (netns !== null && netns !== ownNetns) node.netns = netns;
      if (status.nspid.length > 1) node.nspid = status.nspid[status.nspid.length - 1];
      session.containers.resolve(node);
      const sockets = openSockets(pid);
      for (const s of sockets) preexisting.push({ ...s, pid });
      listeners.register(pid, netns, sockets);
      attached.push({ pid, ppid: status.ppid, comm: status.name, via });
    };
    for (const { pid, via } of resolved.taken) takeNow(pid, via);
    if (options.followChildren) {
      // Forked between the /proc scan and its parent joining the traced set: neither saw it.
      const kernelFollows = new Set(session.probes.tracedPids());
      for (const d of readDescendants(resolved.pids, selfAndAncestors())) if (!kernelFollows.has(d.pid)) takeNow(d.pid, 'descendant');
    }
    /* TLS libraries: the targets' own, and for processes that start matching later the system's */
    for (const a of attached) session.tls?.scanProcess(a.pid);
    if (waiting) session.tls?.hookSystemLibraries('/');
    options.log(`proctap: attached to ${attachedSummary(attached)}${waiting ? `; waiting for ${options.comm ?? options.cgroup ?? `container ${options.container}`} (Ctrl-C to stop)` : ''}`);

    /* Trace until every target has exited, Ctrl-C, or --duration */
    const deadline = options.durationMs !== undefined ? Date.now() + options.durationMs : Infinity;
    let stopped = false;
    void stop.promise.then(() => (stopped = true));
    while (!stopped && Date.now() < deadline) {
      const everyoneGone = session.model.tree.list().every((p) => p.exitNs !== null || !isAlive(p.pid));
      if (everyoneGone && !waiting && session.model.tree.size > 0) break;
      await Promise.race([sleep(Math.min(100, Math.max(1, deadline - Date.now()))), stop.promise]);
    }
    const durationMs = (monotonicNs() - originNs) / 1e6;

    session.outputs.onFailure = () => {}; // the trace is over: a failing last write is only reported
    const progress = finishProgress(options.log);
    const inputs = await session.finish({ mode: 'attach', command: [], exitCode: null, startedAt, originNs, durationMs }, progress);
    const attach: AttachFacts = { targets: resolved.targets, attached, childrenLeftOut: resolved.childrenLeftOut, preexisting, namespaces: namespacesNow(inputs.processes) };
    return { report: assembleReport({ ...inputs, attach }), outputError: session.outputs.error, progress };
  } finally {
    stop.dispose();
    await session.close();
  }
}

/** The container view of processes that appeared after the attach and still run: namespace pid and
 *  netns, where not proctap's (targets were read at the attach; the gone keep what they inherited). */
function namespacesNow(processes: ProcessNode[]): AttachFacts['namespaces'] {
  const ownNetns = netnsInode('self');
  const namespaces: AttachFacts['namespaces'] = new Map();
  for (const p of processes) {
    if (p.startNs === null || p.exitNs !== null) continue;
    const status = readStatus(p.pid);
    const netns = netnsInode(p.pid);
    const ns: { nspid?: number; netns?: number } = {};
    if (status && status.nspid.length > 1) ns.nspid = status.nspid[status.nspid.length - 1];
    if (netns !== null && netns !== ownNetns) ns.netns = netns;
    namespaces.set(p.pid, ns);
  }
  return namespaces;
}

/** "pid 42 and 2 descendants (43, 44)": the attach line of the log. */
function attachedSummary(attached: AttachedProcess[]): string {
  if (attached.length === 0) return 'nothing yet';
  const listed = attached.filter((a) => a.via !== 'descendant').map((a) => a.pid);
  const below = attached.filter((a) => a.via === 'descendant').map((a) => a.pid);
  const shown = below.length <= 8 ? below.join(', ') : `${below.slice(0, 8).join(', ')}, …`;
  return `pid ${listed.join(', ')}${below.length ? ` and ${below.length} descendant${below.length === 1 ? '' : 's'} (${shown})` : ''}`;
}
