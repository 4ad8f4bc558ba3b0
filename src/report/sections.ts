// SPDX-License-Identifier: MIT
// The core of the JSON report (schemaVersion 1): header, totals, processes, endpoints, connections, from
// what the trace model holds. Pure: data in, data out. report/assemble.ts adds the other sections.
import type { OwnerPackets } from '../kernel/maps';
import type { Flow } from '../model/flows';
import type { TcpConnection } from '../model/connections';
import type { ModelSummary } from '../model/model';
import { GROUP_PIDS } from '../model/folds';
import { socketRows, type SocketRow } from '../model/rows';
import { serviceEndpoint, serviceKey, type ServiceEndpoint } from '../model/service';
import { decodeWaitStatus, processId, type ProcessNode } from '../model/tree';
import {
  SCHEMA_VERSION,
  type Backend,
  type ConnectionReport,
  type EndpointReport,
  type LostCounters,
  type Packets,
  type ProcessReport,
  type Report,
  type Traffic,
} from '../schema/report';
import { protoName } from '../util/net';

export interface CoreInputs {
  version: string;
  mode: 'run' | 'attach';
  backend: Backend;
  command: string[];
  exitCode: number | null;
  startedAt: Date;
  durationMs: number;
  /** CLOCK_MONOTONIC ns of the traced command's start: every offset is relative to it. */
  originNs: number;
  processes: ProcessNode[];
  flows: Flow[];
  connections: TcpConnection[];
  /** TCP retransmits per socket cookie (sockets without any are absent); undefined = not counted. */
  retransmits?: Map<bigint, number>;
  /** Packet counters per socket owner; tgid 0 holds packets whose owner could not be told. */
  packets: OwnerPackets[];
  lost: LostCounters;
  notes: string[];
  /** The model's kept sockets, folded aggregates and accumulated statistics (absent: nothing was
   *  folded and the statistics come from the flows themselves). */
  summary?: ModelSummary;
}

const zeroTraffic = (): Traffic => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });
const zeroPackets = (): Packets => ({ txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 });

function addCounters(into: Traffic, c: Traffic): void {
  into.txBytes += c.txBytes;
  into.rxBytes += c.rxBytes;
  into.txCalls += c.txCalls;
  into.rxCalls += c.rxCalls;
}

function addTraffic(into: Traffic, flow: Flow): void {
  addCounters(into, flow.counters);
}

function addPackets(into: Packets, p: Packets): void {
  into.txPackets += p.txPackets;
  into.rxPackets += p.rxPackets;
  into.txBytes += p.txBytes;
  into.rxBytes += p.rxBytes;
}

export function coreReport(input: CoreInputs): Report {
  const offset = (ns: number | null): number | null =>
    ns === null ? null : Math.round((ns - input.originNs) / 1000) / 1000;
  const span = (from: number, to: number | null): number | null => (to === null ? null : Math.round((to - from) / 1000) / 1000);

  const processes = buildProcesses(input, offset);
  const connections = buildConnections(input, offset, span);
  const endpoints = buildEndpoints(input);
  const totals = { tcp: zeroTraffic(), udp: zeroTraffic(), packets: zeroPackets() };
  for (const p of processes) {
    for (const proto of ['tcp', 'udp'] as const) {
      totals[proto].txBytes += p[proto].txBytes;
      totals[proto].rxBytes += p[proto].rxBytes;
      totals[proto].txCalls += p[proto].txCalls;
      totals[proto].rxCalls += p[proto].rxCalls;
    }
    addPackets(totals.packets, p.packets);
  }
  for (const g of input.summary?.processGroups ?? []) {
    addCounters(totals.tcp, g.tcp);
    addCounters(totals.udp, g.udp);
    addPackets(totals.packets, g.packets);
  }
  const unowned = input.packets.find((o) => o.tgid === 0)?.packets;
  return {
    schemaVersion: SCHEMA_VERSION,
    tool: { name: 'proctap', version: input.version },
    mode: input.mode,
    backend: input.backend,
    command: input.command,
    exitCode: input.exitCode,
    startedAt: input.startedAt.toISOString(),
    durationMs: Math.round(input.durationMs * 1000) / 1000,
    lost: input.lost,
    unattributedPackets: { tx: unowned?.txPackets ?? 0, rx: unowned?.rxPackets ?? 0 },
    totals,
    processes,
    endpoints,
    connections,
    notes: [...input.notes],
  };
}

