// SPDX-License-Identifier: MIT
// The report's folding sections (docs/schema.md, "Folding"): the retention policy, how much was folded,
// and the folded aggregates per service endpoint and per parent and command. Pure.
import type { Digest } from '../model/digest';
import { DURATION_BUCKETS_MS } from '../model/digest';
import type { ModelSummary } from '../model/model';
import type { DurationStats, FoldedConnections, FoldedProcesses, Report } from '../schema/report';
import { endpointFields } from './sections';

/** A digest's statistics in the report's DurationStats shape (ms rounded to µs). */
export function digestStats(d: Digest): DurationStats {
  const r = (v: number | null) => (v === null ? null : Math.round(v * 1000) / 1000);
  const stats: DurationStats = {
    count: d.count,
    p50: r(d.quantile(0.5)),
    p90: r(d.quantile(0.9)),
    p99: r(d.quantile(0.99)),
    max: d.count ? r(d.max) : null,
    histogram: [...DURATION_BUCKETS_MS.map((leMs, i) => ({ leMs, count: d.histogram[i] })), { leMs: null, count: d.histogram[DURATION_BUCKETS_MS.length] }],
  };
  if (!d.exact) stats.approximate = true;
  return stats;
}

export function foldedSections(summary: ModelSummary, originNs: number): Required<Pick<Report, 'folding' | 'foldedConnections' | 'foldedProcesses'>> {
  const offset = (ns: number) => Math.round((ns - originNs) / 1000) / 1000;
  const foldedConnections = summary.connectionGroups
    .map((g): FoldedConnections => ({
      ...endpointFields(g.endpoint),
      connections: g.connections,
      ...g.traffic,
      outcomes: g.outcomes,
      ...(g.retransmits !== null ? { retransmits: g.retransmits } : {}),
      durations: digestStats(g.durations),
      pids: [...g.pids].sort((a, b) => a - b),
      ...(g.morePids ? { morePids: true } : {}),
      firstStartOffsetMs: offset(g.firstStartNs),
      lastEndOffsetMs: g.lastEndNs === null ? null : offset(g.lastEndNs),
    }))
    .sort((a, b) => b.connections - a.connections || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
  const foldedProcesses = summary.processGroups
    .map((g): FoldedProcesses => ({
      ppid: g.ppid,
      ...(g.parentStartTime ? { parentStartTimeNs: Number(g.parentStartTime) } : {}),
      comm: g.comm,
      count: g.count,
      tcp: g.tcp,
      udp: g.udp,
      packets: g.packets,
      exits: g.exits,
      firstStartOffsetMs: g.firstStartNs === null ? null : offset(g.firstStartNs),
      lastExitOffsetMs: g.lastExitNs === null ? null : offset(g.lastExitNs),
    }))
    .sort((a, b) => b.count - a.count || a.ppid - b.ppid || a.comm.localeCompare(b.comm));
  return {
    folding: {
      keep: { connections: { ...summary.caps.connections }, processes: { ...summary.caps.processes } },
      connections: summary.foldedRows,
      sockets: summary.foldedSockets,
      processes: summary.foldedProcesses,
    },
    foldedConnections,
    foldedProcesses,
  };
}
