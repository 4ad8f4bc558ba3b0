// SPDX-License-Identifier: MIT
// The report's `l7` section: the aggregator's summary rows with their endpoints spelled out, the L7
// patterns, and notes for what was not seen or not decoded. Pure.
import type { L7Evidence, L7Summary, L7SummaryRow } from '../analysis/l7-aggregate';
import { detectL7Patterns } from '../analysis/l7-patterns';
import type { L7Counts, L7Endpoint } from '../model/l7';
import type { L7Report, L7RowReport, LostCounters } from '../schema/report';
import { endpointFields } from './sections';

export interface L7Inputs {
  /** Bytes copied per call (--l7-snaplen). */
  snaplen: number;
  summary: L7Summary;
  evidence: L7Evidence;
  counts: L7Counts;
  /** Endpoint labels (the rows' `endpoint`) and what they name. */
  endpoints: ReadonlyMap<string, L7Endpoint>;
  /** The decoder cap (model/l7.ts), for the note when it was reached. */
  maxDecoders: number;
}

const HTTP = new Set(['http1', 'http2', 'grpc']);
const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function rowOf(r: L7SummaryRow, endpoints: ReadonlyMap<string, L7Endpoint>): L7RowReport {
  const e = r.other ? undefined : endpoints.get(r.endpoint);
  const fields = e ? endpointFields(e.service) : undefined;
  const out: L7RowReport = {
    pid: r.pid,
    endpoint: r.endpoint,
    ...(fields ?? {}),
    ...(e?.name ? { remoteName: e.name, nameSource: e.nameSource } : {}),
    protocol: r.protocol,
    role: r.role,
    operation: r.operation,
    status: r.status,
    count: r.count,
    errors: r.errors,
    partial: r.partial,
    tls: r.tls,
    requestBytes: r.requestBytes,
    responseBytes: r.responseBytes,
    latencyFirst: r.latencyFirst,
    latencyLast: r.latencyLast,
    ...(r.other ? { other: true as const, folded: r.folded } : {}),
  };
  if (!r.other && HTTP.has(r.protocol)) {
    const space = r.operation.indexOf(' ');
    if (space > 0) {
      out.method = r.operation.slice(0, space);
      out.path = r.operation.slice(space + 1);
    }
  }
  if (!r.other && r.protocol === 'redis') out.command = r.operation;
  if (!r.other && r.protocol === 'postgres') out.query = r.operation;
  return out;
}

/** The reasons most often given, "a (3), b (1)". */
function topReasons(reasons: Map<string, number>, prefix: string, n = 3): string {
  const list = [...reasons].filter(([k]) => k.startsWith(prefix)).sort((a, b) => b[1] - a[1]).slice(0, n);
  return list.map(([k, v]) => `${k.slice(k.indexOf(': ') + 2)} (${v})`).join('; ');
}

function l7Notes(input: L7Inputs, lostData: number): string[] {
  const { counts: c, snaplen } = input;
  const k = c.connections;
  const notes: string[] = [];
  if (lostData > 0) notes.push(`L7: ${plural(lostData, 'data record')} lost in the kernel (ring buffer full): exchanges on those connections may be partial or missing`);
  if (k.unknown > 0) notes.push(`L7: ${plural(k.unknown, 'connection')} looked like a decoded protocol to the kernel's filter but matched none (${topReasons(c.reasons, 'unknown')})`);
  if (k.undecodable > 0) notes.push(`L7: ${plural(k.undecodable, 'connection')} could not be followed to the end, exchanges before that are counted (${topReasons(c.reasons, 'undecodable')})`);
  if (k.opaque > 0) notes.push(`L7: ${plural(k.opaque, 'connection')} not decoded past a point by design (${topReasons(c.reasons, 'opaque')})`);
  if (k.evicted > 0) notes.push(`L7: ${plural(k.evicted, 'connection')} stopped being decoded early: more than ${input.maxDecoders} connections were being decoded at once`);
  if (c.partial > 0) notes.push(`L7: ${plural(c.partial, 'exchange')} partial (a part not seen: started before the trace, past the ${snaplen}-byte copy limit, or a gap); their figures are what was seen`);
  const missing = c.missing.notCopied + c.missing.copyFailed;
  if (missing > 0) notes.push(`L7: the bytes of ${plural(missing, 'call')} were not copied (sendfile, splice, kernel pages, or a failed read): sizes counted, content not seen`);
  if (c.missing.noBuffer > 0) notes.push(`L7: ${plural(c.missing.noBuffer, 'call')} without a user buffer to copy from (io_uring): content not seen`);
  if (c.tlsWithoutSocket > 0) notes.push(`L7: ${plural(c.tlsWithoutSocket, 'TLS plaintext record')} whose socket the kernel did not know: not decoded`);
  if (input.summary.foldedKeys > 0) notes.push(`L7: ${plural(input.summary.foldedKeys, 'operation')} without a row of their own are in the "(other)" rows`);
  return notes;
}

export function l7Section(input: L7Inputs, lost: LostCounters): L7Report {
  const c = input.counts;
  const lostData = lost.recordsByKind.data ?? 0;
  return {
    snaplen: input.snaplen,
    exchanges: input.summary.exchanges,
    partial: c.partial,
    rows: input.summary.rows.map((r) => rowOf(r, input.endpoints)),
    foldedKeys: input.summary.foldedKeys,
    patterns: detectL7Patterns(input.evidence),
    connections: { ...c.connections, tlsPlaintext: c.plaintext },
    records: { total: c.records, tls: c.tlsRecords, ...c.missing, cut: c.cut, lost: lostData, tlsWithoutSocket: c.tlsWithoutSocket },
    notes: l7Notes(input, lostData),
  };
}
