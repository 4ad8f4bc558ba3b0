// SPDX-License-Identifier: MIT
// The NDJSON line of a decoded exchange (--events with --l7): `"type":"exchange"`, with the fields every
// line has (tMs since the trace's origin at the request's first byte, pid, startTimeNs), the socket, the
// endpoint as the report names it, and the exchange (docs/l7.md "Exchange"). Pure.
import type { L7Event } from '../model/l7';
import { endpointFields } from '../report/sections';

const ms = (ns: number | null, originNs = 0) => (ns === null ? null : Math.round((ns - originNs) / 1000) / 1000);

export function exchangeEvent(e: L7Event, originNs: number): Record<string, unknown> {
  const x = e.exchange;
  const at = x.requestStartNs ?? x.responseStartNs ?? x.requestEndNs ?? x.responseEndNs;
  const ep = e.endpoint;
  return {
    type: 'exchange',
    tMs: ms(at, originNs),
    pid: e.pid,
    ...(e.startTime ? { startTimeNs: Number(e.startTime) } : {}),
    socket: e.socket.toString(),
    endpoint: ep.label,
    ...endpointFields(ep.service),
    ...(ep.name ? { remoteName: ep.name, nameSource: ep.nameSource } : {}),
    protocol: x.protocol,
    role: x.role,
    operation: x.operation,
    status: x.status,
    error: x.error,
    host: x.host,
    requestBytes: x.requestBytes,
    responseBytes: x.responseBytes,
    responseStartMs: ms(x.responseStartNs, originNs),
    responseEndMs: ms(x.responseEndNs, originNs),
    latencyFirstMs: ms(x.latencyFirstNs),
    latencyLastMs: ms(x.latencyLastNs),
    tls: x.tls,
    partial: x.partial,
    notes: x.notes,
    detail: x.detail,
  };
}
