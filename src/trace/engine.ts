// SPDX-License-Identifier: MIT
// What `run` and `attach` share: the loaded tracer, the consumers (ring buffer, proc connector, capture),
// the final read of the kernel's counters, and the report. The callers own what differs: how the traced
// processes come to be (a gated launch, or existing targets) and when the trace ends.
import * as path from 'node:path';
import { loadNative } from '../native';
import { readArgv, readStatus } from '../proc/procfs';
import type { PacketFilter, ProcConnector } from '../native/native';
import { buildReport } from '../aggregate/report';
import { addRemoteNames } from '../aggregate/names';
import { addStatistics } from '../aggregate/statistics';
import { startLiveDisplay } from '../report/live';
import { DLT_RAW, captureSink, openCapture, packetComment, type CaptureFormat, type PacketCapture } from '../pcap/capture';
import { startLiveCapture, type LiveCaptureRun } from '../pcap/live';
import { PortOwners, packetPorts } from '../pcap/owners';
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
  /** Capture with libpcap on network devices (given to start()) instead of the eBPF packet hook. */
  live?: boolean;
}

/** A device to capture with libpcap: run --isolate's veth end, or "any" in a target's namespace. */
export interface LiveDevice {
  device: string;
  netnsPath: string;
  /** pcapng if_name / report text, e.g. "pt123n (netns proctap-123)". */
  name: string;
  description: string;
  /** Addresses of the traced side on that device (tells a packet's direction on an Ethernet capture). */
  localAddrs?: string[];
  /** Link type to ask libpcap for (276, LINUX_SLL2, on "any": interface index and direction per packet). */
  linkType?: number;
}

/** Compiles a --pcap-filter expression for the capture's packets (link type: DLT_RAW for the eBPF hook,
 *  Ethernet / LINUX_SLL2 for libpcap captures); throws "invalid filter ..." */
