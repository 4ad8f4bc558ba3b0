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
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Signals stop the trace the way a user expects: first SIGTERM to the tree, then SIGKILL. */
function installStopHandlers(cgroupDir: string, log: (line: string) => void): () => void {
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      killCgroup(cgroupDir);
      return;
    }
    stopping = true;
    log(`proctap: ${signal}: stopping the traced command (SIGTERM, SIGKILL in 3 s)`);
    signalCgroup(cgroupDir, 'SIGTERM');
    killTimer = setTimeout(() => killCgroup(cgroupDir), 3000);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  return () => {
    for (const s of signals) process.off(s, onSignal);
    if (killTimer) clearTimeout(killTimer);
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
  let cgroupDir: string | null = null;
  const liveProcesses = { source: "the command's cgroup.procs", pids: () => (cgroupDir ? cgroupPids(cgroupDir) : []) };
  const engine = new TraceEngine({ ...options, followChildren: true, countUnownedPackets: true, liveProcesses });
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
    removeStopHandlers = installStopHandlers(cgroupDir, options.log);
    launched.release();

    /* Trace until the command and every descendant have exited */
    const exit = await launched.exited;
    await waitUntilEmpty(cgroupDir);
    const durationMs = (monotonicNs() - originNs) / 1e6;

    /* Drain, read the kernel's final counters, report */
    const report = await engine.finish({ mode: 'run', command: options.argv, exitCode: exit.exitCode, startedAt, originNs, durationMs });
    return { report, exitCode: exit.exitCode };
  } finally {
    removeStopHandlers();
    launched?.abort();
    await engine.close();
    if (cgroupDir) await removeCgroup(cgroupDir);
    reaper?.release();
  }
}
