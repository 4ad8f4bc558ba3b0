// SPDX-License-Identifier: MIT
// `proctap run`: create the cgroup, load and attach every hook, launch the command behind the gate,
// trace until the whole tree has exited, read the kernel's final counters, detach, remove the cgroup,
// build the report. Teardown runs on every path.
import * as path from 'node:path';
import {
  cgroup2Mount,
  cgroupPids,
  createCgroup,
  isPopulated,
  killCgroup,
  ownedCgroupName,
  removeCgroup,
  removeStaleCgroups,
  signalCgroup,
} from '../proc/cgroup';
import { commandEnvironment, launchGated, startReaper, type LaunchedCommand, type Reaper } from '../proc/launch';
import { commandExecutable } from '../tls/hooks';
import { createKeyLogChannel, removeStaleKeyLogs, type KeyLogChannel } from '../tls/keylog';
import { keyLogEnvironment } from '../tls/keylog-lines';
import type { IsolationReport, Report } from '../report/schema';
import { loadNative, type ConntrackEntry } from '../native';
import { mapConnections } from '../isolate/natmap';
import { onFatal } from '../util/teardown';
import { hasStaleIsolation, removeStaleIsolation, setupIsolation, type Isolation } from '../isolate/system';
import { TraceEngine, captureInterfaceName, monotonicNs, type EngineOptions } from './engine';

export const LAUNCHER = path.resolve(__dirname, '../../../build/proctap-launch');

export interface RunOptions extends Omit<EngineOptions, 'followChildren' | 'countUnownedPackets' | 'match'> {
  argv: string[];
  /** The command's credentials; null keeps root. */
  credentials: { uid: number; gid: number } | null;
  /** --isolate: run the command in a network namespace of its own, behind a veth pair and NAT. */
  isolate?: { device?: string; forwarding: boolean; publicDns: boolean };
  /** With a pcapng capture: hand the command a TLS key log channel (SSLKEYLOGFILE) and write what it logs
   *  into the capture (default on). */
  tlsKeyLog?: boolean;
}

/**
 * The source address and port each connection of the namespace had on the host after masquerade, from
 * the host's conntrack table (read over ctnetlink before the namespace is torn down).
 */
export function addNatMappings(report: Report, iso: Isolation): void {
  const own = new Set([iso.v4.nsAddr, ...(iso.v6 ? [iso.v6.nsAddr] : [])]);
  const rows = report.connections.filter((c) => own.has(c.localAddr) && c.localPort > 0 && c.remoteAddr !== '*');
  if (rows.length === 0 || iso.device === null) return;
  let entries: ConntrackEntry[];
  try {
    const native = loadNative();
    entries = [...native.conntrackDump({ family: 'ipv4' }), ...(iso.v6 ? native.conntrackDump({ family: 'ipv6' }) : [])];
  } catch (err) {
    report.notes.push(`NAT mapping not shown: conntrack could not be read (${(err as Error).message}).`);
    return;
  }
  const mapped = mapConnections(
    entries,
    rows.map((c) => ({ protocol: c.proto, src: c.localAddr, srcPort: c.localPort, dst: c.remoteAddr, dstPort: c.remotePort })),
  );
  let missing = 0;
  rows.forEach((c, i) => {
    const m = mapped[i];
    if (m === undefined) missing++;
    else if (m.sourceTranslated) c.nat = { addr: m.translatedSrc, port: m.translatedSrcPort };
  });
  if (missing > 0) report.notes.push(`NAT mapping: conntrack had no entry for ${missing} connection${missing === 1 ? '' : 's'} (expired before the end of the run).`);
}

export function isolationReport(iso: Isolation): IsolationReport {
  return {
    netns: iso.names.netns,
    hostInterface: iso.names.hostIf,
    namespaceInterface: iso.names.nsIf,
    subnet: iso.v4.cidr,
    gateway: iso.v4.hostAddr,
    address: iso.v4.nsAddr,
    ...(iso.v6 ? { ipv6: { subnet: iso.v6.cidr, gateway: iso.v6.hostAddr, address: iso.v6.nsAddr } } : {}),
    device: iso.device,
    nat: iso.nat,
    ipForward: iso.forwarding,
    dns: iso.dns,
  };
}

