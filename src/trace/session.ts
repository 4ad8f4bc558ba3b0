// SPDX-License-Identifier: MIT
// `proctap run`: owns setup and teardown. Create the cgroup, load and attach every hook, launch the
// command behind the gate, trace until the whole tree has exited, read the kernel's final counters,
// detach, remove the cgroup, build the report. Teardown runs on every path.
import * as path from 'node:path';
import { loadNative } from '../native';
import type { ProcConnector } from '../native/native';
import { buildReport } from '../aggregate/report';
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
import { launchGated, type LaunchedCommand } from '../proc/launch';
import type { Backend, LostCounters, Report } from '../report/schema';
import { TraceCollector } from './collector';
import { Tracer, type KernelStats } from './tracer';
import type { TraceRecord } from './records';
import { DLT_RAW, openCapture, type CaptureFormat, type PacketCapture } from '../pcap/capture';

export const LAUNCHER = path.resolve(__dirname, '../../../build/proctap-launch');

export interface RunOptions {
  argv: string[];
  backend: Backend | 'auto';
  /** Minimum ms between interval records of one flow. */
  intervalMs: number;
  /** The command's credentials; null keeps root. */
  credentials: { uid: number; gid: number } | null;
  ringBufferBytes: number;
  version: string;
  /** Status lines (stderr). */
  log: (line: string) => void;
  onRecord?: (record: TraceRecord) => void;
  detailCalls?: boolean;
  /** Packet capture (--pcap): file or "-", format, snaplen, tcpdump filter. */
  capture?: { path: string; format: CaptureFormat; snaplen: number; filter: string | null };
}

export interface RunResult {
  report: Report;
  exitCode: number;
}

const monotonicNs = (): number => Number(process.hrtime.bigint());
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function lostCounters(stats: KernelStats, connectorOverflows: number): LostCounters {
  const records = Object.values(stats.lostRecords).reduce((a, b) => a + b, 0);
  return {
    records,
    recordsByKind: stats.lostRecords,
    flowTableFullCalls: stats.flowTableFull,
    flowTableFullBytes: stats.flowTableFullBytes,
    tracedTableFull: stats.tracedTableFull,
    procConnectorOverflows: connectorOverflows,
  };
}

