// SPDX-License-Identifier: MIT
// Traffic patterns: periodic, bulk, request-response, fan-out, failed-connects, long-lived-idle.
// Each is decided on flow samples (at most one per flow interval, at a send/recv, plus a final one)
// and connection rows, against the thresholds below. docs/patterns.md explains each rule.
import type { ConnectionReport, Pattern, PatternEndpoint, PatternKind } from '../schema/report';
import { Digest } from '../model/digest';
import type { ConnectionGroup } from '../model/folds';
import { formatBytes, formatDuration, formatEndpoint } from '../util/format';
import { endpointKey, flowDeltas, type FlowDelta, type FlowSeries } from './series';
import { serverPatterns } from './server';

const KiB = 1024;
const MiB = 1024 * 1024;

/** periodic: occurrences needed (so at least 3 gaps). */
export const PERIODIC_MIN_OCCURRENCES = 4;
/** periodic: largest jitter (standard deviation of the gaps) as a fraction of the period. */
export const PERIODIC_MAX_JITTER_RATIO = 0.2;
/** periodic: shortest period (ms). Busy flows are sampled every flow interval (100 ms), which would
 *  look like a period of 100–200 ms: twice the interval is the shortest period that cannot be that. */
export const PERIODIC_MIN_PERIOD_MS = 200;
/** bulk: bytes in one direction within one sustained run. */
export const BULK_MIN_BYTES = 1 * MiB;
/** bulk: average rate of that run (bytes/s). */
export const BULK_MIN_RATE = 1 * MiB;
/** bulk: for the decision, a run's duration is taken as at least this (ms), the sampling resolution.
 *  The rate reported is over the run's real span (from I/O times), not over this. */
export const BULK_MIN_WINDOW_MS = 100;
/** request-response: exchanges (requests, and as many responses give or take one) needed. */
export const RR_MIN_EXCHANGES = 4;
/** request-response: largest median request (bytes); the median response must be larger. */
export const RR_MAX_REQUEST_BYTES = 16 * KiB;
/** fan-out: distinct remote endpoints one process connected to or sent to. */
export const FANOUT_MIN_ENDPOINTS = 10;
/** failed-connects: failed connections to one endpoint that make a pattern. */
export const FAILED_CONNECTS_MIN = 1;
/** long-lived-idle: fraction of the trace the connection must stay open. */
export const LONG_IDLE_MIN_FRACTION = 0.8;
/** long-lived-idle: average rate (bytes/s, both directions) below which it is idle. */
export const LONG_IDLE_MAX_RATE = 1 * KiB;
/** long-lived-idle: shortest open time (ms), so that a 50 ms trace has no "long-lived" connection. */
export const LONG_IDLE_MIN_DURATION_MS = 1000;

/** Outcomes that count as failed connects. */
export const FAILED_OUTCOMES = ['refused', 'reset', 'timeout', 'failed'] as const;

export interface PatternInput {
  series: FlowSeries[];
  connections: ConnectionReport[];
  durationMs: number;
  /** Connection rows folded into aggregates (model/folds.ts): they count in the connection patterns. */
  folded?: ConnectionGroup[];
}

const KIND_ORDER: PatternKind[] = ['periodic', 'bulk', 'request-response', 'fan-out', 'failed-connects', 'long-lived-idle'];

// ---------------------------------------------------------------- helpers

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length === 0 ? NaN : s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function stddev(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length);
}

const uniq = (pids: number[]) => [...new Set(pids)].sort((a, b) => a - b);
const ep = (x: PatternEndpoint): PatternEndpoint => ({ proto: x.proto, remoteAddr: x.remoteAddr, remotePort: x.remotePort });
const where = (x: PatternEndpoint) => formatEndpoint(x.remoteAddr, x.remotePort);
const rate = (bytesPerSec: number) => `${formatBytes(bytesPerSec)}/s`;
const round = (v: number, digits = 3) => Number(v.toFixed(digits));

/** "pid 42 polls" / "pids 42, 43 poll" / "pids 1, 2, 3, 4 and 5 more poll". */
export function subject(pids: number[], singular: string, plural: string): string {
  if (pids.length === 1) return `pid ${pids[0]} ${singular}`;
  const shown = pids.length <= 4 ? pids.join(', ') : `${pids.slice(0, 4).join(', ')} and ${pids.length - 4} more`;
  return `pids ${shown} ${plural}`;
}