export interface RunResult {
  report: Report;
  exitCode: number;
  /** An output (capture file, event stream) failed to write: the trace was stopped early. */
  outputError: Error | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Signals (and a failed output) stop the trace the way a user expects: first SIGTERM to the tree, then
 *  SIGKILL. */
function installStopHandlers(cgroupDir: string, log: (line: string) => void): { stop: (why: string) => void; dispose: () => void } {
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;
  const stop = (why: string) => {
    if (stopping) {
      killCgroup(cgroupDir);
      return;
    }
    stopping = true;
    log(`proctap: ${why}: stopping the traced command (SIGTERM, SIGKILL in 3 s)`);
    signalCgroup(cgroupDir, 'SIGTERM');
    killTimer = setTimeout(() => killCgroup(cgroupDir), 3000);
  };
  const onSignal = (signal: NodeJS.Signals) => stop(signal);
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  return {
    stop,
    dispose: () => {
      for (const s of signals) process.off(s, onSignal);
      if (killTimer) clearTimeout(killTimer);
    },
  };
}

async function waitUntilEmpty(cgroupDir: string): Promise<void> {
  let delay = 2;
  while (isPopulated(cgroupDir)) {
    await sleep(delay);
    delay = Math.min(delay * 2, 50);
  }
}

export async function runTraced(options: RunOptions): Promise<RunResult> {
  const mount = cgroup2Mount();
  for (const dir of await removeStaleCgroups(mount)) options.log(`proctap: removed leftover cgroup ${dir}`);
  if (hasStaleIsolation()) for (const what of removeStaleIsolation()) options.log(`proctap: removed leftover ${what}`);
  for (const dir of removeStaleKeyLogs()) options.log(`proctap: removed leftover key log channel ${dir}`);

  /* Load & verify BPF programs, pick the socket I/O backend */
  // --isolate captures with libpcap on the namespace end of the veth: every packet there is the tree's.
  const capture = options.capture && options.isolate ? { ...options.capture, live: true } : options.capture;
  const env = commandEnvironment(process.env);
  let keyLog: KeyLogChannel | null = null;
  let cgroupDir: string | null = null;
  const liveProcesses = { source: "the command's cgroup.procs", pids: () => (cgroupDir ? cgroupPids(cgroupDir) : []) };
  const engine = new TraceEngine({ ...options, capture, followChildren: true, countUnownedPackets: true, liveProcesses });
  let launched: LaunchedCommand | null = null;
  let reaper: Reaper | null = null;
  let isolation: Isolation | null = null;
  const fatalUndo: Array<() => void> = [];
  let removeStopHandlers = () => {};
  try {
    /* With a pcapng capture, a TLS key log channel for the command; its lines go into the capture */
    if (capture && capture.format === 'pcapng' && options.tlsKeyLog !== false) {
      const channel = createKeyLogChannel(options.credentials);
      keyLog = channel;
      fatalUndo.push(onFatal(() => channel.close()));
      capture.secrets = channel; // the engine's capture options: read when start() opens the capture
      if (env.SSLKEYLOGFILE) options.log(`proctap: SSLKEYLOGFILE=${env.SSLKEYLOGFILE} replaced for the command: its TLS secrets go into the capture`);
    }

    /* Attach process, lifecycle and cgroup hooks; start consuming. The reaper outlives a killed proctap. */
    cgroupDir = createCgroup(mount, ownedCgroupName(process.pid, 'run'));
    const dir = cgroupDir;
    fatalUndo.push(onFatal(() => killCgroup(dir)));
    reaper = startReaper(LAUNCHER, cgroupDir);
    if (options.isolate) {
      const iso = setupIsolation({ owner: process.pid, ...options.isolate, log: options.log });
      isolation = iso;
      fatalUndo.push(onFatal(() => iso.teardown()));
    }
    engine.attach([cgroupDir]);
    engine.start(
      captureInterfaceName(cgroupDir),
      isolation && capture?.live
        ? [{ device: isolation.names.nsIf, netnsPath: isolation.netnsPath, name: `${isolation.names.nsIf} (netns ${isolation.names.netns})`, description: 'proctap run --isolate: namespace end of the veth pair', localAddrs: [isolation.v4.nsAddr, ...(isolation.v6 ? [isolation.v6.nsAddr] : [])] }]
        : [],
    );

    /* TLS libraries the command will load, hooked before it runs (src/tls/hooks.ts says when else) */
    engine.tls?.hookSystemLibraries('/');
    const executable = commandExecutable(options.argv[0], env.PATH);
    if (executable) engine.tls?.hookPath(executable);

    /* Launch behind the gate; the command is traced before its first instruction */
    launched = launchGated({
      launcher: LAUNCHER,
      cgroupDir,
      argv: options.argv,
      netnsPath: isolation?.netnsPath,
      resolvConf: isolation?.resolvConf,
      credentials: options.credentials,
      stdoutToStderr: options.capture?.path === '-',
      env: keyLog ? keyLogEnvironment(env, keyLog.path) : env,
    });
    engine.tracer.addTraced(launched.pid);
    const startedAt = new Date();
    const originNs = monotonicNs();
    engine.collector.tree.addRoot(launched.pid, process.pid, path.basename(options.argv[0]).slice(0, 15), options.argv, originNs);
    const stopHandlers = installStopHandlers(cgroupDir, options.log);
    removeStopHandlers = stopHandlers.dispose;
    engine.onOutputError = () => stopHandlers.stop('an output failed');
    launched.release();

    /* Trace until the command and every descendant have exited */
    const exit = await launched.exited;
    await waitUntilEmpty(cgroupDir);
    const durationMs = (monotonicNs() - originNs) / 1e6;

    /* Drain, read the kernel's final counters, report */
    engine.onOutputError = () => {}; // the trace is over: a failing last write is only reported
    const report = await engine.finish({ mode: 'run', command: options.argv, exitCode: exit.exitCode, startedAt, originNs, durationMs });
    if (isolation) {
      report.isolation = isolationReport(isolation);
      addNatMappings(report, isolation);
    }
    return { report, exitCode: exit.exitCode, outputError: engine.outputError };
  } finally {
    for (const undo of fatalUndo) undo();
    removeStopHandlers();
    launched?.abort();
    await engine.close();
    if (cgroupDir) await removeCgroup(cgroupDir);
    keyLog?.close(); // the traced tree is gone: nobody writes to it any more
    if (isolation) {
      try {
        isolation.teardown();
      } catch (err) {
        options.log(`proctap: cleanup of ${isolation.names.netns} failed (${(err as Error).message}): run 'proctap cleanup'`);
      }
    }
    reaper?.release();
  }
}
