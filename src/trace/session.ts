// SPDX-License-Identifier: MIT
// The trace session: what `run` and `attach` share. It loads the probes, routes every decoded record to
// the model and then to the outputs that want it (capture, event stream), follows the proc connector,
// and at the end reads the kernel's last counters. The callers own what differs: how the traced
// processes come to be (a gated launch, or existing targets), when the trace ends, and the facts of
// their mode that go into the report.
import * as path from 'node:path';
import { loadNative, type ProcConnector } from '../native';
import { forEachRecord, type TraceRecord } from '../kernel/records';
import { decodeProcEvents } from '../kernel/proc-events';
import { TraceModel } from '../model/model';
import { DEFAULT_MAX_DECODERS, type L7Endpoint, type L7Event } from '../model/l7';
import { L7Aggregator } from '../analysis/l7-aggregate';
import { L7MetricsCounter } from '../metrics/l7';
import { ephemeralPortRange } from '../proc/ports';
import type { ReportInputs } from '../report/assemble';
import { lostCounters } from '../report/lost';
import { traceNotes } from '../report/notes';
import { startTraceDisplay } from '../render/live-view';
import { lostRecordsWarning } from '../render/warnings';
import type { Backend } from '../schema/report';
import { startEbpfCapture, startLibpcapCapture, type CaptureRequest, type LibpcapDevice, type TraceCapture } from './capture';
import { OutputFailures } from './outputs';
import { Probes, type ProbeConfig } from './probes';
import { TreeRebuilder, type TracedNow } from './rebuild';
import { TitleReader } from './titles';
import { outerNetnsPaths } from '../proc/procfs';
import { armFault, type TestHooks } from './test-hooks';
import { monotonicNs } from './rebuild';
import { TlsHooks } from '../tls/hooks';
import { tlsNotes } from '../tls/notes';
import { ContainerTracker } from './containers';

export { monotonicNs } from './rebuild';

/** The proc connector's receive queue (fork storms outrun a default-sized one) and its batches in flight. */
export const PROC_CONNECTOR_OPTIONS = { receiveBufferBytes: 4 << 20, maxQueuedBatches: 64 };

export interface SessionOptions {
  backend: Backend | 'auto';
  intervalMs: number;
  ringBufferBytes: number;
  version: string;
  /** Follow children forked by traced processes. */
  followChildren: boolean;
  /** Count packets of untraced sockets in the hooked cgroup as unattributed (a cgroup of our own). */
  countUnownedPackets: boolean;
  /** attach --comm / --cgroup: processes that start matching are traced too. */
  match?: ProbeConfig['match'];
  capture?: CaptureRequest;
  detailCalls?: boolean;
  /** Remote names from the DNS answers traced processes receive (default on). */
  dnsNames?: boolean;
  /** TCP retransmits per connection (default on). */
  retransmits?: boolean;
  /** TLS plaintext from uprobes on the traced processes' TLS libraries (default on). */
  tlsPlaintext?: boolean;
  /** --l7: the first `snaplen` bytes of each call of candidate flows (RECORD_DATA) and TLS plaintext,
   *  decoded into exchanges (model/l7.ts); fromStart false (attach): sockets from before the trace are
   *  decoded as seen mid-stream. Absent: off. */
  l7?: { snaplen: number; fromStart?: boolean; maxDecoders?: number; /** L7 counters for --metrics (default on). */ metrics?: boolean };
  /** --events: each decoded exchange as it is decoded. */
  onExchange?: (event: L7Event) => void;
  /** The event stream: every record as it arrives; then after every ring-buffer batch (it flushes there). */
  onRecord?: (record: TraceRecord) => void;
  onBatchEnd?: () => void;
  log: (line: string) => void;
  /** Time-series bucket width; default chosen from the trace length. */
  seriesIntervalMs?: number;
  /** Processes that should be in the tree now, for a rebuild after lost proc connector events: run mode
   *  reads its cgroup's cgroup.procs; by default, the kernel's traced set. */
  tracedNow?: TracedNow;
  /** While tracing: a status line on a terminal's stderr, or with `live` a refreshing top-like view. */
  display?: { live: boolean; intervalMs: number };
  testHooks?: TestHooks;
  /** Names each process's container (default: a tracker of its own; the event stream shares the caller's). */
  containers?: ContainerTracker;
  /** Once consuming has started (--metrics reads the session from then on). */
  onStarted?: (session: TraceSession) => void;
  /** --keep-connections / --keep-processes: each retention pool's cap (model/retention.ts). */
  keepConnections?: number;
  keepProcesses?: number;
  /** net.ipv4.ip_local_port_range, to tell a client's port from a service port. */
  ephemeralRange?: [number, number];
}

