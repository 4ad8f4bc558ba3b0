// SPDX-License-Identifier: MIT
// L7 patterns, in the shape of the traffic patterns (src/aggregate/patterns.ts): decided on the
// aggregator's rows and trails, against the thresholds below. docs/l7.md explains each rule.
// - l7-periodic: the same request (process, endpoint, operation) at a steady period: "pid 42 sends
//   GET /health to api.test:80 every 30 s"; same period rule as the flow patterns (findPeriod).
// - l7-errors: a share of the requests to one endpoint that failed: "12 % of requests to api.test:80
//   answer 5xx".
// - l7-n-plus-one: the same query repeated within one request the process served (its server-side
//   exchange, alone in flight, contains them), or, without such a request, in a burst on one
//   connection (back to back, each starting within BURST_MAX_GAP_MS of the previous one's end).
import { findPeriod } from './patterns';
import type { L7Evidence, TrailEntry } from './l7-aggregate';
import type { ExchangeProtocol } from '../l7/types';

/** l7-errors: requests needed, and the share of them that failed. */
export const L7_ERRORS_MIN_REQUESTS = 10;
export const L7_ERRORS_MIN_RATIO = 0.05;
/** l7-n-plus-one: identical operations within one request, or in one burst. */
export const NPLUS1_MIN_REPEATS = 10;
/** l7-n-plus-one (burst): largest gap between one operation's end and the next one's start (ms). */
export const BURST_MAX_GAP_MS = 50;

export type L7PatternKind = 'l7-periodic' | 'l7-errors' | 'l7-n-plus-one';

export interface L7Pattern {
  kind: L7PatternKind;
  pids: number[];
  endpoint: string;
  protocol: ExchangeProtocol;
  evidence: Record<string, number | string>;
  summary: string;
}

const QUERY_PROTOCOLS = new Set<ExchangeProtocol>(['postgres', 'redis', 'http1', 'http2', 'grpc']);
const KIND_ORDER: L7PatternKind[] = ['l7-periodic', 'l7-errors', 'l7-n-plus-one'];

const uniq = (pids: number[]) => [...new Set(pids)].sort((a, b) => a - b);
const round = (v: number, digits = 3) => Number(v.toFixed(digits));
const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/** "250 ms", "1.5 s", "30 s", "2 min". */
export function formatMs(ms: number): string {
  if (ms < 1) return `${round(ms * 1000, 0)} µs`;
  if (ms < 1000) return `${round(ms, ms < 10 ? 1 : 0)} ms`;
  if (ms < 120_000) return `${round(ms / 1000, ms < 10_000 ? 2 : 1)} s`;
  return `${round(ms / 60_000, 1)} min`;
}

function who(pids: number[]): string {
  return pids.length === 1 ? `pid ${pids[0]}` : `pids ${pids.slice(0, 4).join(', ')}${pids.length > 4 ? ` and ${pids.length - 4} more` : ''}`;
}

const shown = (op: string) => (op.length > 80 ? `${op.slice(0, 79)}…` : op);

function failureWords(p: ExchangeProtocol): string {
  switch (p) {
    case 'http1':
    case 'http2':
      return 'answer 5xx';
    case 'grpc':
      return 'end with a gRPC error or 5xx';
    case 'dns':
      return 'answer an error rcode (NXDOMAIN, SERVFAIL, ...)';
    case 'redis':
      return 'get an error reply';
    case 'postgres':
      return 'fail with an ErrorResponse';
    case 'tls':
      return 'fail their handshake';
  }
}

export function detectL7Patterns(ev: L7Evidence): L7Pattern[] {
  const out: L7Pattern[] = [];
  const rows = ev.rows.filter((r) => !r.other && r.pid !== null);

  // l7-periodic: per process, endpoint and operation (statuses together).
  const byOp = new Map<string, { pid: number; endpoint: string; protocol: ExchangeProtocol; operation: string; role: string; times: number[] }>();
  for (const r of rows) {
    const k = `${r.pid}\u0000${r.endpoint}\u0000${r.protocol}\u0000${r.role}\u0000${r.operation}`;
    let g = byOp.get(k);
    if (!g) byOp.set(k, (g = { pid: r.pid!, endpoint: r.endpoint, protocol: r.protocol, operation: r.operation, role: r.role ?? 'client', times: [] }));
    g.times.push(...r.startTimesMs);
  }
  for (const g of byOp.values()) {
    const p = findPeriod(g.times);
    if (!p) continue;
    const verb = g.role === 'server' ? 'answers' : 'sends';
    const dir = g.role === 'server' ? 'from' : 'to';
    out.push({
      kind: 'l7-periodic',
      pids: [g.pid],
      endpoint: g.endpoint,
      protocol: g.protocol,
      evidence: { operation: g.operation, periodMs: round(p.periodMs), jitterMs: round(p.jitterMs), count: p.count },
      summary: `pid ${g.pid} ${verb} ${shown(g.operation)} ${dir} ${g.endpoint} every ${formatMs(p.periodMs)} (±${formatMs(p.jitterMs)}, ${p.count} times)`,
    });
  }

  // l7-errors: per endpoint and protocol, all processes and operations together.
  const byEndpoint = new Map<string, { endpoint: string; protocol: ExchangeProtocol; pids: number[]; count: number; errors: number }>();
  for (const r of rows) {
    if (r.role !== 'client' && r.role !== 'server') continue;
    const k = `${r.endpoint}\u0000${r.protocol}\u0000${r.role}`;
    let g = byEndpoint.get(k);
    if (!g) byEndpoint.set(k, (g = { endpoint: r.endpoint, protocol: r.protocol, pids: [], count: 0, errors: 0 }));
    g.pids.push(r.pid!);
    g.count += r.count;
    g.errors += r.errors;
  }
  for (const g of byEndpoint.values()) {
    if (g.count < L7_ERRORS_MIN_REQUESTS || g.errors / g.count < L7_ERRORS_MIN_RATIO) continue;
    const pids = uniq(g.pids);
    const pct = Math.round((100 * g.errors) / g.count);
    out.push({
      kind: 'l7-errors',
      pids,
      endpoint: g.endpoint,
      protocol: g.protocol,
      evidence: { requests: g.count, errors: g.errors, ratio: round(g.errors / g.count) },
      summary: `${pct} % of requests to ${g.endpoint} (${who(pids)}) ${failureWords(g.protocol)}: ${g.errors} of ${g.count}`,
    });
  }

  for (const [pid, trail] of ev.trails) out.push(...nPlusOne(pid, trail));
  return out.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.pids[0] - b.pids[0] || a.endpoint.localeCompare(b.endpoint));
}

