// SPDX-License-Identifier: MIT
// The trace model: decoded kernel records and proc connector events folded into the process tree, the
// flow table, the connection tracker and the names learned from DNS answers. No kernel access and no
// I/O: the trace session feeds it and asks it which sockets to read for the last time.
//
// Bounded memory (docs/schema.md, "Folding"): a socket that is released and closed is retired: its
// flows and lifecycle leave the live tables; the retention keeps the newest, largest and failed ones
// one by one, the rest are folded into per-service-endpoint aggregates. An exited process without live
// flows is retired the same way (folded per parent and command). Bytes over time, message sizes and
// first/last seen are accumulated as records arrive (timeline.ts), so nothing needs the flows' samples
// but the patterns of the flows still listed. Totals never depend on what was kept.
import type { FlowCounters, FlowKey, TraceRecord } from '../kernel/records';
import type { FinalFlow } from '../kernel/maps';
import type { ProcEvent } from '../kernel/proc-events';
import type { Packets } from '../schema/report';
import { ConnectionTracker, TCP_STATE, type TcpConnection } from './connections';
import { Digest } from './digest';
import { FlowTable, type Flow } from './flows';
import { ConnectionFolds, ProcessFolds, addPackets, type ConnectionGroup, type ProcessGroup } from './folds';
import { L7View, type L7ViewOptions } from './l7';
import { DnsNameTable } from './names';
import { Retention, type RetentionCaps } from './retention';
import { socketRows } from './rows';
import { serviceEndpoint, type ServiceEndpoint } from './service';
import { RetiredTraffic } from './retired';
import { SizeTable } from './sizes';
import { Timeline } from './timeline';
import { decodeWaitStatus, processId, ProcessTree, type ProcessNode } from './tree';

export interface ModelOptions {
  /** Closed sockets kept one by one (each pool), and exited processes. */
  keepConnections?: RetentionCaps;
  keepProcesses?: RetentionCaps;
  /** --interval: the time series' fixed bucket width. */
  seriesIntervalMs?: number;
  /** net.ipv4.ip_local_port_range: ports a client's socket gets. */
  ephemeralRange?: [number, number];
}

export const DEFAULT_KEEP_CONNECTIONS: RetentionCaps = { newest: 500, largest: 500, failed: 500 };
export const DEFAULT_KEEP_PROCESSES: RetentionCaps = { newest: 200, largest: 200, failed: 200 };
/** Sockets remembered as retired, so a late lifecycle record does not make a new connection of them. */
const RECENTLY_RETIRED = 65536;

const FAILED = new Set(['refused', 'reset', 'timeout', 'failed']);
const zero = (): FlowCounters => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });
const add = (into: FlowCounters, c: FlowCounters) => {
  into.txBytes += c.txBytes;
  into.rxBytes += c.rxBytes;
  into.txCalls += c.txCalls;
  into.rxCalls += c.rxCalls;
};

/** A socket that was released and closed: its lifecycle and flows, as the report lists them. */
export interface RetiredSocket {
  cookie: bigint;
  connection: TcpConnection | undefined;
  flows: Flow[];
  retransmits: number | undefined;
  /** Owners (processId) folded while this socket was kept: its bytes are in their process group. */
  foldedOwners: Set<string> | null;
}

export interface ModelSummary {
  /** Retired sockets kept one by one. */
  kept: RetiredSocket[];
  connectionGroups: ConnectionGroup[];
  /** Sockets folded, and the connection rows they made. */
  foldedSockets: number;
  foldedRows: number;
  processGroups: ProcessGroup[];
  foldedProcesses: number;
  caps: { connections: RetentionCaps; processes: RetentionCaps };
  foldedTrafficOf(pid: number, startTime: bigint | null): { tcp: FlowCounters; udp: FlowCounters } | undefined;
  /** Kept flows whose process was folded: their bytes are in its process group. */
  inProcessGroups: Set<Flow>;
  timeline: Timeline;
  sizes: SizeTable;
  foldedTtfb: Digest;
  ephemeralRange?: [number, number];
}

