// SPDX-License-Identifier: MIT
// Payload bytes over time, from flow samples: each sample's increase goes to the bucket of its time,
// so the buckets sum exactly to the flows' final totals. A sample carries every byte moved since the
// flow's previous sample (at most one per flow interval), so the shape is exact to that resolution.
import type { TimeSeries } from '../schema/report';
import { flowDeltas, type FlowSeries } from './series';

/** Smallest bucket width. */
export const MIN_INTERVAL_MS = 10;
/** Bucket counts aimed for. */
export const TARGET_BUCKETS = { min: 60, max: 120 };

/** A 1/2/5×10^k ms bucket width (at least 10 ms) giving 60–120 buckets when one does, otherwise
 *  the count nearest that range (a 2→5 step can skip it: 48–150). */
export function chooseIntervalMs(durationMs: number): number {
  if (!Number.isFinite(durationMs) || durationMs <= MIN_INTERVAL_MS * TARGET_BUCKETS.min) return MIN_INTERVAL_MS;
  let best = MIN_INTERVAL_MS;
  let bestScore = Infinity;
  for (let exp = 1; exp < 15; exp++) {
    for (const m of [1, 2, 5]) {
      const step = m * 10 ** exp;
      if (step < MIN_INTERVAL_MS) continue;
      const n = Math.ceil(durationMs / step);
      // Distance (in log terms) outside the target range; 0 inside it.
      const score = n < TARGET_BUCKETS.min ? Math.log(TARGET_BUCKETS.min / n) : n > TARGET_BUCKETS.max ? Math.log(n / TARGET_BUCKETS.max) : 0;
      if (score < bestScore) {
        best = step;
        bestScore = score;
      }
    }
  }
  return best;
}

/** Number of buckets covering [0, durationMs): at least one. */
export function bucketCount(durationMs: number, intervalMs: number): number {
  return Math.max(1, Math.ceil(Math.max(0, durationMs) / intervalMs));
}

/** Bucket of time t: clamped into [0, count-1], so samples at (or just past) the end still count. */
export function bucketOf(tMs: number, intervalMs: number, count: number): number {
  return Math.min(count - 1, Math.max(0, Math.floor(tMs / intervalMs)));
}

export function buildTimeSeries(series: FlowSeries[], durationMs: number, intervalMs: number): TimeSeries {
  if (!(intervalMs > 0)) throw new RangeError(`interval must be positive, got ${intervalMs}`);
  const n = bucketCount(durationMs, intervalMs);
  const tx = new Array<number>(n).fill(0);
  const rx = new Array<number>(n).fill(0);
  // One row per process instance: a pid reused during the trace is another process.
  const perProcess: TimeSeries['perProcess'] = [];
  const rows = new Map<string, TimeSeries['perProcess'][number]>();
  for (const flow of series) {
    const id = `${flow.pid}/${flow.startTimeNs ?? 0}`;
    let own = rows.get(id);
    if (!own) {
      own = { pid: flow.pid, ...(flow.startTimeNs ? { startTimeNs: flow.startTimeNs } : {}), tx: new Array<number>(n).fill(0), rx: new Array<number>(n).fill(0) };
      rows.set(id, own);
      perProcess.push(own);
    }
    for (const d of flowDeltas(flow)) {
      const b = bucketOf(d.tMs, intervalMs, n);
      tx[b] += d.txBytes;
      rx[b] += d.rxBytes;
      own.tx[b] += d.txBytes;
      own.rx[b] += d.rxBytes;
    }
  }
  perProcess.sort((a, b) => a.pid - b.pid || (a.startTimeNs ?? 0) - (b.startTimeNs ?? 0));
  return { intervalMs, startMs: 0, tx, rx, perProcess };
}
