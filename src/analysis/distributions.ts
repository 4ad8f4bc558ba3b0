// SPDX-License-Identifier: MIT
// Statistics of a trace: message sizes (from the kernel's log2 histograms), connection durations,
// TCP time to first byte (from flow samples: an upper bound at the sampling resolution), and when
// each process and endpoint was active.
import type { Activity, ConnectionReport, Distributions, DurationStats, MessageSizes, SizeStats, TtfbConnection } from '../schema/report';
import { endpointKey, flowDeltas, type FlowSeries, type SizeHistogram } from './series';
import { bucketOf, bucketCount } from './timeseries';

/** Kernel flow interval: the resolution of flow samples, hence of time to first byte (ms). */
export const DEFAULT_SAMPLE_RESOLUTION_MS = 100;

/** Upper bounds (ms) of the duration histogram buckets; a last bucket (leMs null) takes the rest. */
export const DURATION_BUCKETS_MS = [1, 10, 100, 1_000, 10_000, 60_000, 600_000];

/** Upper bound in bytes of log2 size bucket i: 0 for bucket 0, else 2^i - 1. */
export function sizeBucketMax(i: number): number {
  return i <= 0 ? 0 : 2 ** i - 1;
}

/** Element-wise sum of histograms (the result is as long as the longest). */
export function mergeBuckets(lists: number[][]): number[] {
  const out = new Array<number>(Math.max(0, ...lists.map((l) => l.length))).fill(0);
  for (const l of lists) l.forEach((v, i) => (out[i] += v));
  return out;
}

/** Bucket index holding the q-quantile (nearest rank), or -1 for an empty histogram. */
export function bucketQuantile(buckets: number[], q: number): number {
  const total = buckets.reduce((a, b) => a + b, 0);
  if (total <= 0) return -1;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    seen += buckets[i];
    if (seen >= rank) return i;
  }
  return buckets.length - 1;
}

export function sizeStats(buckets: number[]): SizeStats {
  const at = (q: number) => {
    const i = bucketQuantile(buckets, q);
    return i < 0 ? null : sizeBucketMax(i);
  };
  return { calls: buckets.reduce((a, b) => a + b, 0), buckets, p50: at(0.5), p90: at(0.9), p99: at(0.99) };
}

/** Histograms merged per direction (all processes and protocols), and per process. */
export function messageSizes(histograms: SizeHistogram[]): MessageSizes {
  const pick = (h: SizeHistogram[], dir: 'tx' | 'rx') => sizeStats(mergeBuckets(h.filter((x) => x.direction === dir).map((x) => x.buckets)));
  const pids = [...new Set(histograms.map((h) => h.pid))].sort((a, b) => a - b);
  return {
    tx: pick(histograms, 'tx'),
    rx: pick(histograms, 'rx'),
    perProcess: pids.map((pid) => {
      const own = histograms.filter((h) => h.pid === pid);
      return { pid, tx: pick(own, 'tx'), rx: pick(own, 'rx') };
    }),
  };
}