/** The process a (pid, start time) pair is about: that instance; without a start time, the pid's latest. */
export function processResolver(processes: ProcessNode[]): (pid: number, startTime: bigint) => ProcessNode | undefined {
  const byId = new Map<string, ProcessNode>();
  const latest = new Map<number, ProcessNode>();
  for (const p of processes) {
    if (p.startTime !== null) byId.set(processId(p.pid, p.startTime), p);
    const l = latest.get(p.pid);
    if (!l || (p.startTime ?? 0n) >= (l.startTime ?? 0n)) latest.set(p.pid, p);
  }
  return (pid, startTime) => (startTime ? byId.get(processId(pid, startTime)) : latest.get(pid));
}

function buildProcesses(input: CoreInputs, offset: (ns: number | null) => number | null): ProcessReport[] {
  const owner = processResolver(input.processes);
  const traffic = new Map<ProcessNode, { tcp: Traffic; udp: Traffic }>();
  const inGroups = input.summary?.inProcessGroups;
  for (const flow of input.flows) {
    if (inGroups?.has(flow)) continue; // its process was folded: counted in its group
    const node = owner(flow.key.tgid, flow.key.startTime);
    if (!node) continue;
    let t = traffic.get(node);
    if (!t) traffic.set(node, (t = { tcp: zeroTraffic(), udp: zeroTraffic() }));
    addTraffic(t[protoName(flow.key.proto)], flow);
  }
  const packetsOf = new Map<ProcessNode, Packets[]>();
  for (const o of input.packets) {
    const node = o.tgid ? owner(o.tgid, o.startTime) : undefined;
    if (node) packetsOf.set(node, [...(packetsOf.get(node) ?? []), o.packets]);
  }
  return [...input.processes]
    .sort((a, b) => (a.startNs ?? -Infinity) - (b.startNs ?? -Infinity) || a.pid - b.pid || Number((a.startTime ?? 0n) - (b.startTime ?? 0n)))
    .map((node) => {
      const { exitCode, exitSignal } = decodeWaitStatus(node.waitStatus);
      const t = traffic.get(node) ?? { tcp: zeroTraffic(), udp: zeroTraffic() };
      const folded = input.summary?.foldedTrafficOf(node.pid, node.startTime);
      if (folded) for (const proto of ['tcp', 'udp'] as const) addCounters(t[proto], folded[proto]);
      const packets = zeroPackets();
      for (const p of packetsOf.get(node) ?? []) addPackets(packets, p);
      const report: ProcessReport = {
        pid: node.pid,
        ...(node.startTime !== null ? { startTimeNs: Number(node.startTime) } : {}),
        ppid: node.ppid,
        comm: node.comm,
        argv: node.argv,
        startOffsetMs: offset(node.startNs),
        exitOffsetMs: offset(node.exitNs),
        exitCode,
        exitSignal,
        tcp: t.tcp,
        udp: t.udp,
        packets,
      };
      if (node.nspid !== undefined) report.nspid = node.nspid;
      if (node.netns !== undefined) report.netns = node.netns;
      if (node.container) report.container = node.container;
      return report;
    });
}

function buildConnections(
  input: CoreInputs,
  offset: (ns: number | null) => number | null,
  span: (from: number, to: number | null) => number | null,
): ConnectionReport[] {
  return connectionRows(input.flows, input.connections)
    .map((r) => connectionReport(r, offset, span, input.retransmits))
    .sort((a, b) => a.startOffsetMs - b.startOffsetMs || a.pid - b.pid);
}