/** N+1 for one process: per served request first, bursts on one connection for the rest. */
function nPlusOne(pid: number, trail: TrailEntry[]): L7Pattern[] {
  const out: L7Pattern[] = [];
  const servers = trail.filter((e) => e.role === 'server' && (e.protocol === 'http1' || e.protocol === 'http2' || e.protocol === 'grpc')).sort((a, b) => a.startNs - b.startNs);
  const clients = trail.filter((e) => e.role === 'client' && QUERY_PROTOCOLS.has(e.protocol)).sort((a, b) => a.startNs - b.startNs);
  const covered = new Set<TrailEntry>();
  // Per request: only requests alone in flight, so the queries inside are theirs.
  const perRequest = new Map<string, { request: string; endpoint: string; protocol: ExchangeProtocol; operation: string; repeats: number[] }>();
  for (let i = 0; i < servers.length; i++) {
    const s = servers[i];
    const overlaps = (i > 0 && servers[i - 1].endNs > s.startNs) || (i + 1 < servers.length && servers[i + 1].startNs < s.endNs);
    if (overlaps) continue;
    const inside = clients.filter((c) => c.startNs >= s.startNs && c.startNs <= s.endNs);
    const counts = new Map<string, TrailEntry[]>();
    for (const c of inside) {
      const k = `${c.endpoint}\u0000${c.protocol}\u0000${c.operation}`;
      const list = counts.get(k);
      if (list) list.push(c);
      else counts.set(k, [c]);
    }
    for (const [k, list] of counts) {
      if (list.length < NPLUS1_MIN_REPEATS) continue;
      for (const c of list) covered.add(c);
      const key = `${s.operation}\u0000${k}`;
      let g = perRequest.get(key);
      if (!g) perRequest.set(key, (g = { request: s.operation, endpoint: list[0].endpoint, protocol: list[0].protocol, operation: list[0].operation, repeats: [] }));
      g.repeats.push(list.length);
    }
  }
  for (const g of perRequest.values()) {
    const m = median(g.repeats);
    out.push({
      kind: 'l7-n-plus-one',
      pids: [pid],
      endpoint: g.endpoint,
      protocol: g.protocol,
      evidence: { source: 'request', request: g.request, operation: g.operation, requests: g.repeats.length, medianRepeats: m, maxRepeats: Math.max(...g.repeats) },
      summary: `N+1: pid ${pid} runs ${shown(g.operation)} ${m} times per ${shown(g.request)} (median of ${g.repeats.length} request${g.repeats.length === 1 ? '' : 's'}) on ${g.endpoint}`,
    });
  }

  // Bursts: consecutive identical operations on one connection (or endpoint when connections are not told).
  const byConn = new Map<string, TrailEntry[]>();
  for (const c of clients) {
    const k = `${c.endpoint}\u0000${c.connection ?? ''}`;
    const list = byConn.get(k);
    if (list) list.push(c);
    else byConn.set(k, [c]);
  }
  const bursts = new Map<string, { endpoint: string; protocol: ExchangeProtocol; operation: string; runs: number[]; spans: number[] }>();
  for (const list of byConn.values()) {
    let run: TrailEntry[] = [];
    const close = () => {
      if (run.length >= NPLUS1_MIN_REPEATS && !run.some((c) => covered.has(c))) {
        const k = `${run[0].endpoint}\u0000${run[0].protocol}\u0000${run[0].operation}`;
        let g = bursts.get(k);
        if (!g) bursts.set(k, (g = { endpoint: run[0].endpoint, protocol: run[0].protocol, operation: run[0].operation, runs: [], spans: [] }));
        g.runs.push(run.length);
        g.spans.push((run[run.length - 1].endNs - run[0].startNs) / 1e6);
      }
      run = [];
    };
    for (const c of list) {
      const prev = run[run.length - 1];
      if (prev && (prev.operation !== c.operation || (c.startNs - prev.endNs) / 1e6 > BURST_MAX_GAP_MS)) close();
      run.push(c);
    }
    close();
  }
  for (const g of bursts.values()) {
    const longest = Math.max(...g.runs);
    const span = g.spans[g.runs.indexOf(longest)];
    out.push({
      kind: 'l7-n-plus-one',
      pids: [pid],
      endpoint: g.endpoint,
      protocol: g.protocol,
      evidence: { source: 'burst', operation: g.operation, bursts: g.runs.length, longest, longestSpanMs: round(span) },
      summary: `N+1: pid ${pid} runs ${shown(g.operation)} ${longest} times back to back in ${formatMs(span)} on ${g.endpoint}${g.runs.length > 1 ? ` (${g.runs.length} such bursts)` : ''}`,
    });
  }
  return out;
}
