// SPDX-License-Identifier: MIT
// Latency quantiles of an L7 row in bounded memory: model/digest.ts (exact nearest rank up to a cap,
// then @datadog/sketches-js's DDSketch within ALPHA), in ns, summarised in ms. The maximum is always exact.
import type { L7LatencyReport } from '../schema/l7';
import { Digest, SKETCH_ACCURACY } from '../model/digest';

export const ALPHA = SKETCH_ACCURACY;
export const DEFAULT_EXACT_CAP = 512;

/** The report's latency shape (schema/l7.ts). */
export type LatencySummary = L7LatencyReport;

export class LatencyStats {
  private readonly digest: Digest;

  constructor(exactCap = DEFAULT_EXACT_CAP) {
    this.digest = new Digest([], exactCap);
  }

  get count(): number {
    return this.digest.count;
  }

  get max(): number {
    return this.digest.count === 0 ? 0 : this.digest.max;
  }

  add(ns: number): void {
    if (!Number.isFinite(ns) || ns < 0) return;
    this.digest.add(ns);
  }

  merge(o: LatencyStats): void {
    this.digest.merge(o.digest);
  }

  /** Nearest-rank quantile (ns): the value of rank ceil(q n); NaN when empty. */
  quantile(q: number): number {
    return this.digest.quantile(q) ?? NaN;
  }

  get exact(): boolean {
    return this.digest.exact;
  }

  summary(): LatencySummary | null {
    if (this.count === 0) return null;
    const ms = (ns: number) => Number((ns / 1e6).toFixed(3));
    return { count: this.count, p50Ms: ms(this.quantile(0.5)), p90Ms: ms(this.quantile(0.9)), p99Ms: ms(this.quantile(0.99)), maxMs: ms(this.max), exact: this.exact };
  }
}
