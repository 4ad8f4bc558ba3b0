// SPDX-License-Identifier: MIT
// The core of the JSON report (schemaVersion 1): header, totals, processes, endpoints, connections, from
// what the trace model holds. Pure: data in, data out. report/assemble.ts adds the other sections.
import type { OwnerPackets } from '../kernel/maps';
import type { Flow } from '../model/flows';
import type { TcpConnection } from '../model/connections';
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
}

const zeroTraffic = (): Traffic => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });
const zeroPackets = (): Packets => ({ txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 });

function addTraffic(into: Traffic, flow: Flow): void {
  into.txBytes += flow.counters.txBytes;
  into.rxBytes += flow.counters.rxBytes;
  into.txCalls += flow.counters.txCalls;
  into.rxCalls += flow.counters.rxCalls;
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
  const endpoints = buildEndpoints(input.flows, input.connections);
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
  for (const flow of input.flows) {
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
      const t = traffic.get(node);
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
        tcp: t?.tcp ?? zeroTraffic(),
        udp: t?.udp ?? zeroTraffic(),
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
  const rows: ConnectionReport[] = [];
  const tcpByCookie = new Map<bigint, TcpConnection>(input.connections.map((c) => [c.cookie, c]));
  const flowsByCookie = new Map<bigint, Flow[]>();
  for (const flow of input.flows) {
    if (flow.key.proto !== 6) continue;
    const list = flowsByCookie.get(flow.key.cookie) ?? [];
    list.push(flow);
    flowsByCookie.set(flow.key.cookie, list);
  }
  const row = (
    flow: Flow | null,
    base: Omit<ConnectionReport, 'txBytes' | 'rxBytes' | 'txCalls' | 'rxCalls'>,
    cookie: bigint,
  ): ConnectionReport => {
    const r: ConnectionReport = {
      ...base,
      txBytes: flow?.counters.txBytes ?? 0,
      rxBytes: flow?.counters.rxBytes ?? 0,
      txCalls: flow?.counters.txCalls ?? 0,
      rxCalls: flow?.counters.rxCalls ?? 0,
    };
    if (base.proto === 'tcp' && input.retransmits) r.retransmits = input.retransmits.get(cookie) ?? 0;
    return r;
  };

  for (const c of input.connections) {
    const flows = flowsByCookie.get(c.cookie) ?? [];
    const released = flows.map((f) => f.releasedNs).find((ns) => ns !== null) ?? null;
    const endNs = c.endNs ?? released;
    const outcome = c.endNs === null && released !== null ? 'closed' : c.outcome;
    // Learned of in mid-life (first I/O after an attach, lost records): it began by its first byte at the latest.
    const startNs = c.startSeen ? c.startNs : Math.min(c.startNs, ...flows.map((f) => f.firstNs));
    const base = (pid: number, startTime: bigint) => ({
      pid,
      ...(startTime ? { startTimeNs: Number(startTime) } : {}),
      proto: 'tcp' as const,
      role: c.role === 'passive' ? ('passive' as const) : ('active' as const),
      localAddr: c.localAddr,
      localPort: c.localPort,
      remoteAddr: c.remoteAddr,
      remotePort: c.remotePort,
      startOffsetMs: offset(startNs)!,
      durationMs: span(startNs, endNs),
      outcome,
      error: c.error,
    });
    if (flows.length === 0) rows.push(row(null, base(c.pid, c.startTime), c.cookie));
    for (const flow of flows) rows.push(row(flow, base(flow.key.tgid, flow.key.startTime), c.cookie));
  }
  for (const flow of input.flows) {
    const isTcp = flow.key.proto === 6;
    if (isTcp && tcpByCookie.has(flow.key.cookie)) continue;
    rows.push(
      row(flow, {
        pid: flow.key.tgid,
        ...(flow.key.startTime ? { startTimeNs: Number(flow.key.startTime) } : {}),
        proto: protoName(flow.key.proto),
        role: isTcp ? 'unknown' : 'udp',
        localAddr: flow.localAddr,
        localPort: flow.localPort,
        remoteAddr: flow.key.remoteAddr,
        remotePort: flow.key.remotePort,
        startOffsetMs: offset(flow.firstNs)!,
        durationMs: span(flow.firstNs, flow.releasedNs ?? flow.lastNs),
        outcome: flow.releasedNs !== null ? 'closed' : 'open',
        error: null,
      }, flow.key.cookie),
    );
  }
  return rows.sort((a, b) => a.startOffsetMs - b.startOffsetMs || a.pid - b.pid);
}

function buildEndpoints(flows: Flow[], connections: TcpConnection[]): EndpointReport[] {
  const endpoints = new Map<string, EndpointReport & { sockets: Set<bigint> }>();
  const get = (proto: 'tcp' | 'udp', addr: string, port: number) => {
    const id = `${proto}/${addr}/${port}`;
    let e = endpoints.get(id);
    if (!e) {
      e = { proto, remoteAddr: addr, remotePort: port, txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0, connections: 0, pids: [], sockets: new Set() };
      endpoints.set(id, e);
    }
    return e;
  };
  for (const flow of flows) {
    const e = get(protoName(flow.key.proto), flow.key.remoteAddr, flow.key.remotePort);
    addTraffic(e, flow);
    e.sockets.add(flow.key.cookie);
    if (!e.pids.includes(flow.key.tgid)) e.pids.push(flow.key.tgid);
  }
  for (const c of connections) {
    if (c.role !== 'active' || !c.remotePort) continue;
    const e = get('tcp', c.remoteAddr, c.remotePort);
    e.sockets.add(c.cookie);
    if (!e.pids.includes(c.pid)) e.pids.push(c.pid);
  }
  return [...endpoints.values()]
    .map(({ sockets, ...e }) => ({ ...e, connections: sockets.size, pids: e.pids.sort((a, b) => a - b) }))
    .sort((a, b) => b.txBytes + b.rxBytes - (a.txBytes + a.rxBytes) || a.remoteAddr.localeCompare(b.remoteAddr));
}