/** A FIFO map of bounded size. The order is kept in a ring of keys: a Map used as its own queue
 *  (deleting `keys().next()`) costs V8 a scan over the deleted entries at its front, every time. */
class RecentMap<K, V> {
  private readonly map = new Map<K, V>();
  private readonly ring: Array<K | undefined>;
  private next = 0;
  constructor(cap: number) {
    this.ring = new Array<K | undefined>(cap);
  }
  set(k: K, v: V): void {
    if (!this.map.has(k)) {
      const old = this.ring[this.next];
      if (old !== undefined) this.map.delete(old);
      this.ring[this.next] = k;
      this.next = (this.next + 1) % this.ring.length;
    }
    this.map.set(k, v);
  }
  get(k: K): V | undefined {
    return this.map.get(k);
  }
  has(k: K): boolean {
    return this.map.has(k);
  }
}

/** A FIFO set of bounded size. */
class RecentSet<T> {
  private readonly map: RecentMap<T, true>;
  constructor(cap: number) {
    this.map = new RecentMap(cap);
  }
  add(x: T): void {
    this.map.set(x, true);
  }
  has(x: T): boolean {
    return this.map.has(x);
  }
}

const flowOwner = (f: Flow) => f.owner;

export class TraceModel {
  readonly tree = new ProcessTree();
  readonly flows = new FlowTable();
  readonly connections = new ConnectionTracker();
  readonly names = new DnsNameTable();
  /** TCP retransmits per socket cookie: the kernel's running total, so the largest reading wins. */
  readonly retransmits = new Map<bigint, number>();
  readonly timeline: Timeline;
  readonly sizes = new SizeTable();
  readonly connectionFolds: ConnectionFolds;
  readonly processFolds = new ProcessFolds();
  /** Time to first byte (ms) of the TCP flows folded away. */
  readonly foldedTtfb = new Digest();
  readonly keptSockets: Retention<RetiredSocket>;
  readonly keptProcesses: Retention<ProcessNode>;
  /** Sockets released since the last takeReleased(): their flows can be read for the last time. */
  private released: bigint[] = [];
  /** Released TCP sockets whose connection has not reached CLOSE yet (it may still retransmit). */
  private readonly awaitingClose = new Set<bigint>();
  /** Released and closed since the last takeSettled(): ready to retire once their retransmits are read. */
  private settled: bigint[] = [];
  /** Retired socket cookies (as numbers: cookies count up from 1, and number keys hash faster). */
  private readonly retired = new RecentSet<number>(RECENTLY_RETIRED);
  /** Per listed process: traffic of its sockets that were folded (not in any listed flow). */
  private readonly foldedTraffic = new Map<string, { tcp: FlowCounters; udp: FlowCounters }>();
  private readonly keptByProcess = new Map<string, Set<RetiredSocket>>();
  /** Exited processes that still had flows when they exited. */
  private readonly exited = new Map<string, ProcessNode>();
  /** Folded since the last takeFoldedProcesses(): the session reads their packet counters. */
  private foldedProcesses: Array<{ tgid: number; startTime: bigint; group: ProcessGroup }> = [];
  private readonly recentlyFolded = new RecentMap<string, ProcessGroup>(RECENTLY_RETIRED);
  private readonly ephemeralRange?: [number, number];
  private readonly endpoints = new Map<Flow, ServiceEndpoint>();
  /** Traffic of the flows retired so far (kept or folded): totals that only grow, for readers while tracing. */
  readonly retiredTraffic = new RetiredTraffic();
  connectorOverflows = 0;
  /** Retransmits are counted (the session says so): folded rows then carry them. */
  countRetransmits = true;
  /** The L7 view (--l7): data records decoded per flow (model/l7.ts); null when off. */
  l7: L7View | null = null;