/** Every row (model/rows.ts): the TCP connections with their flows, then the sockets without a lifecycle. */
export function connectionRows(flows: Flow[], connections: TcpConnection[]): SocketRow[] {
  const tcpByCookie = new Set<bigint>(connections.map((c) => c.cookie));
  const flowsByCookie = new Map<bigint, Flow[]>();
  const others = new Map<bigint, Flow[]>();
  for (const flow of flows) {
    const into = flow.key.proto === 6 && tcpByCookie.has(flow.key.cookie) ? flowsByCookie : others;
    const list = into.get(flow.key.cookie);
    if (list) list.push(flow);
    else into.set(flow.key.cookie, [flow]);
  }
  const rows: SocketRow[] = [];
  for (const c of connections) rows.push(...socketRows(c, flowsByCookie.get(c.cookie) ?? []));
  for (const list of others.values()) rows.push(...socketRows(undefined, list));
  return rows;
}

function connectionReport(
  r: SocketRow,
  offset: (ns: number | null) => number | null,
  span: (from: number, to: number | null) => number | null,
  retransmits: Map<bigint, number> | undefined,
): ConnectionReport {
  const report: ConnectionReport = {
    pid: r.pid,
    ...(r.startTime ? { startTimeNs: Number(r.startTime) } : {}),
    proto: r.proto,
    role: r.role,
    localAddr: r.localAddr,
    localPort: r.localPort,
    remoteAddr: r.remoteAddr,
    remotePort: r.remotePort,
    startOffsetMs: offset(r.startNs)!,
    durationMs: span(r.startNs, r.endNs),
    outcome: r.outcome,
    error: r.error,
    txBytes: r.counters.txBytes,
    rxBytes: r.counters.rxBytes,
    txCalls: r.counters.txCalls,
    rxCalls: r.counters.rxCalls,
  };
  if (r.proto === 'tcp' && retransmits) report.retransmits = retransmits.get(r.cookie) ?? 0;
  return report;
}

/** The report's fields of a service endpoint: inbound rows name our port, their remote port is 0 (the
 *  clients' ephemeral ports, grouped). */
export function endpointFields(e: ServiceEndpoint): { proto: 'tcp' | 'udp'; remoteAddr: string; remotePort: number; direction?: 'inbound'; localPort?: number } {
  return e.direction === 'inbound'
    ? { proto: e.proto, remoteAddr: e.remoteAddr, remotePort: 0, direction: 'inbound', localPort: e.port }
    : { proto: e.proto, remoteAddr: e.remoteAddr, remotePort: e.port };
}

/** Endpoints per service endpoint (remote address and service port): the listed rows, plus the folded
 *  groups. Every socket counts once; a refused connect counts with 0 bytes. */
function buildEndpoints(input: CoreInputs): EndpointReport[] {
  interface Acc { endpoint: ServiceEndpoint; traffic: Traffic; sockets: Set<bigint>; folded: number; pids: Set<number>; morePids: boolean }
  const endpoints = new Map<string, Acc>();
  const range = input.summary?.ephemeralRange;
  const get = (e: ServiceEndpoint) => {
    const id = serviceKey(e);
    let a = endpoints.get(id);
    if (!a) endpoints.set(id, (a = { endpoint: e, traffic: zeroTraffic(), sockets: new Set(), folded: 0, pids: new Set(), morePids: false }));
    return a;
  };
  for (const r of connectionRows(input.flows, input.connections)) {
    // a TCP connection that moved nothing counts where it tried to go (a refused connect); an accepted one
    // without bytes too
    if (!r.flow && !r.remotePort) continue;
    const a = get(serviceEndpoint(r, range));
    addCounters(a.traffic, r.counters);
    a.sockets.add(r.cookie);
    a.pids.add(r.pid);
  }
  for (const g of input.summary?.connectionGroups ?? []) {
    const a = get(g.endpoint);
    addCounters(a.traffic, g.traffic);
    a.folded += g.connections;
    for (const pid of g.pids) a.pids.add(pid);
    a.morePids ||= g.morePids;
  }
  return [...endpoints.values()]
    .map((a): EndpointReport => {
      const pids = [...a.pids].sort((x, y) => x - y);
      return {
        ...endpointFields(a.endpoint),
        ...a.traffic,
        connections: a.sockets.size + a.folded,
        pids: pids.slice(0, GROUP_PIDS),
        ...(pids.length > GROUP_PIDS || a.morePids ? { morePids: true } : {}),
      };
    })
    .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) || a.remoteAddr.localeCompare(b.remoteAddr) || a.remotePort - b.remotePort || (a.localPort ?? 0) - (b.localPort ?? 0));
}