/** Connection rows that this side opened (or sent datagrams on) to a known remote. */
const outgoing = (c: ConnectionReport) => c.role !== 'passive' && c.remoteAddr !== '*';

/** long-lived-idle: open most of the trace, carrying almost nothing. */
function isIdle(c: ConnectionReport, durationMs: number): boolean {
  if (c.outcome !== 'open' && c.outcome !== 'closed' && c.outcome !== 'reset') return false;
  const openMs = c.durationMs ?? Math.max(0, durationMs - c.startOffsetMs);
  const bps = (c.txBytes + c.rxBytes) / (openMs / 1000);
  return openMs >= LONG_IDLE_MIN_DURATION_MS && openMs >= LONG_IDLE_MIN_FRACTION * durationMs && bps < LONG_IDLE_MAX_RATE;
}

function groupBy<T>(items: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of items) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}

// ---------------------------------------------------------------- periodic

export interface Period {
  periodMs: number;
  jitterMs: number;
  count: number;
}

/** Period (median gap) and jitter (standard deviation of the gaps) of event times, when they pass the
 *  periodic thresholds; null otherwise. */
export function findPeriod(times: number[]): Period | null {
  if (times.length < PERIODIC_MIN_OCCURRENCES) return null;
  const t = [...times].sort((a, b) => a - b);
  const gaps = t.slice(1).map((v, i) => v - t[i]);
  const periodMs = median(gaps);
  const jitterMs = stddev(gaps);
  if (periodMs < PERIODIC_MIN_PERIOD_MS || jitterMs > PERIODIC_MAX_JITTER_RATIO * periodMs) return null;
  return { periodMs, jitterMs, count: t.length };
}

/** Times of the samples that recorded new bytes in one direction, the final sample left out: it is
 *  taken when the flow ends, not at a send/recv. */
function eventTimes(deltas: FlowDelta[], dir: 'tx' | 'rx'): number[] {
  return deltas.slice(0, -1).filter((d) => (dir === 'tx' ? d.txBytes + d.txCalls : d.rxBytes + d.rxCalls) > 0).map((d) => d.tMs);
}

function periodic(pids: number[], endpoint: PatternEndpoint, p: Period, source: string, verb: [string, string]): Pattern {
  return {
    kind: 'periodic',
    pids,
    endpoint: ep(endpoint),
    evidence: { source, periodMs: round(p.periodMs), jitterMs: round(p.jitterMs), count: p.count },
    summary: `${subject(pids, ...verb)} ${where(endpoint)} every ${formatDuration(p.periodMs)} (±${formatDuration(p.jitterMs)}, ${p.count} times)`,
  };
}

// ---------------------------------------------------------------- bulk

export interface BulkRun {
  bytes: number;
  startMs: number;
  endMs: number;
  rate: number;
}

/** Largest sustained run of one direction of a flow: consecutive sample intervals each at least
 *  BULK_MIN_RATE, whose bytes and average rate (over at least BULK_MIN_WINDOW_MS) pass the bulk
 *  thresholds; null when none does. */
export function bulkRun(flow: FlowSeries, dir: 'tx' | 'rx'): BulkRun | null {
  let best: BulkRun | null = null;
  let run: { bytes: number; startMs: number; endMs: number } | null = null;
  let prevT = Math.min(flow.startMs, flow.samples[0]?.tMs ?? flow.startMs);
  const close = () => {
    if (!run) return;
    const span = run.endMs - run.startMs;
    const decide = run.bytes / (Math.max(span, BULK_MIN_WINDOW_MS) / 1000);
    if (run.bytes >= BULK_MIN_BYTES && decide >= BULK_MIN_RATE && (!best || run.bytes > best.bytes)) best = { ...run, rate: span > 0 ? run.bytes / (span / 1000) : NaN };
    run = null;
  };
  for (const d of flowDeltas(flow)) {
    const bytes = dir === 'tx' ? d.txBytes : d.rxBytes;
    const dt = d.tMs - prevT;
    const fast = bytes > 0 && (dt <= 0 || bytes / (dt / 1000) >= BULK_MIN_RATE);
    if (fast) {
      if (run) {
        run.bytes += bytes;
        run.endMs = d.tMs;
      } else run = { bytes, startMs: prevT, endMs: d.tMs };
    } else close();
    prevT = d.tMs;
  }
  close();
  return best;
}

