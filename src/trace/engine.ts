// SPDX-License-Identifier: MIT
// What `run` and `attach` share: the loaded tracer, the consumers (ring buffer, proc connector, capture),
// the final read of the kernel's counters, and the report. The callers own what differs: how the traced
// processes come to be (a gated launch, or existing targets) and when the trace ends.
import * as path from 'node:path';
import { loadNative } from '../native';
import type { PacketFilter, ProcConnector } from '../native/native';
import { buildReport } from '../aggregate/report';
import { addStatistics } from '../aggregate/statistics';
import { startLiveDisplay } from '../report/live';
import { DLT_RAW, openCapture, type CaptureFormat, type PacketCapture } from '../pcap/capture';
import type { Backend, CaptureSummary, LostCounters, Report } from '../report/schema';
import { TraceCollector } from './collector';
import type { TraceRecord } from './records';
import { Tracer, type KernelStats, type TracerConfig } from './tracer';

export interface CaptureOptions {
  path: string;
  /** The file, already opened by the caller (createOutputFile). */
  fd?: number;
  format: CaptureFormat;
  snaplen: number;
  /** The tcpdump expression (for the report) and its program, compiled up front (compileCaptureFilter). */
  filter: { expression: string; program: PacketFilter } | null;
}

/** Compiles a --pcap-filter expression for the capture's packets; throws "invalid filter ..." */
export function compileCaptureFilter(expression: string, snaplen: number): { expression: string; program: PacketFilter } {
  return { expression, program: loadNative().compilePacketFilter(expression, DLT_RAW, snaplen) };
}

export interface EngineOptions {
  backend: Backend | 'auto';
  intervalMs: number;
  ringBufferBytes: number;
  version: string;
  /** Follow children forked by traced processes. */
  followChildren: boolean;
  /** Count packets of untraced sockets in the hooked cgroup as unattributed (a cgroup of our own). */
  countUnownedPackets: boolean;
  /** attach --comm / --cgroup: processes that start matching are traced too. */
  match?: TracerConfig['match'];
  capture?: CaptureOptions;
  detailCalls?: boolean;
  onRecord?: (record: TraceRecord) => void;
  /** After every ring-buffer batch (the event stream flushes there). */
  onBatchEnd?: () => void;
  log: (line: string) => void;
  /** Time-series bucket width; default chosen from the trace length. */
  seriesIntervalMs?: number;
  /** While tracing: a status line on a terminal's stderr, or with `live` a refreshing top-like view. */
  display?: { live: boolean; intervalMs: number };
}

export interface ReportContext {
  mode: 'run' | 'attach';
  command: string[];
  exitCode: number | null;
  startedAt: Date;
  originNs: number;
  durationMs: number;
  notes?: string[];
}

export const monotonicNs = (): number => Number(process.hrtime.bigint());

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

