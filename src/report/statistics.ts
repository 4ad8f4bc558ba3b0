// SPDX-License-Identifier: MIT
// Turns the flow table into the inputs of the time-series, distribution and pattern code, and returns
// their results as report sections. Pure: flows and offsets in, sections out.
import type { Flow } from '../model/flows';
import { Digest } from '../model/digest';
import type { ModelSummary } from '../model/model';
import { buildDistributions, messageSizes, timeToFirstByte } from '../analysis/distributions';
import { detectPatterns } from '../analysis/patterns';
import type { FlowSeries, SizeHistogram } from '../analysis/series';
import { buildTimeSeries, chooseIntervalMs } from '../analysis/timeseries';
import type { ConnectionReport, Distributions, Report, TimeSeries } from '../schema/report';
import { protoName } from '../util/net';
import { digestStats } from './folds';
import { endpointFields } from './sections';

export interface SeriesContext {
  originNs: number;
  durationMs: number;
  /** TCP connections by socket: the accepted ones make server-side flows. */
  connections?: Array<{ cookie: bigint; role: string }>;
}

const ms = (ns: number, originNs: number) => Math.max(0, (ns - originNs) / 1e6);

/** One FlowSeries per flow: its interval samples, then the final counters at its last I/O (the kernel's
 *  last_ns once read for the last time: a sample is at a send/recv, so every sample time is one). */
export function flowSeries(flows: Flow[], context: SeriesContext): FlowSeries[] {
  const accepted = new Set((context.connections ?? []).filter((c) => c.role === 'passive').map((c) => c.cookie));
  return flows.map((flow) => {
    const endNs = flow.final ? flow.lastNs : (flow.releasedNs ?? flow.lastNs);
    const samples = flow.samples.map((s) => ({ tMs: ms(s.tsNs, context.originNs), ...s.counters }));
    samples.push({ tMs: Math.min(ms(endNs, context.originNs), context.durationMs), ...flow.counters });
    return {
      pid: flow.key.tgid,
      ...(flow.key.startTime ? { startTimeNs: Number(flow.key.startTime) } : {}),
      proto: protoName(flow.key.proto),
      socket: flow.key.cookie.toString(),
      remoteAddr: flow.key.remoteAddr,
      remotePort: flow.key.remotePort,
      startMs: ms(flow.firstNs, context.originNs),
      endMs: flow.releasedNs === null ? null : ms(flow.releasedNs, context.originNs),
      samples,
      ...(flow.key.proto === 6 && accepted.has(flow.key.cookie) ? { accepted: true, localAddr: flow.localAddr, localPort: flow.localPort } : {}),
    };
  });
}

/** Kernel size histograms summed per process, protocol and direction. */
export function sizeHistograms(flows: Flow[]): SizeHistogram[] {
  const byKey = new Map<string, SizeHistogram>();
  for (const flow of flows) {
    if (!flow.sizes) continue;
    for (const direction of ['tx', 'rx'] as const) {
      const proto = protoName(flow.key.proto);
      const id = `${flow.key.tgid}/${proto}/${direction}`;
      let h = byKey.get(id);
      if (!h) byKey.set(id, (h = { pid: flow.key.tgid, proto, direction, buckets: flow.sizes[direction].map(() => 0) }));
      flow.sizes[direction].forEach((n, i) => (h!.buckets[i] += n));
    }
  }
  return [...byKey.values()];
}

export type StatisticsSections = Required<Pick<Report, 'timeSeries' | 'distributions' | 'patterns'>>;

/** Time series, distributions and patterns of a trace's flows and connection rows; with the model's
 *  summary, the time series, activity and sizes come from what it accumulated (every flow, folded ones
 *  included), and the folded rows join the durations, first bytes and patterns. */