  constructor(options: ModelOptions = {}) {
    this.timeline = new Timeline(options.seriesIntervalMs);
    this.ephemeralRange = options.ephemeralRange;
    this.connectionFolds = new ConnectionFolds(options.ephemeralRange);
    this.keptSockets = new Retention(options.keepConnections ?? DEFAULT_KEEP_CONNECTIONS, (s) => this.foldSocket(s));
    this.keptProcesses = new Retention(options.keepProcesses ?? DEFAULT_KEEP_PROCESSES, (p) => this.foldProcess(p));
  }

  /** Turns the L7 view on: data records go to decoders, exchanges to `onExchange` with their endpoint. */
  enableL7(options: Pick<L7ViewOptions, 'fromStart' | 'maxDecoders' | 'bufferCap' | 'onExchange'>): L7View {
    this.l7 = new L7View({
      ...options,
      serviceOf: (key) => this.serviceOfKey(key),
      dnsName: (address, atNs) => this.names.nameOf(address, atNs),
      startSeen: (cookie) => this.connections.get(cookie)?.startSeen === true,
    });
    return this.l7;
  }

  /** The trace's origin: the time series' bucket 0 starts there. */
  setOrigin(ns: number): void {
    this.timeline.setOrigin(ns);
  }

  onRecord(record: TraceRecord): void {
    switch (record.type) {
      case 'fork':
        this.tree.onFork(record.tgid, record.ppid, record.comm, record.tsNs, 'kernel', record.startTime);
        // Where the child lives in another PID namespace (a container), its own view of its pid.
        if (record.nspid && record.nspid !== record.tgid) {
          const node = this.tree.get(record.tgid, record.startTime);
          if (node) node.nspid = record.nspid;
        }
        break;
      case 'exec':
        if (record.matched && !this.tree.has(record.tgid)) {
          this.tree.addRoot(record.tgid, record.ppid, record.comm, record.argv, record.tsNs, record.startTime || null);
        }
        this.tree.onExec(record.tgid, record.comm, record.argv, record.startTime);
        break;
      case 'exit':
        this.tree.onExit(record.tgid, record.tsNs, record.waitStatus, 'kernel', record.startTime);
        this.onExited(this.tree.get(record.tgid, record.startTime));
        break;
      case 'flow': {
        const isNew = !this.flows.get(record.key.id);
        const flow = this.flows.sample(record.key, record.counters, record.firstNs, record.tsNs, record.localAddr, record.localPort);
        this.tree.ensure(record.tgid, record.key.startTime);
        if (isNew) this.timeline.mark(flow.key.tgid, this.endpointOf(flow), flow.firstNs);
        this.account(flow, record.tsNs);
        break;
      }
      case 'sockState':
        if (this.retired.has(Number(record.cookie))) break;
        this.connections.onState(record);
        if (record.newState === TCP_STATE.CLOSE && this.awaitingClose.delete(record.cookie)) this.settled.push(record.cookie);
        break;
      case 'sockRelease':
        this.flows.markReleased(record.cookie, record.tsNs);
        this.released.push(record.cookie);
        this.l7?.onRelease(record.cookie, record.tsNs);
        break;
      case 'data':
        this.l7?.onData(record);
        break;
      case 'dns':
        this.names.onResponse(record.data, record.tgid, record.tsNs);
        break;
      default:
        break;
    }
  }

  /** The service endpoint a flow's bytes are grouped under (decided at its first sample). */
  endpointOf(flow: Flow): ServiceEndpoint {
    let e = this.endpoints.get(flow);
    if (!e) this.endpoints.set(flow, (e = this.serviceOf(flow)));
    return e;
  }

  private serviceOf(flow: Flow): ServiceEndpoint {
    const c = flow.key.proto === 6 ? this.connections.get(flow.key.cookie) : undefined;
    const role = c ? c.role : flow.key.proto === 6 ? 'unknown' : 'udp';
    return serviceEndpoint(
      { proto: flow.key.proto === 6 ? 'tcp' : 'udp', role, localPort: c?.localPort || flow.localPort, remoteAddr: flow.key.remoteAddr, remotePort: flow.key.remotePort },
      this.ephemeralRange,
    );
  }

