// SPDX-License-Identifier: MIT
// Aggregates of what is no longer kept one by one: connection rows folded per service endpoint (remote
// address and service port, model/service.ts), exited processes folded per parent and command. Every
// figure is a sum or a count, so totals stay exact whatever was folded; percentiles come from digests.
// The number of groups is capped too: past it, connection rows go to their service port's "*" group.
import type { FlowCounters } from '../kernel/records';
import type { Outcome, Packets } from '../schema/report';
import { Digest } from './digest';
import type { SocketRow } from './rows';
import { serviceEndpoint, serviceKey, type ServiceEndpoint } from './service';

/** Processes named per group, at most. */
export const GROUP_PIDS = 64;
/** Distinct connection groups, at most; then per service port under remote address "*". */
export const MAX_CONNECTION_GROUPS = 1024;
/** A group's digests keep this many values as they are (percentiles exact up to there). */
const GROUP_EXACT_VALUES = 32;
/** Distinct process groups, at most; then one group of parent 0 and command "*". */
export const MAX_PROCESS_GROUPS = 1024;

const zero = (): FlowCounters => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

function addCounters(into: FlowCounters, c: FlowCounters): void {
  into.txBytes += c.txBytes;
  into.rxBytes += c.rxBytes;
  into.txCalls += c.txCalls;
  into.rxCalls += c.rxCalls;
}

export interface ConnectionGroup {
  endpoint: ServiceEndpoint;
  connections: number;
  traffic: FlowCounters;
  outcomes: Partial<Record<Outcome, number>>;
  /** TCP rows' retransmits (per row, as in the rows themselves); null when not counted. */
  retransmits: number | null;
  /** Durations (ms) of the rows that ended. */
  durations: Digest;
  /** Rows that opened the connection or sent the datagrams (role other than passive). */
  outgoing: number;
  /** Rows that ended after moving bytes both ways: request (tx) and response (rx) sizes. */
  requests: Digest;
  responses: Digest;
  pids: Set<number>;
  /** Processes beyond GROUP_PIDS were seen. */
  morePids: boolean;
  firstStartNs: number;
  lastEndNs: number | null;
}

export class ConnectionFolds {
  private readonly groups = new Map<string, ConnectionGroup>();
  /** Rows folded, and the sockets they belonged to. */
  rows = 0;
  sockets = 0;

  constructor(private readonly ephemeralRange?: [number, number]) {}

  list(): ConnectionGroup[] {
    return [...this.groups.values()];
  }

  private group(endpoint: ServiceEndpoint): ConnectionGroup {
    let key = serviceKey(endpoint);
    let g = this.groups.get(key);
    if (g) return g;
    if (this.groups.size >= MAX_CONNECTION_GROUPS) {
      endpoint = { ...endpoint, remoteAddr: '*' };
      key = serviceKey(endpoint);
      g = this.groups.get(key);
      if (g) return g;
    }
    g = {
      endpoint,
      connections: 0,
      traffic: zero(),
      outcomes: {},
      retransmits: null,
      durations: new Digest(undefined, GROUP_EXACT_VALUES),
      outgoing: 0,
      requests: new Digest([], GROUP_EXACT_VALUES),
      responses: new Digest([], GROUP_EXACT_VALUES),
      pids: new Set(),
      morePids: false,
      firstStartNs: Infinity,
      lastEndNs: null,
    };
    this.groups.set(key, g);
    return g;
  }

  /** The rows of one socket, with the retransmits of its TCP rows (undefined: not counted). */
  add(rows: SocketRow[], retransmits: number | undefined): void {
    this.sockets++;
    for (const r of rows) {
      this.rows++;
      const g = this.group(serviceEndpoint(r, this.ephemeralRange));
      g.connections++;
      addCounters(g.traffic, r.counters);
      g.outcomes[r.outcome] = (g.outcomes[r.outcome] ?? 0) + 1;
      if (r.proto === 'tcp' && retransmits !== undefined) g.retransmits = (g.retransmits ?? 0) + retransmits;
      if (r.endNs !== null) {
        g.durations.add((r.endNs - r.startNs) / 1e6);
        g.lastEndNs = Math.max(g.lastEndNs ?? -Infinity, r.endNs);
      }
      if (r.role !== 'passive') g.outgoing++;
      if (r.endNs !== null && r.counters.txBytes > 0 && r.counters.rxBytes > 0) {
        g.requests.add(r.counters.txBytes);
        g.responses.add(r.counters.rxBytes);
      }
      if (g.pids.size < GROUP_PIDS) g.pids.add(r.pid);
      else if (!g.pids.has(r.pid)) g.morePids = true;
      g.firstStartNs = Math.min(g.firstStartNs, r.startNs);
    }
  }
}

export interface ProcessGroup {
  /** The parent (pid and start time) the folded processes were children of. */
  ppid: number;
  parentStartTime: bigint | null;
  comm: string;
  count: number;
  tcp: FlowCounters;
  udp: FlowCounters;
  packets: Packets;
  /** Exit codes (shell convention, "unknown" when not known) and how many had each. */
  exits: Record<string, number>;
  firstStartNs: number | null;
  lastExitNs: number | null;
}

export interface FoldedProcess {
  ppid: number;
  parentStartTime: bigint | null;
  comm: string;
  startNs: number | null;
  exitNs: number | null;
  exitCode: number | null;
  tcp: FlowCounters;
  udp: FlowCounters;
}

export class ProcessFolds {
  private readonly groups = new Map<string, ProcessGroup>();
  processes = 0;

  list(): ProcessGroup[] {
    return [...this.groups.values()];
  }

  add(p: FoldedProcess): ProcessGroup {
    this.processes++;
    let key = `${p.ppid}/${p.parentStartTime ?? 0n}/${p.comm}`;
    let g = this.groups.get(key);
    if (!g && this.groups.size >= MAX_PROCESS_GROUPS) {
      key = '0/0/*';
      g = this.groups.get(key);
      p = { ...p, ppid: 0, parentStartTime: null, comm: '*' };
    }
    if (!g) {
      g = {
        ppid: p.ppid,
        parentStartTime: p.parentStartTime,
        comm: p.comm,
        count: 0,
        tcp: zero(),
        udp: zero(),
        packets: { txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 },
        exits: {},
        firstStartNs: null,
        lastExitNs: null,
      };
      this.groups.set(key, g);
    }
    g.count++;
    addCounters(g.tcp, p.tcp);
    addCounters(g.udp, p.udp);
    const code = p.exitCode === null ? 'unknown' : String(p.exitCode);
    g.exits[code] = (g.exits[code] ?? 0) + 1;
    if (p.startNs !== null) g.firstStartNs = Math.min(g.firstStartNs ?? Infinity, p.startNs);
    if (p.exitNs !== null) g.lastExitNs = Math.max(g.lastExitNs ?? -Infinity, p.exitNs);
    return g;
  }
}

export function addPackets(into: Packets, p: Packets): void {
  into.txPackets += p.txPackets;
  into.rxPackets += p.rxPackets;
  into.txBytes += p.txBytes;
  into.rxBytes += p.rxBytes;
}
