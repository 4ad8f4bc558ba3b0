// SPDX-License-Identifier: MIT
// PNG charts of a Report (chart.js drawn on node-canvas): throughput over time, message sizes,
// bytes per endpoint, connection timeline. Like the terminal tables they read nothing but the Report.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChartConfiguration } from 'chart.js' with { 'resolution-mode': 'import' };
import type { ConnectionReport, Outcome, Report } from '../schema/report';
import { formatBytes, formatDuration, formatEndpoint } from '../util/format';

export const CHART_WIDTH = 1000;
export const CHART_HEIGHT = 600;
/** Endpoints shown in the per-endpoint chart, largest first. */
export const CHART_MAX_ENDPOINTS = 15;
/** Connections shown in the timeline, earliest first. */
export const CHART_MAX_CONNECTIONS = 50;

export const CHART_FILES = {
  throughput: 'throughput.png',
  messageSizes: 'message-sizes.png',
  endpoints: 'endpoints.png',
  connections: 'connections.png',
} as const;

const TX = '#1f77b4';
const RX = '#ff7f0e';
export const OUTCOME_COLOURS: Record<Outcome, string> = {
  open: '#2ca02c',
  closed: '#7f7f7f',
  refused: '#d62728',
  reset: '#9467bd',
  timeout: '#8c564b',
  failed: '#e377c2',
  aborted: '#bcbd22',
};

/** "0 B", "≤1 B", "≤3 B" … "≤1023 B", "≤2 KiB" … "≤64 KiB" …: the largest size of log2 bucket i
 *  (2^i - 1 bytes, shown as 2^i from 1 KiB on); the kernel's last bucket holds everything above. */
export function sizeBucketLabel(i: number, last = false): string {
  if (i === 0) return '0 B';
  if (last) return `≥${pow2(i - 1)}`;
  return i < 11 ? `≤${2 ** i - 1} B` : `≤${pow2(i)}`;
}

function pow2(e: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const u = Math.min(units.length - 1, Math.floor(e / 10));
  return `${2 ** (e - 10 * u)} ${units[u]}`;
}

const byteTick = (suffix = '') => (v: number | string) => `${formatBytes(Number(v))}${suffix}`;

/** A tick step for a byte axis up to `max`: 1/2/5×10^k of the binary unit (B, KiB, MiB…) `max` is
 *  shown in, about 5–10 steps, so that ticks read "2.0 MiB", "4.0 MiB" rather than "1.9 MiB". */
export function byteStep(max: number): number {
  if (!(max > 0)) return 1;
  let unit = 1;
  while (max / unit >= 1024) unit *= 1024;
  const raw = max / unit / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const m = [1, 2, 5, 10].find((x) => x * mag >= raw)!;
  return Math.max(1, m * mag * unit);
}

function byteAxis(max: number, suffix = '') {
  const step = byteStep(max);
  return { beginAtZero: true, min: 0, max: Math.max(step, Math.ceil((max * 1.08) / step) * step), ticks: { font: { size: 13 }, stepSize: step, callback: byteTick(suffix) } };
}

function base(title: string, x: string, y: string): ChartConfiguration['options'] {
  return {
    animation: false,
    responsive: false,
    layout: { padding: 16 },
    plugins: {
      title: { display: true, text: title, font: { size: 20, weight: 'bold' } },
      legend: { position: 'top', labels: { font: { size: 14 } } },
    },
    scales: {
      x: { title: { display: true, text: x, font: { size: 15 } }, ticks: { font: { size: 13 } } },
      y: { title: { display: true, text: y, font: { size: 15 } }, ticks: { font: { size: 13 } }, beginAtZero: true },
    },
  };
}

