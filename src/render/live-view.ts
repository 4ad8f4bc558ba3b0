// SPDX-License-Identifier: MIT
// What the user sees while a trace runs: a one-line status on stderr (elapsed, bytes, records, lost), or
// with --live a refreshing top-like view of per-process and per-endpoint rates. Pure rendering on top;
// the ticker at the bottom is the only side effect.
import type { Flow } from '../model/flows';
import { protoName } from '../util/net';
import { formatBytes, formatCount, formatDuration, formatEndpoint } from '../util/format';

export interface DisplayTotals {
  elapsedMs: number;
  txBytes: number;
  rxBytes: number;
  records: number;
  lost: number;
}

export function statusLine(t: DisplayTotals): string {
  return `proctap: ${formatDuration(t.elapsedMs)} · tx ${formatBytes(t.txBytes)} · rx ${formatBytes(t.rxBytes)} · ` +
    `${formatCount(t.records)} records · ${t.lost ? `${formatCount(t.lost)} LOST` : 'nothing lost'}`;
}

export interface RateRow {
  key: string;
  txRate: number;
  rxRate: number;
  txBytes: number;
  rxBytes: number;
}

/** Rates per key between two snapshots of cumulative bytes. */
export function rates(now: Map<string, [number, number]>, before: Map<string, [number, number]>, seconds: number): RateRow[] {
  return [...now.entries()]
    .map(([key, [tx, rx]]) => {
      const [tx0, rx0] = before.get(key) ?? [0, 0];
      return { key, txRate: (tx - tx0) / seconds, rxRate: (rx - rx0) / seconds, txBytes: tx, rxBytes: rx };
    })
    .sort((a, b) => b.txRate + b.rxRate - (a.txRate + a.rxRate) || b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes));
}

export function snapshot(flows: Flow[], keyOf: (f: Flow) => string): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const f of flows) {
    const k = keyOf(f);
    const [tx, rx] = m.get(k) ?? [0, 0];
    m.set(k, [tx + f.counters.txBytes, rx + f.counters.rxBytes]);
  }
  return m;
}

export function liveView(t: DisplayTotals, processes: RateRow[], endpoints: RateRow[], rows = 10): string {
  const line = (r: RateRow) =>
    `${r.key.padEnd(44).slice(0, 44)} ${`${formatBytes(r.txRate)}/s`.padStart(12)} ${`${formatBytes(r.rxRate)}/s`.padStart(12)} ` +
    `${formatBytes(r.txBytes).padStart(10)} ${formatBytes(r.rxBytes).padStart(10)}`;
  const head = `${''.padEnd(44)} ${'TX/s'.padStart(12)} ${'RX/s'.padStart(12)} ${'TX'.padStart(10)} ${'RX'.padStart(10)}`;
  return [
    statusLine(t),
    '',
    `PROCESSES${head.slice(9)}`,
    ...processes.slice(0, rows).map(line),
    '',
    `ENDPOINTS${head.slice(9)}`,
    ...endpoints.slice(0, rows).map(line),
  ].join('\n');
}

export interface DisplaySource {
  flows(): Flow[];
  comm(pid: number): string | undefined;
  records(): number;
  lost(): number;
}

/**
 * Every intervalMs: with `live`, redraw the top-like view (alternate screen); otherwise rewrite one
 * status line on stderr. Only when stderr is a terminal. Returns stop().
 */
export function startTraceDisplay(source: DisplaySource, options: { live: boolean; intervalMs: number }): () => void {
  const out = process.stderr;
  if (!out.isTTY) return () => {};
  const started = Date.now();
  let before = { processes: new Map<string, [number, number]>(), endpoints: new Map<string, [number, number]>(), at: started };
  if (options.live) out.write('\x1b[?1049h');
  const tick = () => {
    const flows = source.flows();
    const totals = {
      elapsedMs: Date.now() - started,
      txBytes: flows.reduce((n, f) => n + f.counters.txBytes, 0),
      rxBytes: flows.reduce((n, f) => n + f.counters.rxBytes, 0),
      records: source.records(),
      lost: source.lost(),
    };
    if (!options.live) {
      if (totals.elapsedMs >= 2000) out.write(`\r\x1b[K${statusLine(totals)}`); // long traces only
      return;
    }
    const now = {
      processes: snapshot(flows, (f) => `${f.key.tgid} ${source.comm(f.key.tgid) ?? '?'}`),
      endpoints: snapshot(flows, (f) => `${protoName(f.key.proto)} ${formatEndpoint(f.key.remoteAddr, f.key.remotePort)}`),
      at: Date.now(),
    };
    const seconds = Math.max(0.001, (now.at - before.at) / 1000);
    out.write(`\x1b[H\x1b[2J${liveView(totals, rates(now.processes, before.processes, seconds), rates(now.endpoints, before.endpoints, seconds))}\n`);
    before = now;
  };
  const timer = setInterval(tick, options.intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    out.write(options.live ? '\x1b[?1049l' : '\r\x1b[K');
  };
}
