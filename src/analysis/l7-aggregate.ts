// SPDX-License-Identifier: MIT
// Exchanges folded into summaries per (process, endpoint, protocol, role, operation, status): counts,
// bytes, errors, latency quantiles. HTTP, gRPC, DNS and TLS rows are split by status (GET /x 200 and
// GET /x 404 are two rows); Redis and PostgreSQL rows by command only (their errors are counted in the
// row). Bounded: at most maxKeys rows are kept as they come, later keys go to one "(other)" row per
// protocol; the summary shows the `top` busiest rows and folds the rest into those "(other)" rows.
// Totals (count, bytes, errors) stay exact whatever was folded.
import { DEFAULT_EXACT_CAP, LatencyStats, type LatencySummary } from './l7-latency';
import type { Exchange, ExchangeProtocol, Role } from '../l7/types';

export interface L7Record {
  pid: number;
  /** The remote end as the report names it ("api.test:443", "127.0.0.1:5432"). */
  endpoint: string;
  /** Identifies the connection within the process (for bursts on one connection); optional. */
  connection?: string | number | bigint;
  exchange: Exchange;
}

export interface L7SummaryRow {
  /** null on an "(other)" row. */
  pid: number | null;
  endpoint: string;
  protocol: ExchangeProtocol;
  role: Role | null;
  operation: string;
  status: string;
  count: number;
  errors: number;
  /** Exchanges with a part not seen (Exchange.partial). */
  partial: number;
  /** Exchanges decoded from TLS plaintext. */
  tls: number;
  requestBytes: number;
  responseBytes: number;
  /** Request first byte → response first byte, and → last byte. */
  latencyFirst: LatencySummary | null;
  latencyLast: LatencySummary | null;
  /** An "(other)" row: `folded` rows went into it. */
  other: boolean;
  folded: number;
}

export interface L7Summary {
  rows: L7SummaryRow[];
  /** Exchanges added (every row's count summed). */
  exchanges: number;
  /** Keys that did not get a row of their own (at add time or in the summary). */
  foldedKeys: number;
}

export interface AggregatorOptions {
  /** Rows kept as they come (default 2000). */
  maxKeys?: number;
  /** Rows shown in a summary, the rest folded (default 100). */
  top?: number;
  /** Latencies kept exactly per row before the sketch (default 512). */
  exactLatencies?: number;
  /** Request start times kept per row for periodic patterns (default 256). */
  times?: number;
  /** Exchanges kept per process for N+1 patterns, the most recent (default 4096). */
  trail?: number;
  /** Processes with a trail (default 256). */
  trailProcesses?: number;
}

/** What the pattern rules look at. */
export interface TrailEntry {
  role: Role;
  protocol: ExchangeProtocol;
  operation: string;
  endpoint: string;
  connection: string | number | bigint | null;
  startNs: number;
  endNs: number;
}

export interface L7Evidence {
  rows: Array<L7SummaryRow & { startTimesMs: number[] }>;
  /** Per process: its most recent exchanges, in the order they were added. */
  trails: Map<number, TrailEntry[]>;
}

/** Folded keys are counted exactly up to this many times maxKeys (a set of their names), then each add of
 *  an unseen key counts one (an upper bound). */
const FOLDED_KEYS_EXACT = 16;

/** Rows looked at by field before the key is made. */
const RECENT_ROWS = 8;

const STATUS_KEYED = new Set<ExchangeProtocol>(['http1', 'http2', 'grpc', 'dns', 'tls']);

class Row {
  count = 0;
  errors = 0;
  partial = 0;
  tls = 0;
  requestBytes = 0;
  responseBytes = 0;
  folded = 0;
  readonly first: LatencyStats;
  readonly last: LatencyStats;
  readonly times: number[] = [];

  constructor(
    readonly pid: number | null,
    readonly endpoint: string,
    readonly protocol: ExchangeProtocol,
    readonly role: Role | null,
    readonly operation: string,
    readonly status: string,
    exactCap: number,
    private readonly timesCap: number,
  ) {
    this.first = new LatencyStats(exactCap);
    this.last = new LatencyStats(exactCap);
  }

  add(x: Exchange): void {
    this.count++;
    if (x.error) this.errors++;
    if (x.partial) this.partial++;
    if (x.tls) this.tls++;
    this.requestBytes += x.requestBytes;
    this.responseBytes += x.responseBytes;
    if (x.latencyFirstNs !== null) this.first.add(x.latencyFirstNs);
    if (x.latencyLastNs !== null) this.last.add(x.latencyLastNs);
    const t = x.requestStartNs ?? x.responseStartNs;
    if (t !== null && this.times.length < this.timesCap) this.times.push(t / 1e6);
  }

  merge(o: Row): void {
    this.count += o.count;
    this.errors += o.errors;
    this.partial += o.partial;
    this.tls += o.tls;
    this.requestBytes += o.requestBytes;
    this.responseBytes += o.responseBytes;
    this.first.merge(o.first);
    this.last.merge(o.last);
    this.folded += 1 + o.folded;
  }

  view(other: boolean): L7SummaryRow {
    return {
      pid: this.pid, endpoint: this.endpoint, protocol: this.protocol, role: this.role, operation: this.operation, status: this.status,
      count: this.count, errors: this.errors, partial: this.partial, tls: this.tls, requestBytes: this.requestBytes, responseBytes: this.responseBytes,
      latencyFirst: this.first.summary(), latencyLast: this.last.summary(), other, folded: this.folded,
    };
  }
}

