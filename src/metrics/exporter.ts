// SPDX-License-Identifier: MIT
// The Prometheus exposition of a MetricsSource, made by prom-client: one snapshot per scrape, turned
// into counters that only ever go up (top-N bounded, topn.ts), plus prom-client's standard process
// metrics (process_cpu_seconds_total, process_resident_memory_bytes, ...: proctap's own cost).
import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { L7Totals, MetricsSnapshot, MetricsSource, TrafficTotals } from './source';
import { TopN } from './topn';

export const DEFAULT_METRICS_TOP = 20;

/** A prom-client Counter fed with cumulative values: increments by the difference (never negative). */
class CumulativeCounter<L extends string> {
  private readonly last = new Map<string, number>();
  constructor(readonly counter: Counter<L>) {}

  set(labels: Partial<Record<L, string>>, value: number): void {
    const id = JSON.stringify(labels);
    const before = this.last.get(id);
    if (before !== undefined && value <= before) return;
    this.counter.inc(labels, before === undefined ? value : value - before);
    this.last.set(id, value);
  }

  remove(labels: Partial<Record<L, string>>): void {
    this.last.delete(JSON.stringify(labels));
    this.counter.remove(labels);
  }
}

const PROTOS = ['tcp', 'udp'] as const;
const DIRECTIONS = ['tx', 'rx'] as const;
/** Columns of a process's TopN entry; a remote has the first four of one protocol. */
const bytesAndCalls = (t: TrafficTotals) => [t.txBytes, t.rxBytes, t.txCalls, t.rxCalls];

/** A histogram whose buckets are counted elsewhere (the L7 layer): prom-client formats it. */
function externalHistogram(name: string, help: string, read: () => L7Totals['latency']): Metric {
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    get: async () => ({
      name,
      help,
      type: 'histogram',
      aggregator: 'sum',
      values: read().flatMap((h) => [
        ...h.bounds.map((le, i) => ({ metricName: `${name}_bucket`, labels: { protocol: h.protocol, le }, value: h.counts[i] })),
        { metricName: `${name}_bucket`, labels: { protocol: h.protocol, le: '+Inf' }, value: h.count },
        { metricName: `${name}_sum`, labels: { protocol: h.protocol }, value: h.sum },
        { metricName: `${name}_count`, labels: { protocol: h.protocol }, value: h.count },
      ]),
    }),
  } as unknown as Metric;
}

export interface ExporterOptions {
  top?: number;
  /** prom-client's process_* and nodejs_* metrics (default on). */
  processMetrics?: boolean;
}

export class MetricsExporter {
  readonly registry = new Registry();
  private source: MetricsSource | null = null;
  private readonly processTop: TopN;
  private readonly remoteTop: TopN;
  private l7Latency: L7Totals['latency'] = [];
  private readonly info = new Gauge({ name: 'proctap_info', help: 'proctap: version, mode and socket I/O backend of this trace', labelNames: ['version', 'mode', 'backend'], registers: [this.registry] });

  private readonly counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new CumulativeCounter<L>(new Counter<L>({ name, help, labelNames, registers: [this.registry] }));

  private readonly bytes = this.counter('proctap_bytes_total', 'Payload bytes the traced processes sent (tx) and received (rx), as their calls returned them', ['proto', 'direction']);
  private readonly calls = this.counter('proctap_calls_total', 'Successful send/recv calls of the traced processes', ['proto', 'direction']);
  private readonly processBytes = this.counter('proctap_process_bytes_total', 'Payload bytes per process (top N by bytes; the rest in pid="other")', ['pid', 'comm', 'container', 'proto', 'direction']);
  private readonly processCalls = this.counter('proctap_process_calls_total', 'send/recv calls per process (as proctap_process_bytes_total)', ['pid', 'comm', 'container', 'proto', 'direction']);
  private readonly remoteBytes = this.counter('proctap_remote_bytes_total', 'Payload bytes per remote endpoint (top N by bytes; the rest in remote_addr="other")', ['proto', 'direction', 'remote_addr', 'remote_port']);
  private readonly remoteCalls = this.counter('proctap_remote_calls_total', 'send/recv calls per remote endpoint (as proctap_remote_bytes_total)', ['proto', 'direction', 'remote_addr', 'remote_port']);
  private readonly opened = this.counter('proctap_tcp_connections_total', 'TCP connections the traced processes opened (active) or accepted (passive)', ['role']);
  private readonly ended = this.counter('proctap_tcp_connections_ended_total', 'TCP connections that ended, by how', ['role', 'outcome']);
  private readonly open = new Gauge({ name: 'proctap_tcp_connections_open', help: 'TCP connections open now', labelNames: ['role'], registers: [this.registry] });
  private readonly retransmits = this.counter('proctap_tcp_retransmits_total', 'TCP segments the kernel retransmitted on traced sockets', []);
  private readonly lost = this.counter('proctap_lost_records_total', 'Ring-buffer records the kernel could not hand over (totals stay exact: they come from kernel counters)', ['kind']);
  private readonly records = this.counter('proctap_records_total', 'Ring-buffer records proctap handled', []);
  private readonly l7Requests = this.counter('proctap_l7_requests_total', 'Application-protocol requests (L7 layer)', ['protocol', 'method', 'status']);

