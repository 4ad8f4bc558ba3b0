// SPDX-License-Identifier: MIT
// Bytes over time, accumulated as flow samples arrive (so no flow has to keep its samples for the
// report): each sample's increase goes to the bucket of its time, in base buckets of 10^k ms that are
// made 10 times wider whenever the trace outgrows MAX_BASE_BUCKETS of them. Every width the report may
// choose (1, 2 or 5 × 10^k ms for 48–150 buckets, analysis/timeseries.ts) is a multiple of the base, so
// re-bucketing at the end is exact. A fixed --interval is the base itself and never widened.
// Also when each process and service endpoint was seen and in which buckets it moved bytes.
import { serviceKey, type ServiceEndpoint } from './service';

export const MIN_BASE_MS = 10;
export const MAX_BASE_BUCKETS = 1200;

interface Seen {
  firstNs: number;
  lastNs: number;
  /** Base buckets in which bytes or calls were recorded. */
  active: Set<number>;
}

interface ProcessSeries {
  pid: number;
  startTime: bigint;
  /** base bucket -> [tx, rx] */
  buckets: Map<number, [number, number]>;
}

export interface TimelineResult {
  intervalMs: number;
  tx: number[];
  rx: number[];
  perProcess: Array<{ pid: number; startTime: bigint; tx: number[]; rx: number[] }>;
  processes: Array<{ pid: number; firstMs: number; lastMs: number; activeMs: number }>;
  endpoints: Array<{ endpoint: ServiceEndpoint; firstMs: number; lastMs: number; activeMs: number }>;
}

export class Timeline {
  private originNs: number | null = null;
  private baseMs: number;
  private readonly fixed: boolean;
  private tx: number[] = [];
  private rx: number[] = [];
  private readonly perProcess = new Map<string, ProcessSeries>();
  private readonly processSeen = new Map<number, Seen>();
  private readonly endpointSeen = new Map<string, Seen & { endpoint: ServiceEndpoint }>();

  constructor(fixedIntervalMs?: number) {
    this.fixed = fixedIntervalMs !== undefined;
    this.baseMs = fixedIntervalMs ?? MIN_BASE_MS;
  }

  /** The trace's origin (CLOCK_MONOTONIC ns). Until it is set, the first time seen stands for it. */
  setOrigin(ns: number): void {
    this.originNs = ns;
  }

  get origin(): number | null {
    return this.originNs;
  }

  private index(tsNs: number): number {
    if (this.originNs === null) this.originNs = tsNs;
    const ms = Math.max(0, (tsNs - this.originNs) / 1e6);
    let i = Math.floor(ms / this.baseMs);
    while (!this.fixed && i >= MAX_BASE_BUCKETS) {
      this.widen();
      i = Math.floor(ms / this.baseMs);
    }
    return i;
  }

  /** Base buckets 10 times wider: every index i becomes floor(i / 10). */
  private widen(): void {
    this.baseMs *= 10;
    const fold = (a: number[]) => {
      const out: number[] = [];
      a.forEach((v, i) => (out[Math.floor(i / 10)] = (out[Math.floor(i / 10)] ?? 0) + (v ?? 0)));
      return out;
    };
    this.tx = fold(this.tx);
    this.rx = fold(this.rx);
    for (const p of this.perProcess.values()) {
      const next = new Map<number, [number, number]>();
      for (const [i, [t, r]] of p.buckets) {
        const j = Math.floor(i / 10);
        const cell = next.get(j);
        if (cell) {
          cell[0] += t;
          cell[1] += r;
        } else next.set(j, [t, r]);
      }
      p.buckets = next;
    }
    for (const s of [...this.processSeen.values(), ...this.endpointSeen.values()]) s.active = new Set([...s.active].map((i) => Math.floor(i / 10)));
  }