export class L7Aggregator {
  private readonly rows = new Map<string, Row>();
  private readonly others = new Map<ExchangeProtocol, Row>();
  private readonly trails = new Map<number, TrailEntry[]>();
  private readonly o: Required<AggregatorOptions>;
  private exchanges = 0;
  /** Rows of their own (not "(other)") added to lately, most recent first. */
  private readonly recent: Row[] = [];
  /** Distinct keys folded at add time, per protocol (a bounded set, then a count of adds past it). */
  private readonly foldedAtAdd = new Map<ExchangeProtocol, { keys: Set<string>; overflow: number }>();

  constructor(options: AggregatorOptions = {}) {
    this.o = {
      maxKeys: options.maxKeys ?? 2000,
      top: options.top ?? 100,
      exactLatencies: options.exactLatencies ?? DEFAULT_EXACT_CAP,
      times: options.times ?? 256,
      trail: options.trail ?? 4096,
      trailProcesses: options.trailProcesses ?? 256,
    };
  }

  add(r: L7Record): void {
    const x = r.exchange;
    this.exchanges++;
    const status = STATUS_KEYED.has(x.protocol) ? x.status : '';
    let row = this.recentRow(r.pid, r.endpoint, x, status);
    if (row) {
      row.add(x);
      this.trail(r);
      return;
    }
    const key = `${r.pid}\u0000${r.endpoint}\u0000${x.protocol}\u0000${x.role}\u0000${x.operation}\u0000${status}`;
    row = this.rows.get(key) ?? null;
    if (row) this.remember(row);
    else {
      if (this.rows.size >= this.o.maxKeys) {
        row = this.other(x.protocol);
        let f = this.foldedAtAdd.get(x.protocol);
        if (!f) this.foldedAtAdd.set(x.protocol, (f = { keys: new Set(), overflow: 0 }));
        if (f.keys.size < FOLDED_KEYS_EXACT * this.o.maxKeys) f.keys.add(key);
        else if (!f.keys.has(key)) f.overflow++;
      } else {
        row = new Row(r.pid, r.endpoint, x.protocol, x.role, x.operation, status, this.o.exactLatencies, this.o.times);
        this.rows.set(key, row);
        this.remember(row);
      }
    }
    row.add(x);
    this.trail(r);
  }

  summary(): L7Summary {
    return { rows: this.evidence().rows.map(({ startTimesMs: _, ...row }) => row), exchanges: this.exchanges, foldedKeys: this.foldedCount() };
  }

  /** Rows (with their kept start times) and trails, for the pattern rules. */
  evidence(): L7Evidence {
    const sorted = [...this.rows.values()].sort((a, b) => b.count - a.count || a.operation.localeCompare(b.operation));
    const kept = sorted.slice(0, this.o.top);
    const others = new Map<ExchangeProtocol, Row>();
    for (const [p, row] of this.others) others.set(p, this.copyOther(row));
    for (const row of sorted.slice(this.o.top)) {
      let o = others.get(row.protocol);
      if (!o) others.set(row.protocol, (o = this.newOther(row.protocol)));
      o.merge(row);
    }
    const rows = [
      ...kept.map((r) => ({ ...r.view(false), startTimesMs: [...r.times] })),
      ...[...others.values()].map((r) => ({ ...r.view(true), startTimesMs: [] })),
    ];
    return { rows, trails: new Map([...this.trails].map(([pid, t]) => [pid, t.slice(-this.o.trail)])) };
  }

  /** The row of the key among the last rows added to (most exchanges repeat one of a few): found by
   *  comparing its fields, without making the key string. */
  private recentRow(pid: number, endpoint: string, x: Exchange, status: string): Row | null {
    const recent = this.recent;
    for (let i = 0; i < recent.length; i++) {
      const row = recent[i];
      if (row.pid === pid && row.operation === x.operation && row.status === status && row.endpoint === endpoint && row.protocol === x.protocol && row.role === x.role) {
        if (i > 0) {
          recent.copyWithin(1, 0, i);
          recent[0] = row;
        }
        return row;
      }
    }
    return null;
  }

  private remember(row: Row): void {
    if (this.recent.length < RECENT_ROWS) this.recent.push(row);
    this.recent.copyWithin(1, 0, this.recent.length - 1);
    this.recent[0] = row;
  }

  private foldedCount(): number {
    let n = Math.max(0, this.rows.size - this.o.top);
    for (const f of this.foldedAtAdd.values()) n += f.keys.size + f.overflow;
    return n;
  }

  private other(protocol: ExchangeProtocol): Row {
    let o = this.others.get(protocol);
    if (!o) this.others.set(protocol, (o = this.newOther(protocol)));
    return o;
  }

  private newOther(protocol: ExchangeProtocol): Row {
    return new Row(null, '*', protocol, null, '(other)', '', this.o.exactLatencies, 0);
  }

  private copyOther(row: Row): Row {
    const c = this.newOther(row.protocol);
    c.merge(row);
    const f = this.foldedAtAdd.get(row.protocol);
    c.folded = f ? f.keys.size + f.overflow : 0;
    return c;
  }

  private trail(r: L7Record): void {
    const x = r.exchange;
    const startNs = x.requestStartNs ?? x.responseStartNs;
    const endNs = x.responseEndNs ?? x.requestEndNs ?? startNs;
    if (startNs === null || endNs === null) return;
    let t = this.trails.get(r.pid);
    if (!t) {
      if (this.trails.size >= this.o.trailProcesses) return;
      this.trails.set(r.pid, (t = []));
    }
    t.push({ role: x.role, protocol: x.protocol, operation: x.operation, endpoint: r.endpoint, connection: r.connection ?? null, startNs, endNs });
    if (t.length >= 2 * this.o.trail) t.splice(0, t.length - this.o.trail);
  }
}
