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
  readStatus,
  type ProcNetSocket,
} from '../proc/procfs';
import type { Report, Target } from '../schema/report';
import { assembleReport } from '../report/assemble';
import type { AttachFacts, PreexistingSocket } from '../report/attach';
import type { ProcessNode } from '../model/tree';
import { LINKTYPE_LINUX_SLL2 } from '../pcap/pcapng';
import type { LibpcapDevice } from './capture';
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
  pids: number[];
  cgroupDirs: string[];
  match: SessionOptions['match'];
}

function resolveTargets(options: AttachOptions, mount: string): ResolvedTargets {
  const targets: Target[] = [];
  const pids = new Set<number>();
  const cgroupDirs = new Set<string>();
  let match: SessionOptions['match'];
  for (const pid of options.pids) {
    if (pid === process.pid) throw new AttachError(`pid ${pid} is proctap itself`);
    const status = readStatus(pid);
    if (!status) throw new AttachError(`no process with pid ${pid}`);
    targets.push({ kind: 'pid', pid, comm: status.name, argv: readArgv(pid) });
    pids.add(pid);
  }
  if (options.comm !== undefined) {
    if (options.comm.length === 0 || options.comm.length > 15) throw new AttachError(`--comm must be 1 to 15 characters (a kernel comm), got '${options.comm}'`);
    targets.push({ kind: 'comm', comm: options.comm });
    for (const pid of pidsByComm(options.comm)) pids.add(pid);
    match = { ...match, comm: options.comm };
    cgroupDirs.add(mount); // a matching process may start in any cgroup
  }
  const container = options.container !== undefined ? containerTarget(options.container) : null;
  if (container) {
    targets.push(container.target);
    for (const pid of container.pids) pids.add(pid);
  }
  const cgroup = options.cgroup ?? container?.target.cgroup;
  if (cgroup !== undefined) {
    const dir = path.resolve(path.join(mount, path.posix.normalize(`/${cgroup}`)));
    if (!dir.startsWith(mount) || !fs.existsSync(path.join(dir, 'cgroup.procs'))) {
      throw new AttachError(`unknown cgroup '${cgroup}' (no ${path.join(dir, 'cgroup.procs')})`);
    }
    if (!container) targets.push({ kind: 'cgroup', path: cgroup });
    for (const line of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) if (line) pids.add(Number(line));
    match = { ...match, cgroupId: fs.statSync(dir, { bigint: true }).ino };
    cgroupDirs.add(dir);
  }
  // Socket and packet hooks go on the targets' own cgroups; attribution stays by socket owner.
  for (const pid of pids) {
    const cg = readCgroupPath(pid);
    if (cg !== null) cgroupDirs.add(path.join(mount, cg));
  }
  return { targets, pids: [...pids], cgroupDirs: outermost([...cgroupDirs]), match };
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
    const ownNetns = netnsInode('self');
    for (const pid of resolved.pids) {
      session.probes.addTraced(pid);
      const status = readStatus(pid);
      if (!status) {
        if (options.pids.includes(pid)) throw new AttachError(`pid ${pid} exited during setup`);
        continue;
      }
      const node = session.model.tree.addRoot(pid, status.ppid, status.name, readArgv(pid), null);
      const netns = netnsInode(pid);
      if (netns !== null && netns !== ownNetns) node.netns = netns;
      if (status.nspid.length > 1) node.nspid = status.nspid[status.nspid.length - 1];
      session.containers.resolve(node);
      for (const s of openSockets(pid)) preexisting.push({ ...s, pid });
    }
    /* TLS libraries: the targets' own, and for processes that start matching later the system's */
    for (const pid of resolved.pids) session.tls?.scanProcess(pid);
    if (waiting) session.tls?.hookSystemLibraries('/');
    const names = resolved.pids.length ? `pid ${resolved.pids.join(', ')}` : 'nothing yet';
    options.log(`proctap: attached to ${names}${waiting ? `; waiting for ${options.comm ?? options.cgroup ?? `container ${options.container}`} (Ctrl-C to stop)` : ''}`);

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
    const attach: AttachFacts = { targets: resolved.targets, preexisting, namespaces: namespacesNow(inputs.processes) };
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