/** Endpoint labels remembered for the report's L7 rows (the aggregator keeps at most 2000 rows). */
const L7_ENDPOINT_LABELS = 4096;

/** Finishing taking longer than this prints one line on stderr. */
export const FINISH_NOTICE_MS = 500;

export interface ReportContext {
  mode: 'run' | 'attach';
  command: string[];
  exitCode: number | null;
  startedAt: Date;
  originNs: number;
  durationMs: number;
}

const caps = (n: number | undefined) => (n === undefined ? undefined : { newest: n, largest: n, failed: n });

export class TraceSession {
  readonly model: TraceModel;
  readonly probes: Probes;
  /** Finds and hooks the TLS libraries of traced processes (null with TLS plaintext off). */
  readonly tls: TlsHooks | null;
  /** Output write errors: the first one is kept; `outputs.onFailure` is the caller's stop. */
  readonly outputs = new OutputFailures();
  readonly containers: ContainerTracker;
  private readonly titles: TitleReader;
  /** L7 counters for --metrics, from the first exchange on (null with the L7 view off, or no exporter). */
  l7Metrics: L7MetricsCounter | null = null;
  private l7: { aggregator: L7Aggregator; endpoints: Map<string, L7Endpoint>; snaplen: number; maxDecoders: number } | null = null;
  /** Ring-buffer records seen. */
  records = 0;
  private capture: TraceCapture | null = null;
  private connector: ProcConnector | null = null;
  private ringRunning = false;
  private closed = false;
  private stopDisplay = () => {};
  private disarmFault = () => {};
  private resumeConnector: NodeJS.Timeout | null = null;
  /** Why the proc connector could not be opened (proctap in a network namespace it cannot leave). */
  private connectorUnavailable: string | null = null;

  /** Loads and verifies the programs. */
  constructor(private readonly options: SessionOptions) {
    this.model = new TraceModel({
      keepConnections: caps(options.keepConnections),
      keepProcesses: caps(options.keepProcesses),
      seriesIntervalMs: options.seriesIntervalMs,
      ephemeralRange: options.ephemeralRange ?? ephemeralPortRange(),
    });
    this.model.countRetransmits = options.retransmits !== false;
    this.titles = new TitleReader(this.model.tree);
    this.probes = Probes.open({
      backend: options.backend,
      intervalMs: options.intervalMs,
      detailCalls: options.detailCalls ?? false,
      countUnownedPackets: options.countUnownedPackets,
      followChildren: options.followChildren,
      ringBufferBytes: options.ringBufferBytes,
      capture: options.capture?.kind === 'ebpf' ? { snaplen: options.capture.snaplen } : undefined,
      match: options.match,
      dnsNames: options.dnsNames,
      retransmits: options.retransmits,
      tlsPlaintext: options.tlsPlaintext,
      l7Data: options.l7 ? { snaplen: options.l7.snaplen } : undefined,
    });
    if (options.l7) this.enableL7(options.l7, options.onExchange);
    this.tls = options.tlsPlaintext === false ? null : new TlsHooks(this.probes, options.log);
    this.containers = options.containers ?? new ContainerTracker();
  }