  /** A data record's service endpoint: its flow's, or (no flow sample yet) told from the key alone. */
  private serviceOfKey(key: FlowKey): ServiceEndpoint {
    const flow = this.flows.get(key.id);
    if (flow) return this.endpointOf(flow);
    const tcp = key.proto === 6;
    const c = tcp ? this.connections.get(key.cookie) : undefined;
    return serviceEndpoint(
      { proto: tcp ? 'tcp' : 'udp', role: c ? c.role : tcp ? 'unknown' : 'udp', localPort: c?.localPort ?? 0, remoteAddr: key.remoteAddr, remotePort: key.remotePort },
      this.ephemeralRange,
    );
  }

  /** The flow's counters since what the timeline has, at tsNs. */
  private account(flow: Flow, tsNs: number): void {
    const a = flow.accounted;
    const c = flow.counters;
    const tx = Math.max(0, c.txBytes - a.txBytes);
    const rx = Math.max(0, c.rxBytes - a.rxBytes);
    const calls = Math.max(0, c.txCalls - a.txCalls) + Math.max(0, c.rxCalls - a.rxCalls);
    if (tx + rx + calls === 0) return;
    this.timeline.add(tsNs, flow.key.tgid, flow.key.startTime, this.endpointOf(flow), tx, rx, calls);
    flow.accounted = { txBytes: Math.max(a.txBytes, c.txBytes), rxBytes: Math.max(a.rxBytes, c.rxBytes), txCalls: Math.max(a.txCalls, c.txCalls), rxCalls: Math.max(a.rxCalls, c.rxCalls) };
  }

  /** A flow's last counters from the kernel map (at its socket's release, or at the end of the trace):
   *  what the samples did not carry goes to the timeline at the flow's last I/O. */
  onFinalFlow(f: FinalFlow): Flow {
    const flow = this.flows.finalize(f.key, f.counters, f.firstNs, f.lastNs, f.localAddr, f.localPort, f.sizes);
    this.account(flow, flow.lastNs);
    this.sizes.add(f.key.tgid, f.key.proto === 6 ? 'tcp' : 'udp', f.sizes);
    return flow;
  }

  /** A socket may be read twice (at release, then again at the end if it retransmitted after close()). */
  onRetransmits(cookie: bigint, total: number): void {
    if (total > (this.retransmits.get(cookie) ?? 0)) this.retransmits.set(cookie, total);
  }

  takeReleased(): bigint[] {
    const released = this.released;
    this.released = [];
    // Their flows' last counters are read now: each is settled once its TCP connection is closed too.
    for (const cookie of released) {
      const c = this.connections.get(cookie);
      if (c && c.endNs === null && c.role !== 'listen') this.awaitingClose.add(cookie);
      else this.settled.push(cookie);
    }
    return released;
  }

  /** Sockets released and closed: the session reads their retransmits, then calls retire(). */
  takeSettled(): bigint[] {
    const settled = this.settled;
    this.settled = [];
    return settled;
  }

  /** Settled sockets leave the live tables: kept one by one, or folded. */
  retire(cookies: bigint[]): void {
    for (const cookie of cookies) {
      if (this.retired.has(Number(cookie))) continue;
      this.retired.add(Number(cookie));
      // The timeline's last increase while the lifecycle still tells the endpoint's side
      for (const f of this.flows.flowsOfSocket(cookie)) {
        this.account(f, f.lastNs);
        this.retiredTraffic.add(flowOwner(f), this.endpointOf(f), f.counters);
      }
      const connection = this.connections.delete(cookie);
      const flows = this.flows.remove(cookie);
      const retransmits = this.retransmits.get(cookie);
      this.retransmits.delete(cookie);
      for (const f of flows) this.endpoints.delete(f);
      if (connection?.role === 'listen' || (!connection && flows.length === 0)) continue;
      const socket: RetiredSocket = { cookie, connection, flows, retransmits, foldedOwners: null };
      const owners = new Set(flows.map(flowOwner));
      if (connection && flows.length === 0) owners.add(processId(connection.pid, connection.startTime));
      for (const id of owners) {
        let set = this.keptByProcess.get(id);
        if (!set) this.keptByProcess.set(id, (set = new Set()));
        set.add(socket);
      }
      const bytes = flows.reduce((n, f) => n + f.counters.txBytes + f.counters.rxBytes, 0);
      this.keptSockets.offer(socket, bytes, connection !== undefined && FAILED.has(connection.outcome));
      for (const id of owners) {
        const node = this.exited.get(id);
        if (node) this.onExited(node);
      }
    }
  }

