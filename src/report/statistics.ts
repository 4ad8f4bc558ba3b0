// SPDX-License-Identifier: MIT
// Turns the flow table into the inputs of the time-series, distribution and pattern code, and returns
// their results as report sections. Pure: flows and offsets in, sections out.
import type { Flow } from '../model/flows';
import { buildDistributions } from '../analysis/distributions';
import { detectPatterns } from '../analysis/patterns';
import type { FlowSeries, SizeHistogram } from '../analysis/series';
import { buildTimeSeries, chooseIntervalMs } from '../analysis/timeseries';
import type { ConnectionReport, Report } from '../schema/report';
import { protoName } from '../util/net';

export interface SeriesContext {
  originNs: number;
  durationMs: number;
  /** TCP connections by socket: the accepted ones make server-side flows. */
  connections?: Array<{ cookie: bigint; role: string }>;
}

const ms = (ns: number, originNs: number) => Math.max(0, (ns - originNs) / 1e6);

/** One FlowSeries per flow: its interval samples, then the final counters at its end (or the trace's). */
export function flowSeries(flows: Flow[], context: SeriesContext): FlowSeries[] {
  const accepted = new Set((context.connections ?? []).filter((c) => c.role === 'passive').map((c) => c.cookie));
  return flows.map((flow) => {
    const endNs = flow.releasedNs ?? flow.lastNs;
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

/** Time series, distributions and patterns of a trace's flows and connection rows. */
export function statisticsSections(flows: Flow[], connections: ConnectionReport[], context: SeriesContext, flowIntervalMs: number, intervalMs?: number): StatisticsSections {
  const series = flowSeries(flows, context);
  const bucketMs = intervalMs ?? chooseIntervalMs(context.durationMs);
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