export function compileCaptureFilter(expression: string, snaplen: number, linkType = DLT_RAW): { expression: string; program: PacketFilter } {
  return { expression, program: loadNative().compilePacketFilter(expression, linkType, snaplen) };
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
  /** Remote names from the DNS answers traced processes receive (default on). */
  dnsNames?: boolean;
  /** TCP retransmits per connection (default on). */
  retransmits?: boolean;
  /** L7 view: the head of each call of flows that look like a decoded protocol (TracerConfig.l7Data). */
  l7Data?: { snaplen: number };
  onRecord?: (record: TraceRecord) => void;
  /** Tests: an internal error 300 ms after start() (the fatal-error handler must clean up). */
  injectFault?: 'uncaught-exception' | 'unhandled-rejection';
  /** After every ring-buffer batch (the event stream flushes there). */
  onBatchEnd?: () => void;
  log: (line: string) => void;
  /** Time-series bucket width; default chosen from the trace length. */
  seriesIntervalMs?: number;
  /** Processes that should be in the tree now, where to find them after lost proc connector events:
   *  run mode reads its cgroup's cgroup.procs; by default, the kernel's traced set. */
  liveProcesses?: { source: string; pids: () => number[] };
  /** Proc connector socket receive queue in bytes (default 4 MiB), and a time (ms) the reader is
   *  stopped at the start: together they make an overflow happen in tests. */
  procConnectorBufferBytes?: number;
  procConnectorPauseMs?: number;
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
    ...(stats.retransmitTableFull > 0 ? { retransmitTableFull: stats.retransmitTableFull } : {}),
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
  private live: { run: LiveCaptureRun; devices: LiveDevice[]; error: Error | null; unowned: number } | null = null;
  private readonly portOwners = new PortOwners();
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
      capture: options.capture && !options.capture.live ? { snaplen: options.capture.snaplen } : undefined,
      match: options.match,
      dnsNames: options.dnsNames,
      retransmits: options.retransmits,
      l7Data: options.l7Data,
    });
    this.collector.onRecordTap = (record) => {
      if (record.type === 'packet' && this.capture) this.toCapture((c) => c.onPacket(record));
      // libpcap captures name each packet's process by its local port, learned from these records
      if (this.live && record.type === 'sockState' && record.localPort) this.portOwners.learn(6, record.localPort, { pid: record.tgid, startTime: record.startTime });
      if (this.live && record.type === 'flow' && record.localPort) this.portOwners.learn(record.key.proto, record.localPort, { pid: record.key.tgid, startTime: record.key.startTime });
      if (options.onRecord) this.toEvents(() => options.onRecord?.(record));
    };
  }

  /** Attaches the process and lifecycle tracepoints, and the socket/packet hooks on each cgroup. */
  attach(cgroupDirs: string[]): void {
    this.tracer.attachTracing();
    for (const dir of cgroupDirs) this.tracer.attachCgroup(dir);
  }

  /** Opens the capture file and starts consuming the ring buffer and the proc connector. With a live
   *  capture, `liveDevices` are the devices libpcap captures on (all of them into one pcapng file). */
  start(captureInterface: string, liveDevices: LiveDevice[] = []): void {
    const capture = this.options.capture;
    if (capture?.live) {
      if (liveDevices.length === 0) throw new Error('live capture without a device');
      const state = { run: null as unknown as LiveCaptureRun, devices: liveDevices, error: null as Error | null, unowned: 0 };
      const localAddrs = new Set(liveDevices.flatMap((d) => d.localAddrs ?? []));
      state.run = startLiveCapture(
        liveDevices.map((d) => ({ device: d.device, netnsPath: d.netnsPath, name: d.name, description: d.description, linkType: d.linkType, snaplen: capture.snaplen, filter: capture.filter?.expression })),
        {
          sink: captureSink(capture),
          format: capture.format,
          userAppl: `proctap ${this.options.version}`,
          onError: (err) => {
            state.error = err;
            this.failOutput(err);
          },
          // Held for the ring buffer's records of the same moment to arrive (its poll timer is 50 ms).
          holdMs: 150,
          annotate: (packet, linkType, direction) => {
            const ports = packetPorts(packet.data, linkType);
            const owner = ports ? this.portOwners.ownerOf(ports, direction, localAddrs) : undefined;
            if (!owner) {
              state.unowned++;
              return ports ? 'owner unknown' : 'no socket (not TCP/UDP)';
            }
            return packetComment(owner.pid, this.collector.tree.get(owner.pid, owner.startTime));
          },
        },
      );
      this.live = state;
    } else if (capture) {
      this.capture = openCapture(
        { ...capture, userAppl: `proctap ${this.options.version}`, interfaceName: captureInterface },
        (pid, startTime) => this.collector.tree.get(pid, startTime ?? null),
      );
    }
    this.tracer.start((batch) => {
      this.collector.onBatch(batch);
      this.toCapture((c) => c.flush());
      if (this.options.onBatchEnd) this.toEvents(() => this.options.onBatchEnd?.());
      this.finalizeReleased();
    }, this.options.capture?.live ? null : (this.options.capture?.filter?.program ?? null));
    this.ringRunning = true;
    this.connector = loadNative().openProcConnector((batch) => {
      if (this.collector.onProcBatch(batch) > 0) this.rebuildTree();
    }, this.options.procConnectorBufferBytes);
    const fault = this.options.injectFault;
    if (fault) {
      this.faultTimer = setTimeout(() => {
        if (fault === 'uncaught-exception') throw new Error('injected fault: uncaught exception');
        void Promise.reject(new Error('injected fault: unhandled rejection'));
      }, 300);
    }
    const pauseMs = this.options.procConnectorPauseMs;
    if (pauseMs) {
      this.connector.setPaused(true);
      this.resumeConnector = setTimeout(() => this.connector?.setPaused(false), pauseMs);
    }
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
  private faultTimer: NodeJS.Timeout | null = null;
  private resumeConnector: NodeJS.Timeout | null = null;
  private lastOverflowWarningMs = -Infinity;

  /**
   * The proc connector overflowed (ENOBUFS): fork/exit events are gone. Every process that is alive and
   * traced now (cgroup.procs in run mode, the kernel's traced set otherwise) goes into the tree if it is
   * not there yet; exits still come from the kernel's records. Warns at most once a second.
   */
  private rebuildTree(): void {
    const live = this.options.liveProcesses ?? { source: "the kernel's traced set", pids: () => this.tracer.tracedPids() };
    const alive: Array<{ pid: number; ppid: number; comm: string; argv: string[] }> = [];
    for (const pid of live.pids()) {
      const status = readStatus(pid);
      if (status) alive.push({ pid, ppid: status.ppid, comm: status.name, argv: readArgv(pid) });
    }
    const added = this.collector.tree.rebuild(alive, monotonicNs());
    const now = Date.now();
    if (now - this.lastOverflowWarningMs < 1000) return;
    this.lastOverflowWarningMs = now;
    this.options.log(
      `proctap: warning: proc connector overflow (ENOBUFS, ${this.collector.connectorOverflows} so far): process events were lost; ` +
        `process tree rebuilt from ${live.source} and /proc (${added.length} added)`,
    );
  }

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
      if (this.options.retransmits !== false) collector.onRetransmits(cookie, tracer.takeRetransmits(cookie));
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
    if (this.resumeConnector) clearTimeout(this.resumeConnector);
    this.connector?.close();
    this.connector = null;
    if (this.options.retransmits !== false) for (const [cookie, n] of tracer.dumpRetransmits()) collector.onRetransmits(cookie, n);
    const packets = tracer.dumpPackets();
    const stats = tracer.readStats();
    for (const flow of collector.flows.list()) collector.tree.ensure(flow.key.tgid, flow.key.startTime);
    for (const owner of packets.keys()) {
      const [pid, startTime] = owner.split('/');
      if (Number(pid)) collector.tree.ensure(Number(pid), BigInt(startTime));
    }

    const lost = lostCounters(stats, collector.connectorOverflows);
    const lostLine = lostRecordsWarning(lost);
    if (lostLine) this.options.log(lostLine);
    const captureSummary = this.live ? await this.closeLiveCapture() : this.closeCapture(stats);
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
      retransmits: tracer.retransmitsUnavailable === null && this.options.retransmits !== false ? collector.retransmits : undefined,
      packets,
      lost,
      notes: [...(context.notes ?? []), ...this.notes(lost)],
    });
    if (captureSummary) report.capture = captureSummary;
    if (this.options.dnsNames !== false) addRemoteNames(report, collector.names, context.originNs);
    addStatistics(report, collector.flows.list(), context, this.options.intervalMs, this.options.seriesIntervalMs);
    return report;
  }

  private async closeLiveCapture(): Promise<CaptureSummary | undefined> {
    const live = this.live;
    const options = this.options.capture;
    if (!live || !options) return undefined;
    this.live = null;
    const results = await live.run.stop();
    const written = results.reduce((a, r) => a + r.written, 0);
    const dropped = results.reduce((a, r) => a + r.dropped + r.ifDropped, 0);
    const where = options.path === '-' ? 'standard output' : options.path;
    const failed = live.error ? ` (incomplete: ${live.error.message})` : '';
    this.options.log(`proctap: ${written} packets written to ${where}${failed}, ${dropped} dropped (libpcap on ${live.devices.map((d) => d.name).join(', ')})`);
    return {
      source: 'libpcap',
      interfaces: live.devices.map((d) => d.name),
      path: options.path,
      format: options.format,
      snaplen: options.snaplen,
      filter: options.filter?.expression ?? null,
      packets: written,
      dropped,
      filteredOut: 0,
      unowned: live.unowned,
    };
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
    if (this.tracer.retransmitsUnavailable !== null)
      notes.push(`TCP retransmits not counted: tcp:tcp_retransmit_skb could not be attached (${this.tracer.retransmitsUnavailable}).`);
    if (collector.names.cut > 0)
      notes.push(`${collector.names.cut} DNS response(s) were longer than the kernel copies (1024 bytes): names in their later answers may be missing.`);
    if (collector.tree.list().some((p) => p.source === 'flow'))
      notes.push('Some processes are known only from their traffic (their fork record was lost).');
    if (lost.procConnectorOverflows > 0)
      notes.push('The proc connector overflowed: the process tree was rebuilt from the live processes (those that started and ended unseen in between may be missing).');
    return notes;
  }

  /** Teardown on every path: idempotent. Links go with the object. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.faultTimer) clearTimeout(this.faultTimer);
    this.stopDisplay();
    if (this.ringRunning) await this.tracer.stop().catch(() => {});
    if (this.resumeConnector) clearTimeout(this.resumeConnector);
    this.connector?.close();
    this.capture?.close(0);
    this.live?.run.close();
    this.live = null;
    this.tracer.close();
  }
}

export function captureInterfaceName(cgroupDir: string): string {
  return `cgroup ${path.basename(cgroupDir)}`;
}
