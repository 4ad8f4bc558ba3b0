// SPDX-License-Identifier: MIT
// Test helper: a Report built from synthetic flows by the real aggregate code (time series,
// distributions, patterns), for the chart and table tests.
import { buildDistributions } from '../../src/analysis/distributions';
import { detectPatterns } from '../../src/analysis/patterns';
import type { FlowSeries, SizeHistogram } from '../../src/analysis/series';
import { buildTimeSeries, chooseIntervalMs } from '../../src/analysis/timeseries';
import type { ConnectionReport, EndpointReport, Report } from '../../src/schema/report';
import { bulkCalls, pollCalls, simulateFlow } from './flowsim';

const MiB = 1024 * 1024;
const zero = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };

export function emptyReport(durationMs = 10_000): Report {
  return {
    schemaVersion: 1,
    tool: { name: 'proctap', version: '0.1.0' },
    mode: 'run',
    backend: 'fentry',
    command: ['sh', 'demo.sh'],
    exitCode: 0,
    startedAt: '2025-01-02T03:04:05.678Z',
    durationMs,
    lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    unattributedPackets: { tx: 0, rx: 0 },
    totals: { tcp: { ...zero }, udp: { ...zero }, packets: { txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 } },
    processes: [],
    endpoints: [],
    connections: [],
    notes: [],
  };
}

function rowOf(f: FlowSeries, outcome: ConnectionReport['outcome'] = f.endMs === null ? 'open' : 'closed'): ConnectionReport {
  const last = f.samples.at(-1)!;
  return {
    pid: f.pid, proto: f.proto, role: f.proto === 'udp' ? 'udp' : 'active', localAddr: '10.0.0.2', localPort: 40000,
    remoteAddr: f.remoteAddr, remotePort: f.remotePort, startOffsetMs: f.startMs,
    durationMs: f.endMs === null ? null : f.endMs - f.startMs,
    txBytes: last.txBytes, rxBytes: last.rxBytes, txCalls: last.txCalls, rxCalls: last.rxCalls, outcome, error: null,
  };
}

/** A 10 s trace: a 1 s poller, a 20 MiB download, DNS lookups, a fan-out over 12 hosts, refused connects. */
export function syntheticReport(): Report {
  const D = 10_000;
  const flows: FlowSeries[] = [
    simulateFlow(pollCalls(9, 1000, 120, 800, { t0: 500, jitter: (i) => (i % 2 ? 12 : 0) }), { pid: 42, socket: 'poll', startMs: 480, endMs: null, traceEndMs: D }),
    simulateFlow([{ tMs: 2000, dir: 'tx', bytes: 90 }, ...bulkCalls('rx', 20 * MiB, 2005, 4000)], { pid: 43, socket: 'dl', remoteAddr: '93.184.216.34', remotePort: 443, startMs: 1990, endMs: 6100 }),
    ...[0, 1, 2, 3, 4].map((i) =>
      simulateFlow([{ tMs: 300 + i * 1700 + (i % 2) * 400, dir: 'tx', bytes: 40 }, { tMs: 302 + i * 1700 + (i % 2) * 400, dir: 'rx', bytes: 120 }], {
        pid: 44, socket: `dns${i}`, proto: 'udp', remoteAddr: '127.0.0.53', remotePort: 53,
      }),
    ),
    ...Array.from({ length: 12 }, (_, i) =>
      simulateFlow([{ tMs: 7000 + i * 30, dir: 'tx', bytes: 300 }, { tMs: 7010 + i * 30, dir: 'rx', bytes: 5000 + i * 900 }], {
        pid: 45, socket: `fan${i}`, remoteAddr: `10.1.0.${i + 1}`, remotePort: 80, endMs: 7100 + i * 30,
      }),
    ),
  ];
  const connections = [
    ...flows.map((f) => rowOf(f)),
    ...[0, 1, 2].map((i): ConnectionReport => ({
      ...rowOf(simulateFlow([], { pid: 46, remotePort: 9, startMs: 8000 + i * 100, endMs: 8000.3 + i * 100 }), 'refused'),
      txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0, error: 'ECONNREFUSED',
    })),
  ].sort((a, b) => a.startOffsetMs - b.startOffsetMs);
  const endpoints = new Map<string, EndpointReport>();
  for (const c of connections) {
    const k = `${c.proto}/${c.remoteAddr}/${c.remotePort}`;
    const e = endpoints.get(k) ?? { proto: c.proto, remoteAddr: c.remoteAddr, remotePort: c.remotePort, ...zero, connections: 0, pids: [] };
    e.txBytes += c.txBytes;
    e.rxBytes += c.rxBytes;
    e.txCalls += c.txCalls;
    e.rxCalls += c.rxCalls;
    e.connections++;
    if (!e.pids.includes(c.pid)) e.pids.push(c.pid);
    endpoints.set(k, e);
  }
  const hist = (pid: number, direction: 'tx' | 'rx', at: Record<number, number>): SizeHistogram => {
    const buckets = new Array<number>(24).fill(0);
    for (const [i, n] of Object.entries(at)) buckets[Number(i)] = n;
    return { pid, proto: 'tcp', direction, buckets };
  };
  const histograms = [hist(42, 'tx', { 7: 9 }), hist(42, 'rx', { 10: 9 }), hist(43, 'tx', { 7: 1 }), hist(43, 'rx', { 14: 300, 16: 1200, 17: 40 }), hist(44, 'tx', { 6: 5 }), hist(44, 'rx', { 7: 5 }), hist(45, 'tx', { 9: 12 }), hist(45, 'rx', { 13: 12 })];
  const intervalMs = chooseIntervalMs(D);
  const report = emptyReport(D);
  report.endpoints = [...endpoints.values()].sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
  report.connections = connections;
  report.timeSeries = buildTimeSeries(flows, D, intervalMs);
  report.distributions = buildDistributions({ series: flows, histograms, connections, durationMs: D, intervalMs });
  report.patterns = detectPatterns({ series: flows, connections, durationMs: D });
  return report;
}
