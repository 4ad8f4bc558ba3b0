// SPDX-License-Identifier: MIT
// Latency quantiles in bounded memory: exact (nearest rank over the kept values) up to a cap, then a
// log-bucketed sketch with relative accuracy ALPHA (DDSketch, Masson et al., VLDB 2019): a value v
// falls in bucket ceil(log_gamma v), gamma = (1 + ALPHA) / (1 - ALPHA), and a quantile is answered by
// its bucket's representative 2 gamma^i / (gamma + 1), within ALPHA (1 %) of the true value of that
// rank. Buckets are bounded by the value range: 1 ns .. 10^13 ns (2.8 h) is at most ~1500 of them.
// The maximum is always exact.

export const ALPHA = 0.01;
const GAMMA = (1 + ALPHA) / (1 - ALPHA);
const LOG_GAMMA = Math.log(GAMMA);
const MAX_VALUE = 1e13;
export const DEFAULT_EXACT_CAP = 512;

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The quantiles are exact (all values kept); false: from the sketch, within 1 %. */
  exact: boolean;
}

export class LatencyStats {
  count = 0;
  max = 0;
  private values: number[] | null = [];
  private buckets = new Map<number, number>();
  private zeros = 0;

  constructor(private readonly exactCap = DEFAULT_EXACT_CAP) {}

  add(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) return;
    this.count++;
    if (ns > this.max) this.max = ns;
    if (this.values) {
      this.values.push(ns);
      if (this.values.length > this.exactCap) this.toSketch();
    } else this.bucket(ns, 1);
  }

  merge(o: LatencyStats): void {
    if (o.count === 0) return;
    if (this.values && o.values && this.values.length + o.values.length <= this.exactCap) {
      this.values.push(...o.values);
    } else {
      if (this.values) this.toSketch();
      if (o.values) for (const v of o.values) this.bucket(v, 1);
      else {
        for (const [i, n] of o.buckets) this.buckets.set(i, (this.buckets.get(i) ?? 0) + n);
        this.zeros += o.zeros;
      }
    }
    this.count += o.count;
    this.max = Math.max(this.max, o.max);
  }

  /** Nearest-rank quantile (ns): the value of rank ceil(q n). */
  quantile(q: number): number {
    if (this.count === 0) return NaN;
    const rank = Math.max(1, Math.ceil(q * this.count));
    if (this.values) {
      const s = [...this.values].sort((a, b) => a - b);
      return s[rank - 1];
    }
    let seen = this.zeros;
    if (seen >= rank) return 0;
    for (const i of [...this.buckets.keys()].sort((a, b) => a - b)) {
      seen += this.buckets.get(i)!;
      if (seen >= rank) return Math.min(this.max, (2 * GAMMA ** i) / (GAMMA + 1));
    }
    return this.max;
  }

  get exact(): boolean {
    return this.values !== null;
  }

  summary(): LatencySummary | null {
    if (this.count === 0) return null;
    const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
    return { count: this.count, p50Ms: ms(this.quantile(0.5)), p90Ms: ms(this.quantile(0.9)), p99Ms: ms(this.quantile(0.99)), maxMs: ms(this.max), exact: this.exact };
  }

  private toSketch(): void {
    const v = this.values ?? [];
    this.values = null;
    for (const x of v) this.bucket(x, 1);
  }

  private bucket(ns: number, n: number): void {
    if (ns < 1) {
      this.zeros += n;
      return;
    }
    const i = Math.ceil(Math.log(Math.min(ns, MAX_VALUE)) / LOG_GAMMA);
    this.buckets.set(i, (this.buckets.get(i) ?? 0) + n);
  }
}
