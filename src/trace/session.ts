// SPDX-License-Identifier: MIT
// `proctap run`: create the cgroup, load and attach every hook, launch the command behind the gate,
// trace until the whole tree has exited, read the kernel's final counters, detach, remove the cgroup,
// build the report. Teardown runs on every path.
import * as path from 'node:path';
import {
  cgroup2Mount,
  createCgroup,
  isPopulated,
  killCgroup,
  ownedCgroupName,
  removeCgroup,
  removeStaleCgroups,
  signalCgroup,
} from '../proc/cgroup';
import { launchGated, startReaper, type LaunchedCommand, type Reaper } from '../proc/launch';
import type { Report } from '../report/schema';
import { TraceEngine, captureInterfaceName, monotonicNs, type EngineOptions } from './engine';

export const LAUNCHER = path.resolve(__dirname, '../../../build/proctap-launch');

export interface RunOptions extends Omit<EngineOptions, 'followChildren' | 'countUnownedPackets' | 'match'> {
  argv: string[];
  /** The command's credentials; null keeps root. */
  credentials: { uid: number; gid: number } | null;
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

  /* Load & verify BPF programs, pick the socket I/O backend */
  const engine = new TraceEngine({ ...options, followChildren: true, countUnownedPackets: true });
  let cgroupDir: string | null = null;
  let launched: LaunchedCommand | null = null;
  let reaper: Reaper | null = null;
  let removeStopHandlers = () => {};
  try {
    /* Attach process, lifecycle and cgroup hooks; start consuming. The reaper outlives a killed proctap. */
    cgroupDir = createCgroup(mount, ownedCgroupName(process.pid, 'run'));
    reaper = startReaper(LAUNCHER, cgroupDir);
    engine.attach([cgroupDir]);
    engine.start(captureInterfaceName(cgroupDir));

    /* Launch behind the gate; the command is traced before its first instruction */
    launched = launchGated({
      launcher: LAUNCHER,
      cgroupDir,
      argv: options.argv,
      credentials: options.credentials,
      stdoutToStderr: options.capture?.path === '-',
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
    return { report, exitCode: exit.exitCode, outputError: engine.outputError };
  } finally {
    removeStopHandlers();
    launched?.abort();
    await engine.close();
    if (cgroupDir) await removeCgroup(cgroupDir);
    reaper?.release();
  }
}
