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
import type { ConnectionReport, Report, Target } from '../schema/report';
import { LINKTYPE_LINUX_SLL2 } from '../pcap/pcapng';
import { TraceEngine, monotonicNs, type EngineOptions, type LiveDevice } from './session';
import { containerTarget } from './containers';

export interface AttachOptions extends Omit<EngineOptions, 'followChildren' | 'countUnownedPackets' | 'match'> {
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
export function netnsCaptureDevices(pids: number[], log: (line: string) => void): LiveDevice[] {
  const ownNetns = netnsInode('self');
  const seen = new Map<number, LiveDevice>();
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
  match: EngineOptions['match'];
}

function resolveTargets(options: AttachOptions, mount: string): ResolvedTargets {
  const targets: Target[] = [];
  const pids = new Set<number>();
  const cgroupDirs = new Set<string>();
  let match: EngineOptions['match'];
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
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  return { promise, stop, dispose: () => signals.forEach((s) => process.off(s, onSignal)) };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface AttachResult {
  report: Report;
  /** An output (capture file, event stream) failed to write: the trace was stopped early. */
  outputError: Error | null;
}

export async function attachTraced(options: AttachOptions): Promise<AttachResult> {
  const mount = cgroup2Mount();
  const resolved = resolveTargets(options, mount);
  const waiting = options.comm !== undefined || options.cgroup !== undefined || options.container !== undefined;
  if (resolved.pids.length === 0 && !waiting) throw new AttachError('nothing to attach to');

  /* Load & verify, attach, start consuming: then add the targets so no event between is missed */
  const liveDevices = options.netnsCapture ? netnsCaptureDevices(resolved.pids, options.log) : [];
  const engine = new TraceEngine({
    ...options,
    capture: options.capture && options.netnsCapture ? { ...options.capture, live: true } : options.capture,
    followChildren: options.followChildren,
    countUnownedPackets: false,
    match: resolved.match,
  });
  for (const t of resolved.targets) if (t.kind === 'cgroup' || t.kind === 'container') engine.containers.setMatchedCgroup(t.kind === 'cgroup' ? t.path : t.cgroup);
  const stop = stopSignal(options.log);
  engine.onOutputError = () => stop.stop('an output failed');
  try {
    engine.attach(resolved.cgroupDirs);
    engine.start(resolved.cgroupDirs.length === 1 ? `cgroup ${resolved.cgroupDirs[0]}` : 'cgroups of the targets', liveDevices);
    const startedAt = new Date();
    const originNs = monotonicNs();
    const preexisting: Array<ProcNetSocket & { pid: number }> = [];
    const ownNetns = netnsInode('self');
    for (const pid of resolved.pids) {
      engine.tracer.addTraced(pid);
      const status = readStatus(pid);
      if (!status) {
        if (options.pids.includes(pid)) throw new AttachError(`pid ${pid} exited during setup`);
        continue;
      }
      const node = engine.collector.tree.addRoot(pid, status.ppid, status.name, readArgv(pid), null);
      const netns = netnsInode(pid);
      if (netns !== null && netns !== ownNetns) node.netns = netns;
      if (status.nspid.length > 1) node.nspid = status.nspid[status.nspid.length - 1];
      engine.containers.resolve(node);
      for (const s of openSockets(pid)) preexisting.push({ ...s, pid });
    }
    const names = resolved.pids.length ? `pid ${resolved.pids.join(', ')}` : 'nothing yet';
    options.log(`proctap: attached to ${names}${waiting ? `; waiting for ${options.comm ?? options.cgroup ?? `container ${options.container}`} (Ctrl-C to stop)` : ''}`);

    /* Trace until every target has exited, Ctrl-C, or --duration */
    const deadline = options.durationMs !== undefined ? Date.now() + options.durationMs : Infinity;
    let stopped = false;
    void stop.promise.then(() => (stopped = true));
    while (!stopped && Date.now() < deadline) {
      const everyoneGone = engine.collector.tree.list().every((p) => p.exitNs !== null || !isAlive(p.pid));
      if (everyoneGone && !waiting && engine.collector.tree.size > 0) break;
      await Promise.race([sleep(Math.min(100, Math.max(1, deadline - Date.now()))), stop.promise]);
    }
    const durationMs = (monotonicNs() - originNs) / 1e6;

    engine.onOutputError = () => {}; // the trace is over: a failing last write is only reported
    const report = await engine.finish({ mode: 'attach', command: [], exitCode: null, startedAt, originNs, durationMs });
    report.targets = resolved.targets;
    markPreexisting(report, preexisting);
    annotateNamespaces(report);
    return { report, outputError: engine.outputError };
  } finally {
    stop.dispose();
    await engine.close();
  }
}

/** Connections open before the attach: matched to traced flows by 5-tuple, or listed without traffic. */
export function markPreexisting(report: Report, sockets: Array<ProcNetSocket & { pid: number }>): void {
  const key = (proto: string, la: string, lp: number, ra: string, rp: number) => `${proto} ${la}:${lp} ${ra}:${rp}`;
  const rows = new Map<string, ConnectionReport>();
  for (const c of report.connections) rows.set(key(c.proto, c.localAddr, c.localPort, c.remoteAddr, c.remotePort), c);
  for (const s of sockets) {
    if (s.proto === 'tcp' && (s.state === 10 || s.remotePort === 0)) continue; // listeners
    const row = rows.get(key(s.proto, s.localAddr, s.localPort, s.remoteAddr, s.remotePort));
    if (row) {
      row.preexisting = true;
      continue;
    }
    report.connections.push({
      pid: s.pid,
      proto: s.proto,
      role: 'unknown',
      localAddr: s.localAddr,
      localPort: s.localPort,
      remoteAddr: s.remoteAddr,
      remotePort: s.remotePort,
      startOffsetMs: 0,
      durationMs: null,
      txBytes: 0,
      rxBytes: 0,
      txCalls: 0,
      rxCalls: 0,
      outcome: 'open',
      error: null,
      preexisting: true,
    });
  }
}

/** Container view for processes that appeared after the attach and still run: namespace pid and netns. */
export function annotateNamespaces(report: Report): void {
  const ownNetns = netnsInode('self');
  for (const p of report.processes) {
    if (p.startOffsetMs === null || p.exitOffsetMs !== null) continue; // targets: read at attach; gone: inherited
    const status = readStatus(p.pid);
    const netns = netnsInode(p.pid);
    if (status && status.nspid.length > 1) p.nspid = status.nspid[status.nspid.length - 1];
    if (netns !== null && netns !== ownNetns) p.netns = netns;
  }
}