  /** The sockets kept one by one (retired, not folded). */
  keptSocketList(): RetiredSocket[] {
    return this.keptSockets.kept();
  }

  private foldSocket(s: RetiredSocket): void {
    const rows = !s.connection
      ? socketRows(undefined, s.flows)
      : s.flows.every((f) => f.key.proto === 6)
        ? socketRows(s.connection, s.flows)
        : [...socketRows(s.connection, s.flows.filter((f) => f.key.proto === 6)), ...socketRows(undefined, s.flows.filter((f) => f.key.proto !== 6))];
    this.connectionFolds.add(rows, this.countRetransmits ? (s.retransmits ?? 0) : undefined);
    for (const f of s.flows) {
      if (f.key.proto === 6 && f.firstRxNs !== null) this.foldedTtfb.add(Math.max(0, (f.firstRxNs - f.firstNs) / 1e6));
      const id = flowOwner(f);
      if (s.foldedOwners?.has(id)) continue; // in its process group already
      let t = this.foldedTraffic.get(id);
      if (!t) this.foldedTraffic.set(id, (t = { tcp: zero(), udp: zero() }));
      add(f.key.proto === 6 ? t.tcp : t.udp, f.counters);
    }
    const owners = new Set(s.flows.map(flowOwner));
    if (s.connection) owners.add(processId(s.connection.pid, s.connection.startTime));
    for (const id of owners) {
      const set = this.keptByProcess.get(id);
      set?.delete(s);
      if (set && set.size === 0) this.keptByProcess.delete(id);
    }
  }

  /** Traffic of a listed process's folded sockets (its listed flows carry the rest). */
  foldedTrafficOf(pid: number, startTime: bigint | null): { tcp: FlowCounters; udp: FlowCounters } | undefined {
    return this.foldedTraffic.get(processId(pid, startTime));
  }

  /** An exited process is retired once none of its flows is live any more. */
  private onExited(node: ProcessNode | undefined): void {
    if (!node || node.exitNs === null) return;
    const id = processId(node.pid, node.startTime);
    if (this.flows.countOfProcess(node.pid, node.startTime ?? 0n) > 0) {
      this.exited.set(id, node);
      return;
    }
    this.exited.delete(id);
    // The traced roots (the command, the attach targets) are always listed; so is a process known only
    // from the proc connector, a rebuild or its traffic, and every process once the proc connector
    // overflowed: with process events lost, which instance an exit was about is not certain.
    if (node.source !== 'kernel' || this.connectorOverflows > 0) return;
    let bytes = 0;
    const t = this.foldedTraffic.get(id);
    if (t) bytes += t.tcp.txBytes + t.tcp.rxBytes + t.udp.txBytes + t.udp.rxBytes;
    for (const s of this.keptByProcess.get(id) ?? []) for (const f of s.flows) if (flowOwner(f) === id) bytes += f.counters.txBytes + f.counters.rxBytes;
    const { exitCode } = decodeWaitStatus(node.waitStatus);
    this.keptProcesses.offer(node, bytes, exitCode !== null && exitCode !== 0);
  }