/** Total length of the union of [start, end] intervals. */
function unionLength(spans: Array<[number, number]>): number {
  const s = [...spans].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let cur: [number, number] | null = null;
  for (const [a, b] of s) {
    if (cur && a <= cur[1]) cur[1] = Math.max(cur[1], b);
    else {
      if (cur) total += cur[1] - cur[0];
      cur = [a, b];
    }
  }
  return total + (cur ? cur[1] - cur[0] : 0);
}

// ---------------------------------------------------------------- request-response

interface Exchanges {
  side: 'client' | 'server';
  requests: number;
  medianRequest: number;
  medianResponse: number;
}

/** Small requests answered by larger responses, given the request and response sizes seen. */
export function exchanges(requests: number[], responses: number[], side: 'client' | 'server'): Exchanges | null {
  if (requests.length < RR_MIN_EXCHANGES || responses.length < RR_MIN_EXCHANGES - 1) return null;
  if (Math.abs(requests.length - responses.length) > 1) return null;
  const medianRequest = median(requests);
  const medianResponse = median(responses);
  if (medianRequest > RR_MAX_REQUEST_BYTES || !(medianResponse > medianRequest)) return null;
  return { side, requests: requests.length, medianRequest, medianResponse };
}

/** On one flow: each sample carries the request(s) sent since the last one and the response(s)
 *  received, so the per-sample increases of the two directions are the exchanges. */
function flowExchanges(deltas: FlowDelta[]): Exchanges | null {
  const tx = deltas.map((d) => d.txBytes).filter((b) => b > 0);
  const rx = deltas.map((d) => d.rxBytes).filter((b) => b > 0);
  return exchanges(tx, rx, 'client') ?? exchanges(rx, tx, 'server') ?? callExchanges(deltas);
}

/**
 * Exchanges faster than the flow interval leave too few samples to see them alternate: fall back on the
 * kernel's call counts. A client that sent n >= RR_MIN_EXCHANGES small messages and received about as
 * many answers, larger on average, is doing request/response.
 */
function callExchanges(deltas: FlowDelta[]): Exchanges | null {
  const total = deltas.reduce((t, d) => ({ txBytes: t.txBytes + d.txBytes, rxBytes: t.rxBytes + d.rxBytes, txCalls: t.txCalls + d.txCalls, rxCalls: t.rxCalls + d.rxCalls }), {
    txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0,
  });
  if (total.txCalls < RR_MIN_EXCHANGES || total.rxCalls < total.txCalls - 1) return null;
  const request = total.txBytes / total.txCalls;
  const response = total.rxBytes / total.txCalls;
  if (request > RR_MAX_REQUEST_BYTES || !(response > request)) return null;
  return { side: 'client', requests: total.txCalls, medianRequest: Math.round(request), medianResponse: Math.round(response) };
}

function requestResponse(pids: number[], endpoint: PatternEndpoint, x: Exchanges, source: string): Pattern {
  const how = source === 'connections' ? 'a new connection each' : 'on one connection';
  const verb: [string, string] = x.side === 'client' ? ['sends', 'send'] : ['answers', 'answer'];
  const dir = x.side === 'client' ? 'to' : 'from';
  return {
    kind: 'request-response',
    pids,
    endpoint: ep(endpoint),
    evidence: { source, side: x.side, requests: x.requests, medianRequestBytes: x.medianRequest, medianResponseBytes: x.medianResponse },
    summary:
      `${subject(pids, ...verb)} ${x.requests} requests ${dir} ${where(endpoint)}, ${how}: ` +
      `median request ${formatBytes(x.medianRequest)}, response ${formatBytes(x.medianResponse)}`,
  };
}

// ---------------------------------------------------------------- entry point