/** tx/rx bytes/s over time, from report.timeSeries. */
export function throughputChart(report: Report): ChartConfiguration {
  const ts = report.timeSeries;
  const step = (ts?.intervalMs ?? 1000) / 1000;
  const points = (v: number[]) => v.map((b, i) => ({ x: (i + 0.5) * step, y: b / step }));
  const opts = base(`Throughput (payload, ${formatDuration(ts?.intervalMs ?? 0)} buckets)${ts ? '' : ' — no time series'}`, 'time (s)', 'bytes/s')!;
  const scales = opts.scales as Record<string, Record<string, unknown>>;
  scales.x = { ...scales.x, type: 'linear', min: 0, max: Math.max(report.durationMs / 1000, step) };
  scales.y = { ...scales.y, ...byteAxis(Math.max(0, ...(ts?.tx ?? []), ...(ts?.rx ?? [])) / step, '/s') };
  const line = (label: string, colour: string, data: number[]) => ({
    label, data: points(data), borderColor: colour, backgroundColor: colour + '33', fill: true, pointRadius: 0, borderWidth: 2, tension: 0,
  });
  return {
    type: 'line',
    data: { datasets: ts ? [line('tx (sent)', TX, ts.tx), line('rx (received)', RX, ts.rx)] : [] },
    options: opts,
  };
}

/** Share of calls per log2 message-size bucket, tx and rx each out of their own calls (so a few
 *  sends still show next to many receives), from report.distributions.messageSizes. */
export function messageSizeChart(report: Report): ChartConfiguration {
  const m = report.distributions?.messageSizes;
  const tx = m?.tx.buckets ?? [];
  const rx = m?.rx.buckets ?? [];
  const n = Math.max(tx.length, rx.length, 17);
  const used = Array.from({ length: n }, (_, i) => (tx[i] ?? 0) + (rx[i] ?? 0) > 0);
  // The used range and one empty bucket either side, at least 8 buckets (0 B … ≤64 KiB when empty).
  const lo = used.includes(true) ? Math.max(0, used.indexOf(true) - 1) : 0;
  const hi = used.includes(true) ? Math.min(n - 1, Math.max(used.lastIndexOf(true) + 1, lo + 7)) : 16;
  const idx = Array.from({ length: hi - lo + 1 }, (_, k) => lo + k);
  const openEnded = n >= 24; // the kernel's last bucket: 4 MiB and up
  const share = (b: number[], calls: number) => idx.map((i) => (calls > 0 ? (100 * (b[i] ?? 0)) / calls : 0));
  const opts = base(`Message sizes (${m ? `${m.tx.calls} send calls, ${m.rx.calls} receive calls` : 'no histogram in this report'})`, 'message size (log2 buckets, bytes per call)', '% of calls (per direction)')!;
  const scales = opts.scales as Record<string, Record<string, unknown>>;
  scales.y = { ...scales.y, min: 0, max: 100, ticks: { font: { size: 13 }, stepSize: 10, callback: (v: number | string) => `${v}%` } };
  return {
    type: 'bar',
    data: {
      labels: idx.map((i) => sizeBucketLabel(i, openEnded && i === n - 1)),
      datasets: [
        { label: 'tx (send calls)', data: share(tx, m?.tx.calls ?? 0), backgroundColor: TX },
        { label: 'rx (receive calls)', data: share(rx, m?.rx.calls ?? 0), backgroundColor: RX },
      ],
    },
    options: opts,
  };
}

/** Bytes per remote endpoint, tx and rx stacked, top CHART_MAX_ENDPOINTS. */
export function endpointChart(report: Report): ChartConfiguration {
  const top = [...report.endpoints].sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes)).slice(0, CHART_MAX_ENDPOINTS);
  const more = report.endpoints.length - top.length;
  const opts = base(`Bytes per remote endpoint${more > 0 ? ` (top ${top.length} of ${report.endpoints.length})` : top.length === 0 ? ' (none)' : ''}`, 'bytes (payload)', 'endpoint')!;
  const scales = opts.scales as Record<string, Record<string, unknown>>;
  const totals = top.map((e) => e.txBytes + e.rxBytes);
  scales.x = { ...scales.x, stacked: true, ...byteAxis(Math.max(0, ...totals) * 1.1) };
  scales.y = { ...scales.y, stacked: true };
  return {
    // Each row's total at the end of its bar: small endpoints stay readable next to a large one.
    plugins: [
      {
        id: 'proctapTotals',
        afterDatasetsDraw(chart) {
          const { ctx, scales: s } = chart;
          ctx.save();
          ctx.font = '13px sans-serif';
          ctx.fillStyle = '#333';
          ctx.textBaseline = 'middle';
          totals.forEach((t, i) => ctx.fillText(formatBytes(t), s.x.getPixelForValue(t) + 6, s.y.getPixelForValue(i)));
          ctx.restore();
        },
      },
    ],
    type: 'bar',
    data: {
      labels: top.map((e) => `${e.proto} ${formatEndpoint(e.remoteAddr, e.remotePort)}`),
      datasets: [
        { label: 'tx (sent)', data: top.map((e) => e.txBytes), backgroundColor: TX },
        { label: 'rx (received)', data: top.map((e) => e.rxBytes), backgroundColor: RX },
      ],
    },
    options: { ...opts, indexAxis: 'y' },
  };
}

