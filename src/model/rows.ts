// SPDX-License-Identifier: MIT
// The connection rows of one socket: one per (socket, process, remote) flow, with the TCP lifecycle of
// the socket where there is one. Times stay in ns here; report/sections.ts turns them into offsets, and
// model/folds.ts adds folded rows to their aggregates. Pure.
import type { Outcome } from '../schema/report';
import type { FlowCounters } from '../kernel/records';
import type { TcpConnection } from './connections';
import type { Flow } from './flows';
import { protoName } from '../util/net';

export interface SocketRow {
  /** The flow that moved the bytes (null: a TCP connection that moved none). */
  flow: Flow | null;
  cookie: bigint;
  pid: number;
  startTime: bigint;
  proto: 'tcp' | 'udp';
  role: 'active' | 'passive' | 'udp' | 'unknown';
  localAddr: string;
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  startNs: number;
  endNs: number | null;
  counters: FlowCounters;
  outcome: Outcome;
  error: string | null;
}

const ZERO: FlowCounters = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };

/** Rows of a socket: its TCP connection (if the lifecycle was seen) and its flows. */
export function socketRows(connection: TcpConnection | undefined, flows: Flow[]): SocketRow[] {
  if (connection) {
    const c = connection;
    const released = flows.map((f) => f.releasedNs).find((ns) => ns !== null) ?? null;
    const endNs = c.endNs ?? released;
    const outcome = c.endNs === null && released !== null ? 'closed' : c.outcome;
    const role = c.role === 'passive' ? ('passive' as const) : ('active' as const);
    // Learned of in mid-life (first I/O after an attach, lost records): it began by its first byte at the latest.
    let startNs = c.startNs;
    if (!c.startSeen) for (const f of flows) if (f.firstNs < startNs) startNs = f.firstNs;
    // Literal objects, not spreads of a common base: this runs for every connection of a busy server.
    const row = (flow: Flow | null, pid: number, startTime: bigint, counters: FlowCounters): SocketRow => ({
      flow,
      cookie: c.cookie,
      pid,
      startTime,
      proto: 'tcp',
      role,
      localAddr: c.localAddr,
      localPort: c.localPort,
      remoteAddr: c.remoteAddr,
      remotePort: c.remotePort,
      startNs,
      endNs,
      counters,
      outcome,
      error: c.error,
    });
    if (flows.length === 0) return [row(null, c.pid, c.startTime, ZERO)];
    return flows.map((flow) => row(flow, flow.key.tgid, flow.key.startTime, flow.counters));
  }
  return flows.map((flow) => {
    const isTcp = flow.key.proto === 6;
    return {
      flow,
      cookie: flow.key.cookie,
      pid: flow.key.tgid,
      startTime: flow.key.startTime,
      proto: protoName(flow.key.proto),
      role: isTcp ? ('unknown' as const) : ('udp' as const),
      localAddr: flow.localAddr,
      localPort: flow.localPort,
      remoteAddr: flow.key.remoteAddr,
      remotePort: flow.key.remotePort,
      startNs: flow.firstNs,
      endNs: flow.releasedNs ?? flow.lastNs,
      counters: flow.counters,
      outcome: flow.releasedNs !== null ? ('closed' as const) : ('open' as const),
      error: null,
    };
  });
}