export function statisticsSections(
  flows: Flow[],
  connections: ConnectionReport[],
  context: SeriesContext,
  flowIntervalMs: number,
  intervalMs?: number,
  summary?: ModelSummary,
): StatisticsSections {
  const series = flowSeries(flows, context);
  const bucketMs = intervalMs ?? chooseIntervalMs(context.durationMs);
  if (summary) return summarized(series, connections, context, flowIntervalMs, bucketMs, summary);
  return {
    timeSeries: buildTimeSeries(series, context.durationMs, bucketMs),
    distributions: buildDistributions({
      series,
      histograms: sizeHistograms(flows),
      connections,
      durationMs: context.durationMs,
      intervalMs: bucketMs,
      sampleResolutionMs: flowIntervalMs,
    }),
    patterns: detectPatterns({ series, connections, durationMs: context.durationMs }),
  };
}

function summarized(series: FlowSeries[], connections: ConnectionReport[], context: SeriesContext, flowIntervalMs: number, bucketMs: number, summary: ModelSummary): StatisticsSections {
  const t = summary.timeline.result(context.durationMs, bucketMs);
  const timeSeries: TimeSeries = {
    intervalMs: bucketMs,
    startMs: 0,
    tx: t.tx,
    rx: t.rx,
    perProcess: t.perProcess
      .map((p) => ({ pid: p.pid, ...(p.startTime ? { startTimeNs: Number(p.startTime) } : {}), tx: p.tx, rx: p.rx }))
      .sort((a, b) => a.pid - b.pid || (a.startTimeNs ?? 0) - (b.startTimeNs ?? 0)),
  };
  const sizes = messageSizes(summary.sizes.list());
  const total = (dir: 'tx' | 'rx') => {
    const tcp = summary.sizes.total.tcp[dir];
    const udp = summary.sizes.total.udp[dir];
    return Array.from({ length: Math.max(tcp.length, udp.length) }, (_, i) => (tcp[i] ?? 0) + (udp[i] ?? 0));
  };
  const whole = messageSizes([
    { pid: 0, proto: 'tcp', direction: 'tx', buckets: total('tx') },
    { pid: 0, proto: 'tcp', direction: 'rx', buckets: total('rx') },
  ]);
  const ended = Digest.of(connections.filter((c) => c.durationMs !== null).map((c) => c.durationMs as number));
  for (const g of summary.connectionGroups) ended.merge(g.durations);
  const open = connections.filter((c) => c.durationMs === null).length + summary.connectionGroups.reduce((n, g) => n + (g.outcomes.open ?? 0), 0);
  const ttfb = timeToFirstByte(series, flowIntervalMs);
  const firstBytes = Digest.of(ttfb.connections.map((c) => c.ms));
  firstBytes.merge(summary.foldedTtfb);
  const r = (ms: number) => Math.round(ms * 1000) / 1000;
  const distributions: Distributions = {
    messageSizes: { tx: whole.tx, rx: whole.rx, perProcess: sizes.perProcess },
    connectionDurations: { ...digestStats(ended), open },
    timeToFirstByte: { ...digestStats(firstBytes), resolutionMs: ttfb.resolutionMs, connections: ttfb.connections },
    activity: {
      intervalMs: bucketMs,
      processes: t.processes.map((p) => ({ pid: p.pid, firstSeenMs: r(p.firstMs), lastSeenMs: r(p.lastMs), activeMs: p.activeMs })).sort((a, b) => a.pid - b.pid),
      endpoints: t.endpoints
        .map((e) => ({ ...endpointFields(e.endpoint), firstSeenMs: r(e.firstMs), lastSeenMs: r(e.lastMs), activeMs: e.activeMs }))
        .sort((a, b) => a.firstSeenMs - b.firstSeenMs || a.remoteAddr.localeCompare(b.remoteAddr) || a.remotePort - b.remotePort),
    },
  };
  return {
    timeSeries,
    distributions,
    patterns: detectPatterns({ series, connections, durationMs: context.durationMs, folded: summary.connectionGroups }),
  };
}