/** Nearest-rank percentile of ascending `sorted`; null when empty. */
export function percentile(sorted: number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export function durationStats(values: number[], bounds: number[] = DURATION_BUCKETS_MS): DurationStats {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  const histogram: DurationStats['histogram'] = [...bounds.map((leMs) => ({ leMs, count: 0 })), { leMs: null, count: 0 }];
  for (const v of sorted) {
    const i = bounds.findIndex((b) => v <= b);
    histogram[i < 0 ? bounds.length : i].count++;
  }
  return {
    count: sorted.length,
    p50: percentile(sorted, 0.5),
    p90: percentile(sorted, 0.9),
    p99: percentile(sorted, 0.99),
    max: sorted.length ? sorted[sorted.length - 1] : null,
    histogram,
  };
}

/** Durations of the connections that ended; those still open are only counted. */
export function connectionDurations(connections: ConnectionReport[]): Distributions['connectionDurations'] {
  const ended = connections.filter((c) => c.durationMs !== null).map((c) => c.durationMs as number);
  return { ...durationStats(ended), open: connections.length - ended.length };
}

/** TCP time to first byte: the first sample with received bytes, minus the flow's start. A received
 *  byte is only seen at the next sample (at most one per `resolutionMs`, at a later call or the end),
 *  so each value is an upper bound. Flows that never received a byte have none. */
export function timeToFirstByte(series: FlowSeries[], resolutionMs = DEFAULT_SAMPLE_RESOLUTION_MS): Distributions['timeToFirstByte'] {
  const connections: TtfbConnection[] = [];
  for (const f of series) {
    if (f.proto !== 'tcp') continue;
    const first = f.samples.find((s) => s.rxBytes > 0);
    if (!first) continue;
    connections.push({ pid: f.pid, socket: f.socket, remoteAddr: f.remoteAddr, remotePort: f.remotePort, ms: Math.max(0, first.tMs - f.startMs) });
  }
  connections.sort((a, b) => a.pid - b.pid || a.socket.localeCompare(b.socket));
  return { ...durationStats(connections.map((c) => c.ms)), resolutionMs, connections };
}

/** First/last seen and active time (intervals with traffic) per process and per endpoint. */
export function activity(series: FlowSeries[], durationMs: number, intervalMs: number): Distributions['activity'] {
  const n = bucketCount(durationMs, intervalMs);
  interface Acc { first: number; last: number; buckets: Set<number> }
  const add = (map: Map<string, Acc>, key: string, f: FlowSeries) => {
    let a = map.get(key);
    if (!a) map.set(key, (a = { first: Infinity, last: -Infinity, buckets: new Set() }));
    const lastSample = f.samples.length ? f.samples[f.samples.length - 1].tMs : f.startMs;
    a.first = f.samples.reduce((m, s) => Math.min(m, s.tMs), Math.min(a.first, f.startMs));
    a.last = Math.max(a.last, f.endMs ?? lastSample, lastSample);
    for (const d of flowDeltas(f)) if (d.txBytes + d.rxBytes + d.txCalls + d.rxCalls > 0) a.buckets.add(bucketOf(d.tMs, intervalMs, n));
  };
  const procs = new Map<string, Acc>();
  const eps = new Map<string, Acc>();
  const epInfo = new Map<string, FlowSeries>();
  for (const f of series) {
    add(procs, String(f.pid), f);
    const k = endpointKey(f);
    add(eps, k, f);
    if (!epInfo.has(k)) epInfo.set(k, f);
  }
  const done = (a: Acc): Activity => ({ firstSeenMs: a.first, lastSeenMs: a.last, activeMs: a.buckets.size * intervalMs });
  return {
    intervalMs,
    processes: [...procs.entries()].map(([pid, a]) => ({ pid: Number(pid), ...done(a) })).sort((a, b) => a.pid - b.pid),
    endpoints: [...eps.entries()]
      .map(([k, a]) => {
        const f = epInfo.get(k)!;
        return { proto: f.proto, remoteAddr: f.remoteAddr, remotePort: f.remotePort, ...done(a) };
      })
      .sort((a, b) => a.firstSeenMs - b.firstSeenMs || endpointKey(a).localeCompare(endpointKey(b))),
  };
}

export interface DistributionInputs {
  series: FlowSeries[];
  histograms: SizeHistogram[];
  connections: ConnectionReport[];
  durationMs: number;
  /** Time-series bucket width (chooseIntervalMs) used for active time. */
  intervalMs: number;
  /** Kernel flow interval (--flow-interval), default 100 ms. */
  sampleResolutionMs?: number;
}

export function buildDistributions(input: DistributionInputs): Distributions {
  return {
    messageSizes: messageSizes(input.histograms),
    connectionDurations: connectionDurations(input.connections),
    timeToFirstByte: timeToFirstByte(input.series, input.sampleResolutionMs ?? DEFAULT_SAMPLE_RESOLUTION_MS),
    activity: activity(input.series, input.durationMs, input.intervalMs),
  };
}
