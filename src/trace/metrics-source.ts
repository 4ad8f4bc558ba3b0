// SPDX-License-Identifier: MIT
// The MetricsSource of the trace session: the model's flows, each as fresh as the kernel's own
// counters (the flow table is read at every scrape: an idle flow's last bytes may not have had an
// interval record yet), attributed to processes the way the report does it. The one file that knows
// the session's and the model's shapes: re-point it when they change.
import type { FlowCounters } from '../kernel/records';
import { processId, type ProcessNode } from '../model/tree';
import type { Flow } from '../model/flows';
import { serviceKey, type ServiceEndpoint } from '../model/service';
import { containerLabel } from '../proc/container';
import { processResolver } from '../report/sections';
import type { TraceSession } from './session';
import type { FinalFlow } from '../kernel/maps';
import { protoName } from '../util/net';
import type { ConnectionTotals, EndedOutcome, MetricsSnapshot, MetricsSource, ProcessTotals, RemoteTotals, TrafficTotals } from '../metrics/source';

const zero = (): TrafficTotals => ({ txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

function add(into: TrafficTotals, c: FlowCounters): void {
  into.txBytes += c.txBytes;
  into.rxBytes += c.rxBytes;
  into.txCalls += c.txCalls;
  into.rxCalls += c.rxCalls;
}

const larger = (a: FlowCounters, b: FlowCounters): FlowCounters => ({
  txBytes: Math.max(a.txBytes, b.txBytes),
  rxBytes: Math.max(a.rxBytes, b.rxBytes),
  txCalls: Math.max(a.txCalls, b.txCalls),
  rxCalls: Math.max(a.rxCalls, b.rxCalls),
});

export function sessionMetricsSource(session: TraceSession): MetricsSource {
  // A process's key must outlive its start time becoming known (attach targets learn it later).
  const keys = new WeakMap<ProcessNode, string>();
  let nextKey = 0;
  const keyOf = (node: ProcessNode) => {
    let key = keys.get(node);
    if (key === undefined) keys.set(node, (key = `${node.pid}#${nextKey++}`));
    return key;
  };
  // Kernel reads stop working once the session closed its BPF object: the model alone is final then.
  const kernel = <T, F>(read: () => T, fallback: F): T | F => {
    try {
      return read();
    } catch {
      return fallback;
    }
  };

  return {
    snapshot(): MetricsSnapshot {
      const { model: collector, probes: tracer } = session;
      const dumped = kernel(() => tracer.dumpFlows(), null);
      const finished = dumped === null;
      const live = new Map<string, FinalFlow>((dumped ?? []).map((f) => [f.key.id, f]));
      // Remotes are service endpoints (a server's clients by address and our port, a client's servers by
      // address and port), so ephemeral ports make no series of their own.
      const outbound = (proto: 'tcp' | 'udp', remoteAddr: string, port: number): ServiceEndpoint => ({ proto, direction: 'outbound', remoteAddr, port });
      const flows: Array<{ tgid: number; startTime: bigint; proto: number; service: ServiceEndpoint; counters: FlowCounters }> = [];
      for (const flow of collector.flows.list() as Flow[]) {
        const k = live.get(flow.key.id);
        live.delete(flow.key.id);
        const counters = flow.final || !k ? flow.counters : larger(flow.counters, k.counters);
        flows.push({ tgid: flow.key.tgid, startTime: flow.key.startTime, proto: flow.key.proto, service: collector.endpointOf(flow), counters });
      }
      // flows whose first record is still on its way
      for (const k of live.values()) flows.push({ tgid: k.key.tgid, startTime: k.key.startTime, proto: k.key.proto, service: outbound(protoName(k.key.proto), k.key.remoteAddr, k.key.remotePort), counters: k.counters });

      // the flows the model retired (kept or folded) count as well: these totals only grow
      const retired = collector.retiredTraffic;
      const totals = { tcp: { ...retired.tcp }, udp: { ...retired.udp } };
      const owner = processResolver(collector.tree.list());
      const processes = new Map<ProcessNode, ProcessTotals>();
      const processOf = (node: ProcessNode): ProcessTotals => {
        let p = processes.get(node);
        if (!p) {
          const container = node.container ? containerLabel(node.container) : '';
          processes.set(node, (p = { key: keyOf(node), pid: node.pid, comm: node.comm, container, tcp: zero(), udp: zero() }));
        }
        return p;
      };
      const remotes = new Map<string, RemoteTotals>();
      const remoteOf = (service: ServiceEndpoint): RemoteTotals => {
        const id = serviceKey(service);
        let r = remotes.get(id);
        if (!r) {
          const inbound = service.direction === 'inbound';
          remotes.set(id, (r = { key: id, proto: service.proto, remoteAddr: service.remoteAddr, remotePort: inbound ? 0 : service.port, ...(inbound ? { localPort: service.port } : {}), ...zero() }));
        }
        return r;
      };
      for (const f of flows) {
        const proto = protoName(f.proto);
        add(totals[proto], f.counters);
        // traffic of a process the tree does not know yet stays in the totals (and so in "other")
        const node = owner(f.tgid, f.startTime);
        if (node) add(processOf(node)[proto], f.counters);
        add(remoteOf(f.service), f.counters);
      }
      for (const node of collector.tree.list()) {
        const r = retired.byOwner.get(processId(node.pid, node.startTime));
        if (!r) continue;
        const p = processOf(node);
        add(p.tcp, r.tcp);
        add(p.udp, r.udp);
      }
      for (const { service, counters } of retired.byService.values()) add(remoteOf(service), counters);

      // Ended: the kernel's CLOSE state change says how. A socket released without one is "closed" in the
      // report, but while tracing its CLOSE may still come (and say "reset"): counted once the trace is over.
      const released = new Set(collector.flows.list().filter((f) => f.releasedNs !== null).map((f) => f.key.cookie));
      const connections: ConnectionTotals = { opened: { active: 0, passive: 0 }, ended: [] };
      const ended = new Map<string, ConnectionTotals['ended'][number]>();
      for (const c of collector.connections.list()) {
        const role = c.role === 'passive' ? 'passive' : 'active';
        connections.opened[role]++;
        const outcome = c.endNs === null ? (finished && released.has(c.cookie) ? 'closed' : 'open') : c.outcome;
        if (outcome === 'open') continue;
        const id = `${role}/${outcome}`;
        const e = ended.get(id) ?? { role, outcome: outcome as EndedOutcome, count: 0 };
        e.count++;
        ended.set(id, e);
      }
      connections.ended = [...ended.values()];

      const retransmits = new Map(collector.retransmits);
      for (const [cookie, n] of kernel(() => tracer.dumpRetransmits(), new Map<bigint, number>())) retransmits.set(cookie, Math.max(n, retransmits.get(cookie) ?? 0));
      const stats = kernel(() => tracer.readStats(), null);
      return {
        totals,
        processes: [...processes.values()],
        remotes: [...remotes.values()],
        connections,
        retransmits: [...retransmits.values()].reduce((a, b) => a + b, 0),
        lostRecords: stats?.lostRecords ?? {},
        records: session.records,
      };
    },
    ...(session.l7Metrics ? { l7: () => session.l7Metrics!.totals() } : {}),
  };
}
