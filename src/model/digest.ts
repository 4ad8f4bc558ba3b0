// SPDX-License-Identifier: MIT
// A bounded summary of many values (durations in ms, message sizes in bytes): exact count, sum, max and
// fixed-bucket histogram; percentiles exact while at most EXACT_VALUES values were added, then from a
// DDSketch (relative error 1 %). Mergeable, so folded aggregates and kept rows combine.
import { DDSketch } from '@datadog/sketches-js';

/** Upper bounds (ms) of the duration histogram buckets; a last bucket (leMs null) takes the rest. */
export const DURATION_BUCKETS_MS = [1, 10, 100, 1_000, 10_000, 60_000, 600_000];
/** Values kept as they are: up to this many, percentiles are exact. */
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
  /** Made once the values outgrow `exactValues` (most digests of folded groups never need one). */
  private sketch: DDSketch | null = null;

  constructor(
    private readonly bounds: number[] = DURATION_BUCKETS_MS,
    private readonly exactValues = EXACT_VALUES,
  ) {
    this.histogram = new Array<number>(bounds.length + 1).fill(0);
  }

  static of(values: number[], bounds?: number[]): Digest {
    const d = new Digest(bounds);
    for (const v of values) d.add(v);
    return d;
  }

  /** The values go to a sketch from now on. */
  private toSketch(): DDSketch {
    if (!this.sketch) {
      this.sketch = new DDSketch({ relativeAccuracy: SKETCH_ACCURACY });
      // DDSketch maps positive values; zeros it counts apart.
      for (const v of this.values ?? []) this.sketch.accept(Math.max(0, v));
      this.values = null;
    }
    return this.sketch;
  }

  add(v: number): void {
    if (!Number.isFinite(v)) return;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
    let i = 0;
    while (i < this.bounds.length && v > this.bounds[i]) i++;
    this.histogram[i]++;
    if (this.values && this.values.length < this.exactValues) this.values.push(v);
    else this.toSketch().accept(Math.max(0, v));
  }

  merge(other: Digest): void {
    if (other.count === 0) return;
    this.count += other.count;
    this.sum += other.sum;
    this.max = Math.max(this.max, other.max);
    other.histogram.forEach((n, i) => (this.histogram[i] += n));
    if (this.values && other.values && this.values.length + other.values.length <= this.exactValues) {
      this.values.push(...other.values);
      return;
    }
    const sketch = this.toSketch();
    if (other.values) for (const v of other.values) sketch.accept(Math.max(0, v));
    else if (other.sketch) sketch.merge(other.sketch);
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
    return Math.min(this.max, this.sketch!.getValueAtQuantile(q));
  }
}
