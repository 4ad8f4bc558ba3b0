// SPDX-License-Identifier: MIT
// Patterns seen from a server's side: the flows of connections it accepted, grouped by the local endpoint
// they were accepted on. A server answering 2000 commands on one connection answers requests (it does
// not "send 4 requests" to its client's ephemeral port), and clients connecting every 465 ms are accepted
// connections, not connects. docs/patterns.md ("Server side") gives the rules.
import type { ConnectionReport, Pattern, PatternLocal } from '../schema/report';
import { formatBytes, formatCount, formatDuration, formatEndpoint } from '../util/format';
import type { FlowSeries } from './series';

export interface ServerPatternRules {
  findPeriod: (times: number[]) => { periodMs: number; jitterMs: number; count: number } | null;
  minRequests: number;
  maxRequestBytes: number;
  idle: (c: ConnectionReport) => boolean;
  subject: (pids: number[], singular: string, plural: string) => string;
}

const localKey = (l: PatternLocal) => `${l.proto}/${l.localAddr}/${l.localPort}`;
const uniq = (pids: number[]) => [...new Set(pids)].sort((a, b) => a - b);
const round = (v: number, digits = 3) => Number(v.toFixed(digits));
const plural = (n: number, word: string) => `${formatCount(n)} ${word}${n === 1 ? '' : 's'}`;

function groupByLocal<T>(items: T[], local: (x: T) => PatternLocal): Map<string, { local: PatternLocal; items: T[] }> {
  const m = new Map<string, { local: PatternLocal; items: T[] }>();
  for (const x of items) {
    const l = local(x);
    const g = m.get(localKey(l));
    if (g) g.items.push(x);
    else m.set(localKey(l), { local: l, items: [x] });
  }
  return m;
}

/** Accepted connection rows, one per socket (a socket shared by master and worker has a row each). */
function acceptedSockets(connections: ConnectionReport[]): ConnectionReport[] {
  const seen = new Set<string>();
  return connections.filter((c) => {
    if (c.role !== 'passive') return false;
    const id = `${c.localAddr}/${c.localPort}/${c.remoteAddr}/${c.remotePort}/${c.startOffsetMs}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

/**
 * Server-side patterns: `periodic` accepts (source "accepts"), `request-response` answered on accepted
 * connections (side "server", source "accepted": requests = receive calls, responses = send calls), and
 * `long-lived-idle` accepted connections, each per local endpoint.
 */
export function serverPatterns(series: FlowSeries[], connections: ConnectionReport[], durationMs: number, rules: ServerPatternRules): Pattern[] {
  const out: Pattern[] = [];
  const where = (l: PatternLocal) => formatEndpoint(l.localAddr, l.localPort);
  const periodicAt = new Set<string>();

  const rows = acceptedSockets(connections);
  for (const [key, { local, items }] of groupByLocal(rows, (c) => ({ proto: c.proto, localAddr: c.localAddr, localPort: c.localPort }))) {
    const p = rules.findPeriod(items.map((c) => c.startOffsetMs));
    if (!p) continue;
    periodicAt.add(key);
    const pids = uniq(connections.filter((c) => c.role === 'passive' && localKey({ proto: c.proto, localAddr: c.localAddr, localPort: c.localPort }) === key).map((c) => c.pid));
    out.push({
      kind: 'periodic',
      pids,
      local,
      evidence: { source: 'accepts', periodMs: round(p.periodMs), jitterMs: round(p.jitterMs), count: p.count },
      summary: `${rules.subject(pids, 'accepts', 'accept')} a connection on ${where(local)} every ${formatDuration(p.periodMs)} (±${formatDuration(p.jitterMs)}, ${p.count} times)`,
    });
  }

  const accepted = series.filter((f) => f.accepted && f.proto === 'tcp' && f.localPort !== undefined);
  for (const [, { local, items }] of groupByLocal(accepted, (f) => ({ proto: f.proto, localAddr: f.localAddr ?? '*', localPort: f.localPort! }))) {
    const last = items.map((f) => f.samples[f.samples.length - 1]);
    const requests = last.reduce((a, s) => a + s.rxCalls, 0);
    const responses = last.reduce((a, s) => a + s.txCalls, 0);
    const rxBytes = last.reduce((a, s) => a + s.rxBytes, 0);
    const txBytes = last.reduce((a, s) => a + s.txBytes, 0);
    // every connection that brought a request was answered on
    const answered = last.every((s) => s.rxCalls === 0 || s.txCalls > 0);
    if (requests < rules.minRequests || responses === 0 || !answered || rxBytes / requests > rules.maxRequestBytes) continue;
    const pids = uniq(items.map((f) => f.pid));
    const sockets = new Set(items.map((f) => f.socket)).size;
    const clients = new Set(items.map((f) => f.remoteAddr)).size;
    const averageRequest = Math.round(rxBytes / requests);
    const averageResponse = Math.round(txBytes / requests);
    out.push({
      kind: 'request-response',
      pids,
      local,
      evidence: { source: 'accepted', side: 'server', requests, responses, connections: sockets, clients, averageRequestBytes: averageRequest, averageResponseBytes: averageResponse },
      summary:
        `${rules.subject(pids, 'answers', 'answer')} ${formatCount(requests)} requests on ${where(local)} ` +
        `(${plural(sockets, 'connection')} from ${plural(clients, 'client')}): average request ${formatBytes(averageRequest)}, response ${formatBytes(averageResponse)}`,
    });
  }

  const idle = rows.filter((c) => !periodicAt.has(localKey({ proto: c.proto, localAddr: c.localAddr, localPort: c.localPort })) && rules.idle(c));
  for (const [, { local, items }] of groupByLocal(idle, (c) => ({ proto: c.proto, localAddr: c.localAddr, localPort: c.localPort }))) {
    const openMs = Math.max(...items.map((c) => c.durationMs ?? Math.max(0, durationMs - c.startOffsetMs)));
    const bytes = items.reduce((a, c) => a + c.txBytes + c.rxBytes, 0);
    const bps = bytes / items.length / (openMs / 1000);
    const pids = uniq(items.map((c) => c.pid));
    const n = items.length;
    out.push({
      kind: 'long-lived-idle',
      pids,
      local,
      evidence: { side: 'server', connections: n, openMs: round(openMs), fractionOfTrace: round(openMs / durationMs), bytes, rateBytesPerSec: round(bps, 1) },
      summary:
        `${rules.subject(pids, 'holds', 'hold')} ${n === 1 ? 'an idle connection' : `${n} idle connections`} accepted on ${where(local)} open ` +
        `${formatDuration(openMs)} (${Math.round((100 * openMs) / durationMs)}% of the trace) at ${formatBytes(bps)}/s${n === 1 ? '' : ' each'}`,
    });
  }
  return out;
}