  /** The L7 view: the model decodes, exchanges are summarised here (analysis/ is above the model) and
   *  written to the event stream. Endpoint labels are remembered for the report's fields (bounded). */
  private enableL7(l7: NonNullable<SessionOptions['l7']>, onExchange: SessionOptions['onExchange']): void {
    const aggregator = new L7Aggregator();
    const endpoints = new Map<string, L7Endpoint>();
    const maxDecoders = l7.maxDecoders ?? DEFAULT_MAX_DECODERS;
    const toEvents = this.outputs.guard();
    const counter = l7.metrics === false ? null : (this.l7Metrics = new L7MetricsCounter());
    this.model.enableL7({
      fromStart: l7.fromStart ?? true,
      maxDecoders,
      onExchange: (e) => {
        aggregator.add({ pid: e.pid, endpoint: e.endpoint.label, connection: e.socket, exchange: e.exchange });
        counter?.add(e.exchange);
        if (endpoints.size < L7_ENDPOINT_LABELS && !endpoints.has(e.endpoint.label)) endpoints.set(e.endpoint.label, e.endpoint);
        if (onExchange) toEvents(() => onExchange(e));
      },
    });
    this.l7 = { aggregator, endpoints, snaplen: l7.snaplen, maxDecoders };
  }

  /** Attaches the process and lifecycle tracepoints, and the socket/packet hooks on each cgroup. */
  attach(cgroupDirs: string[]): void {
    this.probes.attachTracing();
    for (const dir of cgroupDirs) this.probes.attachCgroup(dir);
  }

  /** Opens the capture and starts consuming the ring buffer and the proc connector. An eBPF capture
   *  names its interface `captureInterface`; a libpcap capture captures on `libpcapDevices`. */
  start(captureInterface: string, libpcapDevices: LibpcapDevice[] = []): void {
    const { options, model, probes } = this;
    const request = options.capture;
    if (request) {
      const context = {
        userAppl: `proctap ${options.version}`,
        describe: (pid: number, startTime: bigint | null) => model.tree.get(pid, startTime),
        onError: (err: unknown) => this.outputs.fail(err),
        log: options.log,
      };
      this.capture =
        request.kind === 'libpcap'
          ? startLibpcapCapture(request, libpcapDevices, context)
          : startEbpfCapture(request, captureInterface, context, () => probes.packetsFilteredOut());
    }
    const toEvents = this.outputs.guard();
    const { onRecord, onBatchEnd } = options;
    const capture = this.capture;
    const tls = this.tls;
    const titles = this.titles;
    const route = (record: TraceRecord) => {
      model.onRecord(record);
      titles.onRecord(record);
      tls?.onRecord(record);
      this.containers.observe(record, model.tree);
      capture?.onRecord(record);
      if (onRecord) toEvents(() => onRecord(record));
    };
    probes.start(
      (batch) => {
        this.records += forEachRecord(batch, route);
        titles.afterBatch();
        capture?.afterBatch();
        if (onBatchEnd) toEvents(onBatchEnd);
        this.finalizeReleased();
      },
      request?.kind === 'ebpf' ? (request.filter?.program ?? null) : null,
    );
    this.ringRunning = true;
    tls?.start();
    const rebuilder = new TreeRebuilder(model, options.tracedNow ?? { source: "the kernel's traced set", pids: () => probes.tracedPids() }, options.log);
    const hooks = options.testHooks;
    this.connector = this.openConnector(
      (batch) => {
        if (model.onProcEvents(decodeProcEvents(batch)) > 0) rebuilder.rebuild();
      },
      { ...PROC_CONNECTOR_OPTIONS, ...(hooks?.procConnectorBufferBytes ? { receiveBufferBytes: hooks.procConnectorBufferBytes } : {}) },
    );
    this.disarmFault = armFault(hooks);
    if (hooks?.procConnectorPauseMs) {
      this.connector?.setPaused(true);
      this.resumeConnector = setTimeout(() => this.connector?.setPaused(false), hooks.procConnectorPauseMs);
    }
    if (options.display) {
      this.stopDisplay = startTraceDisplay(
        {
          flows: () => model.flows.list(),
          comm: (pid) => model.tree.get(pid)?.comm,
          records: () => this.records,
          lost: () => Object.values(probes.readStats().lostRecords).reduce((a: number, b: number) => a + b, 0),
        },
        options.display,
      );
    }
    options.onStarted?.(this);
  }