/** Reads the last counters of released sockets and drops them from the kernel table (bounded memory). */
function finalizeReleased(collector: TraceCollector, tracer: Tracer): void {
  for (const cookie of collector.takeReleased()) {
    for (const flow of collector.flows.flowsOfSocket(cookie)) {
      if (flow.final) continue;
      const last = tracer.takeFlow(flow.key);
      if (last) collector.flows.finalize(last.key, last.counters, last.firstNs, last.lastNs, last.localAddr, last.localPort);
    }
  }
}

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
  const native = loadNative();
  /* A bad filter is refused before anything is loaded or started */
  const filter = options.capture?.filter
    ? native.compilePacketFilter(options.capture.filter, DLT_RAW, options.capture.snaplen)
    : null;
  const mount = cgroup2Mount();
  for (const dir of await removeStaleCgroups(mount)) options.log(`proctap: removed leftover cgroup ${dir}`);

  /* Load & verify BPF programs, pick the socket I/O backend */
  const tracer = Tracer.open({
    backend: options.backend,
    intervalMs: options.intervalMs,
    detailCalls: options.detailCalls ?? false,
    countUnownedPackets: true,
    followChildren: true,
    ringBufferBytes: options.ringBufferBytes,
    capture: options.capture ? { snaplen: options.capture.snaplen } : undefined,
  });
  const collector = new TraceCollector();
  let capture: PacketCapture | null = null;
  collector.onRecordTap = (record) => {
    if (record.type === 'packet') capture?.onPacket(record);
    options.onRecord?.(record);
  };
  let cgroupDir: string | null = null;
  let connector: ProcConnector | null = null;
  let launched: LaunchedCommand | null = null;
  let removeStopHandlers = () => {};
  let ringRunning = false;
  try {
    /* Attach process, lifecycle and cgroup hooks */
    tracer.attachTracing();
    cgroupDir = createCgroup(mount, ownedCgroupName(process.pid, 'run'));
    tracer.attachCgroup(cgroupDir);
    if (options.capture) {
      capture = openCapture(
        { ...options.capture, filter, userAppl: `proctap ${options.version}`, interfaceName: `cgroup ${path.basename(cgroupDir)}` },
        (pid) => collector.tree.get(pid)?.comm,
      );
    }

    /* Consume: ring buffer batches and proc connector events */
    tracer.start((batch) => {
      collector.onBatch(batch);
      capture?.flush();
      finalizeReleased(collector, tracer);
    });
    ringRunning = true;
    connector = native.openProcConnector((batch) => collector.onProcBatch(batch));

    /* Launch behind the gate; the command is traced before its first instruction */
    launched = launchGated({
      launcher: LAUNCHER,
      cgroupDir,
      argv: options.argv,
      credentials: options.credentials,
      stdoutToStderr: options.capture?.path === '-',
    });
    tracer.addTraced(launched.pid);
    const startedAt = new Date();
    const originNs = monotonicNs();
    collector.tree.addRoot(launched.pid, process.pid, path.basename(options.argv[0]).slice(0, 15), options.argv, originNs);
    removeStopHandlers = installStopHandlers(cgroupDir, options.log);
    launched.release();

    /* Trace until the command and every descendant have exited */
    const exit = await launched.exited;
    await waitUntilEmpty(cgroupDir);
    const durationMs = (monotonicNs() - originNs) / 1e6;

    /* Drain, then read the kernel's final counters */
    await tracer.stop();
    ringRunning = false;
    finalizeReleased(collector, tracer);
    for (const f of tracer.dumpFlows()) collector.flows.finalize(f.key, f.counters, f.firstNs, f.lastNs, f.localAddr, f.localPort);
    connector.close();
    connector = null;
    const packets = tracer.dumpPackets();
    const stats = tracer.readStats();
    for (const flow of collector.flows.list()) collector.tree.ensure(flow.key.tgid);

    const lost = lostCounters(stats, collector.connectorOverflows);
    let captureSummary: Report['capture'];
    if (capture && options.capture) {
      const dropped = stats.lostRecords.packet ?? 0;
      capture.close(dropped);
      captureSummary = {
        path: options.capture.path,
        format: options.capture.format,
        snaplen: options.capture.snaplen,
        filter: options.capture.filter,
        packets: capture.stats.written,
        dropped,
        filteredOut: capture.stats.filteredOut,
        unowned: capture.stats.unowned,
      };
      capture = null;
      const where = options.capture.path === '-' ? 'standard output' : options.capture.path;
      options.log(`proctap: ${captureSummary.packets} packets written to ${where}, ${dropped} dropped${dropped ? ' (ring buffer full: try --ring-buffer 64M)' : ''}`);
    }
    const report = buildReport({
      version: options.version,
      mode: 'run',
      backend: tracer.backend,
      command: options.argv,
      exitCode: exit.exitCode,
      startedAt,
      durationMs,
      originNs,
      processes: collector.tree.list(),
      flows: collector.flows.list(),
      connections: collector.connections.list(),
      packets,
      lost,
      notes: reportNotes(collector, lost),
    });
    if (captureSummary) report.capture = captureSummary;
    return { report, exitCode: exit.exitCode };
  } finally {
    removeStopHandlers();
    launched?.abort();
    if (ringRunning) await tracer.stop().catch(() => {});
    connector?.close();
    capture?.close(0);
    tracer.close();
    if (cgroupDir) await removeCgroup(cgroupDir);
  }
}

function reportNotes(collector: TraceCollector, lost: LostCounters): string[] {
  const notes: string[] = [];
  if (collector.flows.list().some((f) => f.key.remoteAddr === '*'))
    notes.push('Some UDP traffic has remote "*": recv() without an address on an unconnected socket does not say who sent it.');
  if (lost.records > 0)
    notes.push('Ring-buffer records were lost: byte and call totals are still exact (read from kernel counters); time resolution and process details may be incomplete.');
  if (collector.tree.list().some((p) => p.source === 'flow'))
    notes.push('Some processes are known only from their traffic (their fork record was lost).');
  return notes;
}
