// SPDX-License-Identifier: MIT
// A bounded summary of many values (durations in ms, message sizes in bytes): exact count, sum, max and
// fixed-bucket histogram; percentiles exact while at most EXACT_VALUES values were added, then from a
// DDSketch (relative error 1 %). Mergeable, so folded aggregates and kept rows combine.
import { DDSketch } from '@datadog/sketches-js';

/** Upper bounds (ms) of the duration histogram buckets; a last bucket (leMs null) takes the rest. */
export const DURATION_BUCKETS_MS = [1, 10, 100, 1_000, 10_000, 60_000, 600_000];
/** Values kept as they are: below this many, percentiles are exact. */
export const EXACT_VALUES = 1024;
/** DDSketch relative accuracy once more values were added. */
export const SKETCH_ACCURACY = 0.01;

export class Digest {
  count = 0;
  sum = 0;
  max = -Infinity;
  /** Counts per DURATION_BUCKETS_MS bucket (+1 for above all). */
  readonly histogram: number[];
  private values: number[] | null = [];
  private readonly sketch = new DDSketch({ relativeAccuracy: SKETCH_ACCURACY });

  constructor(private readonly bounds: number[] = DURATION_BUCKETS_MS) {
    this.histogram = new Array<number>(bounds.length + 1).fill(0);
  }

  static of(values: number[], bounds?: number[]): Digest {
    const d = new Digest(bounds);
    for (const v of values) d.add(v);
    return d;
  }

  add(v: number): void {
    if (!Number.isFinite(v)) return;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.histogram[i]++;
    // DDSketch needs positive values for its log mapping; zeros are counted apart by it.
    this.sketch.accept(Math.max(0, v));
    if (this.values) {
      this.values.push(v);
      if (this.values.length > EXACT_VALUES) this.values = null;
    }
  }

  merge(other: Digest): void {
    if (other.count === 0) return;
    this.count += other.count;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
    other.histogram.forEach((n, i) => (this.histogram[i] += n));
    this.sketch.merge(other.sketch);
    if (this.values && other.values && this.values.length + other.values.length <= EXACT_VALUES) this.values.push(...other.values);
    else this.values = null;
  }

  /** Percentiles are exact (nearest rank over every value) rather than from the sketch. */
  get exact(): boolean {
    return this.values !== null;
  }

  /** Nearest-rank q-quantile; null when empty. */
  quantile(q: number): number | null {
    if (this.count === 0) return null;
    if (this.values) {
      const sorted = [...this.values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
    }
    // Never above the largest value seen: the sketch's bucket midpoint can be.
    return Math.min(this.max, this.sketch.getValueAtQuantile(q));
  }
}