  private seen(pid: number, endpoint: ServiceEndpoint, tsNs: number): [Seen, Seen] {
    let p = this.processSeen.get(pid);
    if (!p) this.processSeen.set(pid, (p = { firstNs: tsNs, lastNs: tsNs, active: new Set() }));
    const key = serviceKey(endpoint);
    let e = this.endpointSeen.get(key);
    if (!e) this.endpointSeen.set(key, (e = { endpoint, firstNs: tsNs, lastNs: tsNs, active: new Set() }));
    for (const s of [p, e]) {
      if (tsNs < s.firstNs) s.firstNs = tsNs;
      if (tsNs > s.lastNs) s.lastNs = tsNs;
    }
    return [p, e];
  }

  /** A flow started or ended at tsNs (first/last seen, no bytes). */
  mark(pid: number, endpoint: ServiceEndpoint, tsNs: number): void {
    this.seen(pid, endpoint, tsNs);
  }

  /** The increase of a flow's counters at a sample (or at its final read, at its last I/O). */
  add(tsNs: number, pid: number, startTime: bigint, endpoint: ServiceEndpoint, tx: number, rx: number, calls: number): void {
    const [p, e] = this.seen(pid, endpoint, tsNs);
    if (tx + rx + calls === 0) return;
    const i = this.index(tsNs);
    p.active.add(i);
    e.active.add(i);
    if (tx + rx === 0) return;
    this.tx[i] = (this.tx[i] ?? 0) + tx;
    this.rx[i] = (this.rx[i] ?? 0) + rx;
    const id = `${pid}/${startTime}`;
    let s = this.perProcess.get(id);
    if (!s) this.perProcess.set(id, (s = { pid, startTime, buckets: new Map() }));
    const cell = s.buckets.get(i);
    if (cell) {
      cell[0] += tx;
      cell[1] += rx;
    } else s.buckets.set(i, [tx, rx]);
  }

  /** A process folded away: its own series and activity are dropped (its bytes stay in the totals). */
  dropProcess(pid: number, startTime: bigint | null): void {
    this.perProcess.delete(`${pid}/${startTime ?? 0n}`);
    this.processSeen.delete(pid);
  }

  /** The series in buckets of `intervalMs` (a multiple of the base, see above) over `durationMs`. */
  result(durationMs: number, intervalMs: number): TimelineResult {
    const n = Math.max(1, Math.ceil(Math.max(0, durationMs) / intervalMs));
    const at = (i: number) => Math.min(n - 1, Math.floor((i * this.baseMs) / intervalMs + 1e-9));
    const tx = new Array<number>(n).fill(0);
    const rx = new Array<number>(n).fill(0);
    this.tx.forEach((v, i) => v && (tx[at(i)] += v));
    this.rx.forEach((v, i) => v && (rx[at(i)] += v));
    const perProcess = [...this.perProcess.values()].map((s) => {
      const t = new Array<number>(n).fill(0);
      const r = new Array<number>(n).fill(0);
      for (const [i, [a, b]] of s.buckets) {
        t[at(i)] += a;
        r[at(i)] += b;
      }
      return { pid: s.pid, startTime: s.startTime, tx: t, rx: r };
    });
    const origin = this.originNs ?? 0;
    const ms = (ns: number) => Math.max(0, (ns - origin) / 1e6);
    const activeMs = (s: Seen) => new Set([...s.active].map(at)).size * intervalMs;
    return {
      intervalMs,
      tx,
      rx,
      perProcess,
      processes: [...this.processSeen.entries()].map(([pid, s]) => ({ pid, firstMs: ms(s.firstNs), lastMs: ms(s.lastNs), activeMs: activeMs(s) })),
      endpoints: [...this.endpointSeen.values()].map((s) => ({ endpoint: s.endpoint, firstMs: ms(s.firstNs), lastMs: ms(s.lastNs), activeMs: activeMs(s) })),
    };
  }

  /** Base bucket width now (ms). */
  get baseIntervalMs(): number {
    return this.baseMs;
  }
}