/** One floating bar per connection from start to end (the trace's end while open), by outcome. */
export function connectionChart(report: Report): ChartConfiguration {
  const shown = [...report.connections].sort((a, b) => a.startOffsetMs - b.startOffsetMs || a.pid - b.pid).slice(0, CHART_MAX_CONNECTIONS);
  const more = report.connections.length - shown.length;
  const endOf = (c: ConnectionReport) => (c.durationMs === null ? report.durationMs : c.startOffsetMs + c.durationMs);
  // A failed connect lasts a fraction of a millisecond: give every bar a visible minimum width.
  const minWidth = Math.max(report.durationMs, 1) / 1000 / 300;
  const outcomes = (Object.keys(OUTCOME_COLOURS) as Outcome[]).filter((o) => shown.some((c) => c.outcome === o));
  const opts = base(
    `Connections over time${more > 0 ? ` (first ${shown.length} of ${report.connections.length})` : shown.length === 0 ? ' (none)' : ''}`,
    'time (s)',
    'connection (pid, protocol, remote)',
  )!;
  const scales = opts.scales as Record<string, Record<string, unknown>>;
  scales.x = { ...scales.x, type: 'linear', min: 0, max: Math.max(report.durationMs / 1000, 0.001) };
  scales.y = { ...scales.y, ticks: { font: { size: shown.length > 25 ? 10 : 13 }, autoSkip: false } };
  return {
    type: 'bar',
    data: {
      labels: shown.map((c) => `${c.pid} ${c.proto} ${formatEndpoint(c.remoteAddr, c.remotePort)}`),
      datasets: outcomes.map((o) => ({
        label: o,
        backgroundColor: OUTCOME_COLOURS[o],
        grouped: false,
        barPercentage: 0.9,
        categoryPercentage: 0.9,
        data: shown.map((c): [number, number] | null => {
          if (c.outcome !== o) return null;
          const s = c.startOffsetMs / 1000;
          return [s, Math.max(endOf(c) / 1000, s + minWidth)];
        }),
      })),
    },
    options: { ...opts, indexAxis: 'y' },
  };
}

/** Writes the four charts into `dir` (created if needed); returns their paths. */
export async function renderCharts(report: Report, dir: string): Promise<string[]> {
  // Loaded here: the native canvas module is only needed by those who ask for charts.
  const { ChartJSNodeCanvas } = await import('chartjs-node-canvas');
  const canvas = new ChartJSNodeCanvas({ width: CHART_WIDTH, height: CHART_HEIGHT, backgroundColour: 'white' });
  await mkdir(dir, { recursive: true });
  const charts: Array<[string, ChartConfiguration]> = [
    [CHART_FILES.throughput, throughputChart(report)],
    [CHART_FILES.messageSizes, messageSizeChart(report)],
    [CHART_FILES.endpoints, endpointChart(report)],
    [CHART_FILES.connections, connectionChart(report)],
  ];
  const out: string[] = [];
  for (const [name, config] of charts) {
    const file = path.join(dir, name);
    await writeFile(file, await canvas.renderToBuffer(config, 'image/png'));
    out.push(file);
  }
  return out;
}
