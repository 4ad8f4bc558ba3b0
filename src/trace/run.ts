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
import type { Report } from '../schema/report';
import { loadNative } from '../native';
import { assembleReport } from '../report/assemble';
import type { IsolationFacts } from '../report/isolation';
import { onFatal } from '../util/teardown';
import { hasStaleIsolation, removeStaleIsolation, setupIsolation, type Isolation } from '../isolate/system';
import { TraceSession, captureInterfaceName, monotonicNs, type SessionOptions } from './session';
import { onStopSignals, sleep } from './signals';

export const LAUNCHER = path.resolve(__dirname, '../../../build/proctap-launch');

export interface RunOptions extends Omit<SessionOptions, 'followChildren' | 'countUnownedPackets' | 'match' | 'tracedNow'> {
  argv: string[];
  /** The command's credentials; null keeps root. */
  credentials: { uid: number; gid: number } | null;
  /** --isolate: run the command in a network namespace of its own, behind a veth pair and NAT. */
  isolate?: { device?: string; forwarding: boolean; publicDns: boolean };
  /** With a pcapng capture: hand the command a TLS key log channel (SSLKEYLOGFILE) and write what it logs
   *  into the capture (default on). */
  tlsKeyLog?: boolean;
}

/** The namespace and the host's conntrack table, read before the namespace is torn down: the report maps
 *  each connection to the source it had after masquerade. */
function isolationFacts(iso: Isolation): IsolationFacts {
  if (iso.device === null) return { isolation: iso, conntrack: [] };
  try {
    const native = loadNative();
    return { isolation: iso, conntrack: [...native.conntrackDump({ family: 'ipv4' }), ...(iso.v6 ? native.conntrackDump({ family: 'ipv6' }) : [])] };
  } catch (err) {
    return { isolation: iso, conntrack: { error: (err as Error).message } };
  }
}

export interface RunResult {
  report: Report;
  exitCode: number;
  /** An output (capture file, event stream) failed to write: the trace was stopped early. */
  outputError: Error | null;
}

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
  const removeSignals = onStopSignals(stop);
  return {
    stop,
    dispose: () => {
      removeSignals();
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

  /* With a pcapng capture, a TLS key log channel for the command; its lines go into the capture */
  const env = commandEnvironment(process.env);
  const keyLog: KeyLogChannel | null =
    options.capture?.format === 'pcapng' && options.tlsKeyLog !== false ? createKeyLogChannel(options.credentials) : null;
  if (keyLog && env.SSLKEYLOGFILE) options.log(`proctap: SSLKEYLOGFILE=${env.SSLKEYLOGFILE} replaced for the command: its TLS secrets go into the capture`);
  const fatalUndo: Array<() => void> = keyLog ? [onFatal(() => keyLog.close())] : [];

  /* Load & verify BPF programs, pick the socket I/O backend */
  let cgroupDir: string | null = null;
  const tracedNow = { source: "the command's cgroup.procs", pids: () => (cgroupDir ? cgroupPids(cgroupDir) : []) };
  let session: TraceSession;
  try {
    session = new TraceSession({
      ...options,
      capture: options.capture && keyLog ? { ...options.capture, secrets: keyLog } : options.capture,
      followChildren: true,
      countUnownedPackets: true,
      tracedNow,
    });
  } catch (err) {
    for (const undo of fatalUndo) undo();
    keyLog?.close();
    throw err;
  }
  let launched: LaunchedCommand | null = null;
  let reaper: Reaper | null = null;
  let isolation: Isolation | null = null;
  let removeStopHandlers = () => {};
  try {
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
    session.attach([cgroupDir]);
    // --isolate captures with libpcap on the namespace end of the veth: every packet there is the tree's.
    session.start(
      captureInterfaceName(cgroupDir),
      isolation && options.capture?.kind === 'libpcap'
        ? [{ device: isolation.names.nsIf, netnsPath: isolation.netnsPath, name: `${isolation.names.nsIf} (netns ${isolation.names.netns})`, description: 'proctap run --isolate: namespace end of the veth pair', localAddrs: [isolation.v4.nsAddr, ...(isolation.v6 ? [isolation.v6.nsAddr] : [])] }]
        : [],
    );

    /* TLS libraries the command will load, hooked before it runs (src/tls/hooks.ts says when else) */
    session.tls?.hookSystemLibraries('/');
    const executable = commandExecutable(options.argv[0], env.PATH);
    if (executable) session.tls?.hookPath(executable);

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
    session.probes.addTraced(launched.pid);
    const startedAt = new Date();
    const originNs = monotonicNs();
    session.model.tree.addRoot(launched.pid, process.pid, path.basename(options.argv[0]).slice(0, 15), options.argv, originNs);
    const stopHandlers = installStopHandlers(cgroupDir, options.log);
    removeStopHandlers = stopHandlers.dispose;
    session.outputs.onFailure = () => stopHandlers.stop('an output failed');
    launched.release();

    /* Trace until the command and every descendant have exited */
    const exit = await launched.exited;
    await waitUntilEmpty(cgroupDir);
    const durationMs = (monotonicNs() - originNs) / 1e6;

    /* Drain, read the kernel's final counters, report */
    session.outputs.onFailure = () => {}; // the trace is over: a failing last write is only reported
    const inputs = await session.finish({ mode: 'run', command: options.argv, exitCode: exit.exitCode, startedAt, originNs, durationMs });
    const report = assembleReport({ ...inputs, ...(isolation ? { isolation: isolationFacts(isolation) } : {}) });
    return { report, exitCode: exit.exitCode, outputError: session.outputs.error };
  } finally {
    for (const undo of fatalUndo) undo();
    removeStopHandlers();
    launched?.abort();
    await session.close();
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