/** The stderr warning when the ring buffer overflowed (also with -q): what was lost, and that totals hold. */
export function lostRecordsWarning(lost: LostCounters): string | null {
  if (lost.records === 0) return null;
  const kinds = Object.entries(lost.recordsByKind)
    .filter(([, n]) => n > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  return `proctap: warning: ring buffer full: ${lost.records} records lost (${kinds}); byte and call totals are still exact (kernel counters); a larger --ring-buffer keeps them`;
}

export class TraceEngine {
  readonly collector = new TraceCollector();
  readonly tracer: Tracer;
  private capture: PacketCapture | null = null;
  private connector: ProcConnector | null = null;
  private ringRunning = false;
  private closed = false;
  private eventsFailed = false;
  /** The first write error of an output (capture file, event stream); the trace goes on to its report. */
  outputError: Error | null = null;
  /** Called once, at the first output write error: the caller stops the trace (as on Ctrl-C). */
  onOutputError: (err: Error) => void = () => {};

  /** Loads and verifies the programs. */
  constructor(private readonly options: EngineOptions) {
    this.tracer = Tracer.open({
      backend: options.backend,
      intervalMs: options.intervalMs,
      detailCalls: options.detailCalls ?? false,
      countUnownedPackets: options.countUnownedPackets,
      followChildren: options.followChildren,
      ringBufferBytes: options.ringBufferBytes,
      capture: options.capture ? { snaplen: options.capture.snaplen } : undefined,
      match: options.match,
    });
    this.collector.onRecordTap = (record) => {
      if (record.type === 'packet' && this.capture) this.toCapture((c) => c.onPacket(record));
      if (options.onRecord) this.toEvents(() => options.onRecord?.(record));
    };
  }

  /** Attaches the process and lifecycle tracepoints, and the socket/packet hooks on each cgroup. */
  attach(cgroupDirs: string[]): void {
    this.tracer.attachTracing();
    for (const dir of cgroupDirs) this.tracer.attachCgroup(dir);
  }

  /** Opens the capture file and starts consuming the ring buffer and the proc connector. */
  start(captureInterface: string): void {
    const capture = this.options.capture;
    if (capture) {
      this.capture = openCapture(
        { ...capture, userAppl: `proctap ${this.options.version}`, interfaceName: captureInterface },
        (pid) => this.collector.tree.get(pid),
      );
    }
    this.tracer.start((batch) => {
      this.collector.onBatch(batch);
      this.toCapture((c) => c.flush());
      if (this.options.onBatchEnd) this.toEvents(() => this.options.onBatchEnd?.());
      this.finalizeReleased();
    }, this.options.capture?.filter?.program ?? null);
    this.ringRunning = true;
    this.connector = loadNative().openProcConnector((batch) => this.collector.onProcBatch(batch));
    if (this.options.display) {
      this.stopDisplay = startLiveDisplay(
        {
          flows: () => this.collector.flows.list(),
          comm: (pid) => this.collector.tree.get(pid)?.comm,
          records: () => this.collector.records,
          lost: () => Object.values(this.tracer.readStats().lostRecords).reduce((a, b) => a + b, 0),
        },
        this.options.display,
      );
    }
  }

  private stopDisplay = () => {};

  /** A capture write that fails (disk full) ends the capture: the file keeps its complete blocks. */
  private toCapture(write: (capture: PacketCapture) => void): void {
    const capture = this.capture;
    if (!capture) return;
    try {
      write(capture);
    } catch (err) {
      this.capture = null;
      try {
        capture.close(0);
      } catch {
        /* the first error is the one to report */
      }
      this.failOutput(err);
    }
  }

  /** An event stream write that fails ends the stream (it keeps its complete lines). */
  private toEvents(write: () => void): void {
    if (this.eventsFailed) return;
    try {
      write();
    } catch (err) {
      this.eventsFailed = true;
      this.failOutput(err);
    }
  }

  private failOutput(err: unknown): void {
    if (this.outputError) return;
    this.outputError = err instanceof Error ? err : new Error(String(err));
    this.onOutputError(this.outputError);
  }

  /** Reads the last counters of released sockets and drops them from the kernel table (bounded memory). */
  private finalizeReleased(): void {
    const { collector, tracer } = this;
    for (const cookie of collector.takeReleased()) {
      for (const flow of collector.flows.flowsOfSocket(cookie)) {
        if (flow.final) continue;
        const last = tracer.takeFlow(flow.key);
        if (last) collector.flows.finalize(last.key, last.counters, last.firstNs, last.lastNs, last.localAddr, last.localPort, last.sizes);
      }
    }
  }

  /** Drains everything, reads the kernel's final counters, closes the capture, builds the report. */
  async finish(context: ReportContext): Promise<Report> {
    const { collector, tracer } = this;
    this.stopDisplay();
    await tracer.stop();
    this.ringRunning = false;
    this.finalizeReleased();
    for (const f of tracer.dumpFlows()) collector.flows.finalize(f.key, f.counters, f.firstNs, f.lastNs, f.localAddr, f.localPort, f.sizes);
    this.connector?.close();
    this.connector = null;
    const packets = tracer.dumpPackets();
    const stats = tracer.readStats();
    for (const flow of collector.flows.list()) collector.tree.ensure(flow.key.tgid);

    const lost = lostCounters(stats, collector.connectorOverflows);
    const lostLine = lostRecordsWarning(lost);
    if (lostLine) this.options.log(lostLine);
    const captureSummary = this.closeCapture(stats);
    const report = buildReport({
      version: this.options.version,
      mode: context.mode,
      backend: tracer.backend,
      command: context.command,
      exitCode: context.exitCode,
      startedAt: context.startedAt,
      durationMs: context.durationMs,
      originNs: context.originNs,
      processes: collector.tree.list(),
      flows: collector.flows.list(),
      connections: collector.connections.list(),
      packets,
      lost,
      notes: [...(context.notes ?? []), ...this.notes(lost)],
    });
    if (captureSummary) report.capture = captureSummary;
    addStatistics(report, collector.flows.list(), context, this.options.intervalMs, this.options.seriesIntervalMs);
    return report;
  }

  private closeCapture(stats: KernelStats): CaptureSummary | undefined {
    const capture = this.capture;
    const options = this.options.capture;
    if (!capture || !options) return undefined;
    this.capture = null;
    const dropped = stats.lostRecords.packet ?? 0;
    capture.stats.filteredOut = this.tracer.packetsFilteredOut();
    try {
      capture.close(dropped);
    } catch (err) {
      this.failOutput(err);
      return undefined;
    }
    const where = options.path === '-' ? 'standard output' : options.path;
    const hint = dropped ? ' (ring buffer full: try --ring-buffer 64M)' : '';
    this.options.log(`proctap: ${capture.stats.written} packets written to ${where}, ${dropped} dropped${hint}`);
    return {
      path: options.path,
      format: options.format,
      snaplen: options.snaplen,
      filter: options.filter?.expression ?? null,
      packets: capture.stats.written,
      dropped,
      filteredOut: capture.stats.filteredOut,
      unowned: capture.stats.unowned,
    };
  }

  private notes(lost: LostCounters): string[] {
    const notes: string[] = [];
    const { collector } = this;
    if (collector.flows.list().some((f) => f.key.remoteAddr === '*'))
      notes.push('Some UDP traffic has remote "*": recv() without an address on an unconnected socket does not say who sent it.');
    if (lost.records > 0)
      notes.push('Ring-buffer records were lost: byte and call totals are still exact (read from kernel counters); time resolution and process details may be incomplete.');
    if (collector.tree.list().some((p) => p.source === 'flow'))
      notes.push('Some processes are known only from their traffic (their fork record was lost).');
    return notes;
  }

  /** Teardown on every path: idempotent. Links go with the object. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopDisplay();
    if (this.ringRunning) await this.tracer.stop().catch(() => {});
    this.connector?.close();
    this.capture?.close(0);
    this.tracer.close();
  }
}

export function captureInterfaceName(cgroupDir: string): string {
  return `cgroup ${path.basename(cgroupDir)}`;
}