  /**
   * The proc connector exists only in the initial network namespace: under `ip netns exec` or `nsenter
   * --net` its socket is made by a thread that joins an outer namespace (init's, else an ancestor's) for
   * that. Where none works, kernel records still say every fork, exec and exit (a note says what is lost).
   */
  private openConnector(onBatch: (batch: ArrayBuffer) => void, options: { receiveBufferBytes: number; maxQueuedBatches: number }): ProcConnector | null {
    try {
      return loadNative().openProcConnector(onBatch, options);
    } catch (err) {
      // ECONNREFUSED to PROC_CN_MCAST_LISTEN: no connector in this namespace. Anything else is a failure.
      if ((err as { code?: string }).code !== 'ECONNREFUSED') throw err;
    }
    const failures: string[] = [];
    for (const netnsPath of outerNetnsPaths()) {
      try {
        return loadNative().openProcConnector(onBatch, { ...options, netnsPath });
      } catch (err) {
        failures.push(`${netnsPath}: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    this.connectorUnavailable = failures.join('; ');
    this.options.log(`proctap: warning: no proc connector in this network namespace, none reachable (${this.connectorUnavailable}): process events from kernel records only`);
    return null;
  }

  /** Reads the last counters of released sockets and drops them from the kernel table; once released
   *  and closed, a socket's retransmits are read and the model retires it (bounded memory). Folded
   *  processes' packet counters are read into their group. */
  private finalizeReleased(): void {
    const { model, probes } = this;
    for (const cookie of model.takeReleased()) {
      for (const flow of model.flows.flowsOfSocket(cookie)) {
        if (flow.final) continue;
        const last = probes.takeFlow(flow.key);
        if (last) model.onFinalFlow(last);
      }
    }
    const settled = model.takeSettled();
    if (this.options.retransmits !== false) for (const cookie of settled) model.onRetransmits(cookie, probes.takeRetransmits(cookie));
    model.retire(settled);
    for (const p of model.takeFoldedProcesses()) {
      const packets = probes.takePackets(p.tgid, p.startTime);
      if (packets) model.addFoldedPackets(p.group, packets);
    }
  }

  /** Drains everything, reads the kernel's final counters, closes the capture: what the report is made
   *  of, for the caller to add its mode's facts to and assemble (report/assemble.ts). */
  async finish(context: ReportContext, progress: FinishProgress = finishProgress(this.options.log)): Promise<ReportInputs> {
    const { model, probes, options } = this;
    this.stopDisplay();
    progress.step('draining the ring buffer');
    await probes.stop();
    this.ringRunning = false;
    progress.step('reading the last counters');
    if (options.testHooks?.finishDelayMs) await new Promise((resolve) => setTimeout(resolve, options.testHooks!.finishDelayMs));
    this.finalizeReleased();
    for (const f of probes.dumpFlows()) model.onFinalFlow(f);
    if (this.resumeConnector) clearTimeout(this.resumeConnector);
    this.connector?.close();
    this.connector = null;
    // exchanges still in flight are given as they are, at the end of the trace
    model.l7?.finish(monotonicNs());
    if (options.retransmits !== false) for (const [cookie, n] of probes.dumpRetransmits()) model.onRetransmits(cookie, n);
    const packets = probes.dumpPackets();
    const stats = probes.readStats();
    this.titles.refreshRunning();
    for (const flow of model.flows.list()) model.tree.ensure(flow.key.tgid, flow.key.startTime);
    const listedPackets = packets.filter((owner) => {
      if (!owner.tgid || model.tree.get(owner.tgid, owner.startTime || null)) return true;
      // a folded process's packets that came after it was folded: to its group
      const group = model.foldedGroupOf(owner.tgid, owner.startTime);
      if (group) model.addFoldedPackets(group, owner.packets);
      return !group;
    });
    for (const owner of listedPackets) if (owner.tgid) model.tree.ensure(owner.tgid, owner.startTime);

    const lost = lostCounters(stats, model.connectorOverflows);
    const lostLine = lostRecordsWarning(lost);
    if (lostLine) options.log(lostLine);
    const capture = this.capture ? await this.capture.finish(stats) : undefined;
    this.capture = null;
    this.containers.resolveRemaining(model.tree);
    progress.step('assembling the report');
    const summary = model.summary();
    const flows = [...model.flows.list(), ...summary.kept.flatMap((s) => s.flows)];
    const processes = model.tree.list();
    const retransmits = new Map(model.retransmits);
    for (const s of summary.kept) if (s.retransmits !== undefined) retransmits.set(s.cookie, s.retransmits);
    const keptConnections = summary.kept.flatMap((s) => (s.connection ? [s.connection] : []));
    return {
      version: options.version,
      ...context,
      backend: probes.backend,
      processes,
      flows,
      connections: [...model.connections.list(), ...keptConnections],
      retransmits: probes.retransmitsUnavailable === null && options.retransmits !== false ? retransmits : undefined,
      packets: listedPackets,
      summary,
      lost,
      notes: [
        ...traceNotes({ flows, processes, lost, retransmitsUnavailable: probes.retransmitsUnavailable, dnsResponsesCut: model.names.cut, connectorUnavailable: this.connectorUnavailable }),
        ...(this.tls ? tlsNotes(this.tls.facts(context.mode, options.capture)) : []),
      ],
      ...(capture ? { capture } : {}),
      ...(options.dnsNames !== false ? { names: model.names } : {}),
      statistics: { flowIntervalMs: options.intervalMs, seriesIntervalMs: options.seriesIntervalMs },
      ...(this.l7 && model.l7
        ? { l7: { snaplen: this.l7.snaplen, summary: this.l7.aggregator.summary(), evidence: this.l7.aggregator.evidence(), counts: model.l7.counts, endpoints: this.l7.endpoints, maxDecoders: this.l7.maxDecoders } }
        : {}),
    };
  }

  /** Teardown on every path: idempotent. Links go with the object. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.disarmFault();
    this.stopDisplay();
    this.tls?.close();
    if (this.ringRunning) await this.probes.stop().catch(() => {});
    if (this.resumeConnector) clearTimeout(this.resumeConnector);
    this.connector?.close();
    this.capture?.close();
    this.capture = null;
    this.probes.close();
  }
}

export type FinishProgress = ReturnType<typeof finishProgress>;

/** One line on stderr once finishing has taken FINISH_NOTICE_MS, naming the step it is at; checked at
 *  each step (the work between them is synchronous) and by a timer (for the waits). */
export function finishProgress(log: (line: string) => void, now: () => number = () => performance.now(), noticeMs = FINISH_NOTICE_MS) {
  const t0 = now();
  let current = 'finishing';
  let said = false;
  const say = () => {
    if (said) return;
    said = true;
    log(`proctap: finishing the report (${current})…`);
  };
  const timer = setTimeout(say, noticeMs);
  timer.unref();
  return {
    step(what: string): void {
      if (!said && now() - t0 >= noticeMs) say();
      current = what;
    },
    done(): void {
      clearTimeout(timer);
      if (!said && now() - t0 >= noticeMs) say();
    },
    get said(): boolean {
      return said;
    },
  };
}

export function captureInterfaceName(cgroupDir: string): string {
  return `cgroup ${path.basename(cgroupDir)}`;
}