export function detectPatterns(input: PatternInput): Pattern[] {
  const out: Pattern[] = [];
  const { series, connections, durationMs } = input;
  const seen = new Set<string>(); // kind + endpoint + pids: one pattern each
  const push = (p: Pattern) => {
    const k = `${p.kind}|${p.endpoint ? endpointKey(p.endpoint) : ''}|${p.local ? `${p.local.localAddr}:${p.local.localPort}` : ''}|${p.pids.join(',')}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(p);
    }
  };
  const deltas = new Map(series.map((f) => [f, flowDeltas(f)] as const));

  // bulk: per endpoint and direction, the flows' sustained runs together. A server's accepted flows go
  // per local endpoint: it sends to its clients, not to (or from) each one's ephemeral port.
  const bulkFlows = new Set<FlowSeries>();
  const bulkKey = (f: FlowSeries) => (f.accepted ? `accepted/${f.proto}/${f.localAddr}/${f.localPort}` : endpointKey(f));
  for (const [, flows] of groupBy(series, bulkKey)) {
    for (const dir of ['rx', 'tx'] as const) {
      const runs = flows.map((f) => ({ f, run: bulkRun(f, dir) })).filter((x): x is { f: FlowSeries; run: BulkRun } => x.run !== null);
      if (runs.length === 0) continue;
      for (const r of runs) bulkFlows.add(r.f);
      const bytes = runs.reduce((a, r) => a + r.run.bytes, 0);
      // The span between the first and the last I/O of the runs (samples are taken at a send/recv,
      // the last one at the flow's last I/O): zero when all of it came in one call, which has no rate.
      const spanMs = unionLength(runs.map((r) => [r.run.startMs, r.run.endMs]));
      const bps = bytes / (spanMs / 1000);
      const pids = uniq(runs.map((r) => r.f.pid));
      const evidence = { direction: dir, bytes, durationMs: round(spanMs), ...(spanMs > 0 ? { rateBytesPerSec: Math.round(bps) } : {}), flows: runs.length };
      const f0 = flows[0];
      if (f0.accepted) {
        const local = { proto: f0.proto, localAddr: f0.localAddr ?? '*', localPort: f0.localPort ?? 0 };
        const verb = dir === 'rx' ? subject(pids, 'receives', 'receive') : subject(pids, 'sends', 'send');
        const n = runs.length;
        push({
          kind: 'bulk',
          pids,
          local,
          evidence: { ...evidence, side: 'server' },
          summary: `${verb} ${formatBytes(bytes)} on ${formatEndpoint(local.localAddr, local.localPort)} (${n} connection${n === 1 ? '' : 's'})${spanMs > 0 ? ` at ${rate(bps)} (${formatDuration(spanMs)})` : ' in one call'}`,
        });
        continue;
      }
      const what = dir === 'rx' ? `${subject(pids, 'downloads', 'download')} ${formatBytes(bytes)} from` : `${subject(pids, 'uploads', 'upload')} ${formatBytes(bytes)} to`;
      push({
        kind: 'bulk',
        pids,
        endpoint: ep(f0),
        evidence,
        summary: spanMs > 0 ? `${what} ${where(f0)} at ${rate(bps)} (${formatDuration(spanMs)})` : `${what} ${where(f0)} in one call`,
      });
    }
  }

  // periodic, on one persistent flow: the times of its samples (sends first, else receives).
  for (const f of series) {
    if (bulkFlows.has(f)) continue;
    const d = deltas.get(f)!;
    const tx = findPeriod(eventTimes(d, 'tx'));
    const polls = d.some((x) => x.rxBytes > 0);
    if (tx) push(periodic([f.pid], f, tx, 'flow', f.accepted ? ['answers', 'answer'] : polls ? ['polls', 'poll'] : ['sends to', 'send to']));
    else {
      const rx = findPeriod(eventTimes(d, 'rx'));
      if (rx) push(periodic([f.pid], f, rx, 'flow', ['hears from', 'hear from']));
    }
  }
  // periodic, as new connections to one endpoint (from any process: a shell loop forks a new one each time).
  const byEndpoint = groupBy(connections.filter(outgoing), endpointKey);
  for (const [, conns] of byEndpoint) {
    const p = findPeriod(conns.map((c) => c.startOffsetMs));
    if (p) push(periodic(uniq(conns.map((c) => c.pid)), conns[0], p, 'connections', ['connects to', 'connect to']));
  }
  const periodicAt = new Set(out.filter((p) => p.kind === 'periodic').map((p) => endpointKey(p.endpoint!)));

  // request-response: on one flow, or as many short connections to one endpoint. A periodic poller
  // is request-response too: its periodic pattern says it already.
  for (const f of series) {
    if (periodicAt.has(endpointKey(f)) || f.accepted) continue; // accepted: the server's view below
    const x = flowExchanges(deltas.get(f)!);
    if (x) push(requestResponse([f.pid], f, x, 'flow'));
  }
  // Folded outgoing rows (model/folds.ts) of an endpoint join its listed ones.
  const foldedOut = new Map<string, ConnectionGroup>();
  for (const g of input.folded ?? []) {
    if (g.endpoint.direction !== 'outbound' || g.outgoing === 0) continue;
    foldedOut.set(endpointKey({ proto: g.endpoint.proto, remoteAddr: g.endpoint.remoteAddr, remotePort: g.endpoint.port }), g);
  }
  for (const [k, conns] of byEndpoint) {
    if (periodicAt.has(k)) continue;
    const done = conns.filter((c) => c.durationMs !== null && c.txBytes > 0 && c.rxBytes > 0);
    const g = foldedOut.get(k);
    if (g && g.requests.count > 0) {
      const req = Digest.of(done.map((c) => c.txBytes), []);
      const resp = Digest.of(done.map((c) => c.rxBytes), []);
      req.merge(g.requests);
      resp.merge(g.responses);
      const n = req.count;
      const medianRequest = req.quantile(0.5)!;
      const medianResponse = resp.quantile(0.5)!;
      if (n >= RR_MIN_EXCHANGES && medianRequest <= RR_MAX_REQUEST_BYTES && medianResponse > medianRequest) {
        push(requestResponse(uniq([...done.map((c) => c.pid), ...g.pids]), conns[0], { side: 'client', requests: n, medianRequest, medianResponse }, 'connections'));
      }
      continue;
    }
    const x = exchanges(done.map((c) => c.txBytes), done.map((c) => c.rxBytes), 'client');
    if (x && done.length >= RR_MIN_EXCHANGES) push(requestResponse(uniq(done.map((c) => c.pid)), conns[0], { ...x, requests: done.length }, 'connections'));
  }

  // fan-out: distinct remote endpoints per process.
  const remotes = new Map<number, Map<string, PatternEndpoint>>();
  const note = (pid: number, e: PatternEndpoint) => {
    if (e.remoteAddr === '*') return;
    let m = remotes.get(pid);
    if (!m) remotes.set(pid, (m = new Map()));
    m.set(endpointKey(e), e);
  };
  for (const c of connections) if (outgoing(c)) note(c.pid, c);
  for (const g of foldedOut.values()) for (const pid of g.pids) note(pid, { proto: g.endpoint.proto, remoteAddr: g.endpoint.remoteAddr, remotePort: g.endpoint.port });
  for (const [pid, m] of remotes) {
    if (m.size < FANOUT_MIN_ENDPOINTS) continue;
    const hosts = new Set([...m.values()].map((e) => e.remoteAddr)).size;
    const ports = new Set([...m.values()].map((e) => e.remotePort)).size;
    push({
      kind: 'fan-out',
      pids: [pid],
      evidence: { endpoints: m.size, addresses: hosts, ports },
      summary: `pid ${pid} talks to ${m.size} distinct remote endpoints (${hosts} address${hosts === 1 ? '' : 'es'}, ${ports} port${ports === 1 ? '' : 's'})`,
    });
  }

  // failed-connects: per remote address, so a scan of many closed ports is one finding, not one per port.
  // Folded rows count as failures and attempts of their remote address; each folded group is one port.
  interface Failures { proto: 'tcp' | 'udp'; remoteAddr: string; rows: ConnectionReport[]; folded: ConnectionGroup[] }
  const failures = new Map<string, Failures>();
  const failuresOf = (proto: 'tcp' | 'udp', remoteAddr: string) => {
    const k = `${proto}/${remoteAddr}`;
    let f = failures.get(k);
    if (!f) failures.set(k, (f = { proto, remoteAddr, rows: [], folded: [] }));
    return f;
  };
  const isFailed = (o: string) => (FAILED_OUTCOMES as readonly string[]).includes(o);
  for (const c of connections) if (c.role !== 'passive' && c.remoteAddr !== '*' && isFailed(c.outcome)) failuresOf(c.proto, c.remoteAddr).rows.push(c);
  for (const g of input.folded ?? []) {
    if (g.endpoint.direction === 'outbound' && g.endpoint.remoteAddr !== '*' && FAILED_OUTCOMES.some((o) => (g.outcomes[o] ?? 0) > 0)) failuresOf(g.endpoint.proto, g.endpoint.remoteAddr).folded.push(g);
  }
  for (const f of failures.values()) {
    const count = (o: string) => f.rows.filter((c) => c.outcome === o).length + f.folded.reduce((n, g) => n + (g.outcomes[o as keyof typeof g.outcomes] ?? 0), 0);
    const n = FAILED_OUTCOMES.reduce((a, o) => a + count(o), 0);
    if (n < FAILED_CONNECTS_MIN) continue;
    const same = (x: { proto: string; remoteAddr: string }) => x.proto === f.proto && x.remoteAddr === f.remoteAddr;
    const attempts =
      connections.filter((c) => c.role !== 'passive' && same(c)).length + (input.folded ?? []).filter((g) => g.endpoint.direction === 'outbound' && same({ proto: g.endpoint.proto, remoteAddr: g.endpoint.remoteAddr })).reduce((a, g) => a + g.connections, 0);
    const byOutcome = FAILED_OUTCOMES.map((o) => [o, count(o)] as const).filter(([, k]) => k > 0);
    const pids = uniq([...f.rows.map((c) => c.pid), ...f.folded.flatMap((g) => [...g.pids])]);
    const ports = uniq([...f.rows.map((c) => c.remotePort), ...f.folded.map((g) => g.endpoint.port)]);
    const first: PatternEndpoint = f.rows[0] ?? { proto: f.proto, remoteAddr: f.remoteAddr, remotePort: ports[0] };
    const target = ports.length === 1 ? where({ ...first, remotePort: ports[0] }) : `${f.remoteAddr} (${ports.length} ports)`;
    push({
      kind: 'failed-connects',
      pids,
      endpoint: ports.length === 1 ? ep({ ...first, remotePort: ports[0] }) : undefined,
      evidence: { failures: n, attempts, ports: ports.length, ...Object.fromEntries(byOutcome) },
      summary: `${subject(pids, 'had', 'had')} ${n} of ${attempts} connection${attempts === 1 ? '' : 's'} to ${target} fail ` + `(${byOutcome.map(([o, k]) => `${k} ${o}`).join(', ')})`,
    });
  }

  // long-lived-idle: per endpoint, connections open most of the trace that carried almost nothing.
  // A heartbeat found periodic above is not idle: its periodic pattern says what goes on.
  const idle = connections.filter((c) => c.role !== 'passive' && !periodicAt.has(endpointKey(c)) && isIdle(c, durationMs));
  for (const [, conns] of groupBy(idle, endpointKey)) {
    const openMs = Math.max(...conns.map((c) => c.durationMs ?? Math.max(0, durationMs - c.startOffsetMs)));
    const bytes = conns.reduce((a, c) => a + c.txBytes + c.rxBytes, 0);
    const bps = bytes / conns.length / (openMs / 1000);
    const pids = uniq(conns.map((c) => c.pid));
    const n = conns.length;
    push({
      kind: 'long-lived-idle',
      pids,
      endpoint: ep(conns[0]),
      evidence: { connections: n, openMs: round(openMs), fractionOfTrace: round(openMs / durationMs), bytes, rateBytesPerSec: round(bps, 1) },
      summary:
        `${subject(pids, 'keeps', 'keep')} ${n === 1 ? 'a connection' : `${n} connections`} to ${where(conns[0])} open ` +
        `${formatDuration(openMs)} (${Math.round((100 * openMs) / durationMs)}% of the trace) at ${rate(bps)}${n === 1 ? '' : ' each'}`,
    });
  }

  // The server's side: accepted connections, per local endpoint (src/analysis/server.ts).
  const rules = { findPeriod, minRequests: RR_MIN_EXCHANGES, maxRequestBytes: RR_MAX_REQUEST_BYTES, idle: (c: ConnectionReport) => isIdle(c, durationMs), subject };
  for (const p of serverPatterns(series, connections, durationMs, rules)) push(p);

  const keyOf = (p: Pattern) => `${p.endpoint ? endpointKey(p.endpoint) : p.local ? `${p.local.localAddr}:${p.local.localPort}` : ''}`;
  return out.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || a.pids[0] - b.pids[0] || keyOf(a).localeCompare(keyOf(b)));
}