  constructor(options: ExporterOptions = {}) {
    const top = options.top ?? DEFAULT_METRICS_TOP;
    this.processTop = new TopN(top, 8);
    this.remoteTop = new TopN(top, 4);
    this.registry.registerMetric(externalHistogram('proctap_l7_request_duration_seconds', 'Application-protocol request latency (L7 layer)', () => this.l7Latency));
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client's nodejs_active_*_total are gauges: `promtool check metrics` refuses the name
      for (const m of this.registry.getMetricsAsArray()) {
        if (m.name.endsWith('_total') && (m as unknown as { type?: string }).type !== 'counter') this.registry.removeSingleMetric(m.name);
      }
    }
  }

  /** From now on scrapes read this source (null: no trace yet, or any more). */
  setSource(source: MetricsSource | null, info?: { version: string; mode: string; backend: string }): void {
    this.source = source;
    if (info) this.info.set(info, 1);
  }

  get ready(): boolean {
    return this.source !== null;
  }

  /** One scrape: reads the source once, updates every counter, returns the text exposition. */
  async scrape(): Promise<string> {
    if (this.source) {
      this.apply(this.source.snapshot());
      if (this.source.l7) this.applyL7(this.source.l7());
    }
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private apply(s: MetricsSnapshot): void {
    for (const proto of PROTOS) {
      const t = s.totals[proto];
      this.bytes.set({ proto, direction: 'tx' }, t.txBytes);
      this.bytes.set({ proto, direction: 'rx' }, t.rxBytes);
      this.calls.set({ proto, direction: 'tx' }, t.txCalls);
      this.calls.set({ proto, direction: 'rx' }, t.rxCalls);
    }

    // a process column order: tcp tx/rx bytes, tcp tx/rx calls, udp tx/rx bytes, udp tx/rx calls
    const processColumns = (tcp: TrafficTotals, udp: TrafficTotals) => [...bytesAndCalls(tcp), ...bytesAndCalls(udp)];
    const processes = this.processTop.update(
      s.processes.map((p) => ({
        key: p.key,
        group: '',
        weight: p.tcp.txBytes + p.tcp.rxBytes + p.udp.txBytes + p.udp.rxBytes,
        values: processColumns(p.tcp, p.udp),
        labels: { pid: String(p.pid), comm: p.comm, container: p.container },
      })),
      new Map([['', processColumns(s.totals.tcp, s.totals.udp)]]),
    );
    const setProcess = (labels: Record<string, string>, v: number[], remove = false) => {
      PROTOS.forEach((proto, p) =>
        DIRECTIONS.forEach((direction, d) => {
          const l = { ...labels, proto, direction };
          if (remove) {
            this.processBytes.remove(l);
            this.processCalls.remove(l);
            return;
          }
          this.processBytes.set(l, v[4 * p + d]);
          this.processCalls.set(l, v[4 * p + 2 + d]);
        }),
      );
    };
    for (const r of processes.removed) setProcess(r.labels, r.values, true);
    for (const r of processes.series) setProcess(r.labels, r.values);
    setProcess({ pid: 'other', comm: 'other', container: '' }, processes.other.get('') ?? new Array(8).fill(0));

    const remotes = this.remoteTop.update(
      s.remotes.map((r) => ({
        key: r.key,
        group: r.proto,
        weight: r.txBytes + r.rxBytes,
        values: bytesAndCalls(r),
        labels: { proto: r.proto, remote_addr: r.remoteAddr, remote_port: String(r.remotePort) },
      })),
      new Map(PROTOS.map((proto) => [proto, bytesAndCalls(s.totals[proto])])),
    );
    const setRemote = (labels: Record<string, string>, v: number[], remove = false) => {
      DIRECTIONS.forEach((direction, d) => {
        const l = { ...labels, direction };
        if (remove) {
          this.remoteBytes.remove(l);
          this.remoteCalls.remove(l);
          return;
        }
        this.remoteBytes.set(l, v[d]);
        this.remoteCalls.set(l, v[2 + d]);
      });
    };
    for (const r of remotes.removed) setRemote(r.labels, r.values, true);
    for (const r of remotes.series) setRemote(r.labels, r.values);
    for (const proto of PROTOS) setRemote({ proto, remote_addr: 'other' }, remotes.other.get(proto) ?? [0, 0, 0, 0]);

    for (const role of ['active', 'passive'] as const) {
      this.opened.set({ role }, s.connections.opened[role]);
      const ended = s.connections.ended.filter((e) => e.role === role).reduce((n, e) => n + e.count, 0);
      this.open.set({ role }, Math.max(0, s.connections.opened[role] - ended));
    }
    for (const e of s.connections.ended) this.ended.set({ role: e.role, outcome: e.outcome }, e.count);
    this.retransmits.set({}, s.retransmits);
    for (const [kind, n] of Object.entries(s.lostRecords)) this.lost.set({ kind }, n);
    this.records.set({}, s.records);
  }

  private applyL7(l7: L7Totals): void {
    for (const r of l7.requests) this.l7Requests.set({ protocol: r.protocol, method: r.method ?? '', status: r.status ?? '' }, r.count);
    this.l7Latency = l7.latency;
  }
}