  private foldProcess(node: ProcessNode): void {
    const id = processId(node.pid, node.startTime);
    const tcp = zero();
    const udp = zero();
    const t = this.foldedTraffic.get(id);
    if (t) {
      add(tcp, t.tcp);
      add(udp, t.udp);
    }
    for (const s of this.keptByProcess.get(id) ?? []) {
      for (const f of s.flows) if (flowOwner(f) === id) add(f.key.proto === 6 ? tcp : udp, f.counters);
      (s.foldedOwners ??= new Set()).add(id);
    }
    const parent = this.tree.get(node.ppid);
    const group = this.processFolds.add({
      ppid: node.ppid,
      parentStartTime: parent && parent.startNs !== null && node.startNs !== null && parent.startNs <= node.startNs ? parent.startTime : null,
      comm: node.comm,
      startNs: node.startNs,
      exitNs: node.exitNs,
      exitCode: decodeWaitStatus(node.waitStatus).exitCode,
      tcp,
      udp,
    });
    this.foldedTraffic.delete(id);
    this.keptByProcess.delete(id);
    this.retiredTraffic.dropOwner(id);
    this.tree.remove(node);
    this.timeline.dropProcess(node.pid, node.startTime);
    this.sizes.dropProcess(node.pid);
    this.foldedProcesses.push({ tgid: node.pid, startTime: node.startTime ?? 0n, group });
    this.recentlyFolded.set(id, group);
  }

  /** Processes folded since the last call: the session reads (and removes) their packet counters. */
  takeFoldedProcesses(): Array<{ tgid: number; startTime: bigint; group: ProcessGroup }> {
    const out = this.foldedProcesses;
    this.foldedProcesses = [];
    return out;
  }

  /** Packets of a folded process read at the end: to its group, if it is still remembered. */
  foldedGroupOf(tgid: number, startTime: bigint): ProcessGroup | undefined {
    return this.recentlyFolded.get(processId(tgid, startTime || null));
  }

  addFoldedPackets(group: ProcessGroup, packets: Packets): void {
    addPackets(group.packets, packets);
  }

  /** What the report needs beyond the live tables: the kept sockets, the folded aggregates, the
   *  accumulated timeline and sizes (report/assemble.ts). */
  summary(): ModelSummary {
    const kept = this.keptSockets.kept();
    const excluded = new Set<Flow>();
    for (const s of kept) if (s.foldedOwners) for (const f of s.flows) if (s.foldedOwners.has(flowOwner(f))) excluded.add(f);
    return {
      kept,
      connectionGroups: this.connectionFolds.list(),
      foldedSockets: this.keptSockets.folded,
      foldedRows: this.connectionFolds.rows,
      processGroups: this.processFolds.list(),
      foldedProcesses: this.keptProcesses.folded,
      caps: { connections: this.keptSockets.caps, processes: this.keptProcesses.caps },
      foldedTrafficOf: (pid, startTime) => this.foldedTrafficOf(pid, startTime),
      inProcessGroups: excluded,
      timeline: this.timeline,
      sizes: this.sizes,
      foldedTtfb: this.foldedTtfb,
      ephemeralRange: this.ephemeralRange,
    };
  }

  /** Proc connector events: they fill in what kernel records missed (lost records) and never override
   *  them. Returns how many overflows (ENOBUFS: events lost) there were among them. */
  onProcEvents(events: ProcEvent[]): number {
    let overflows = 0;
    for (const e of events) {
      if (e.kind === 'overflow') {
        this.connectorOverflows++;
        overflows++;
      } else if (e.kind === 'fork' && e.pid === e.tgid && this.tree.has(e.parentTgid) && !this.tree.has(e.tgid)) {
        this.tree.onFork(e.tgid, e.parentTgid, '', e.tsNs, 'connector');
      } else if (e.kind === 'exit' && e.pid === e.tgid && this.tree.has(e.tgid)) {
        this.tree.onExit(e.tgid, e.tsNs, e.waitStatus, 'connector');
      }
    }
    return overflows;
  }
}
