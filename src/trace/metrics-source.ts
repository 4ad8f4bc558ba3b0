// SPDX-License-Identifier: MIT
// The MetricsSource of the trace session: the model's flows, each as fresh as the kernel's own
// counters (the flow table is read at every scrape: an idle flow's last bytes may not have had an
// interval record yet), attributed to processes the way the report does it. The one file that knows
// the session's and the model's shapes: re-point it when they change.
import type { FlowCounters } from '../kernel/records';
import type { ProcessNode } from '../model/tree';
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
      const flows: Array<{ tgid: number; startTime: bigint; proto: number; remoteAddr: string; remotePort: number; counters: FlowCounters }> = [];
      for (const flow of collector.flows.list()) {
        const k = live.get(flow.key.id);
        live.delete(flow.key.id);
        const counters = flow.final || !k ? flow.counters : larger(flow.counters, k.counters);
        flows.push({ tgid: flow.key.tgid, startTime: flow.key.startTime, proto: flow.key.proto, remoteAddr: flow.key.remoteAddr, remotePort: flow.key.remotePort, counters });
      }
      // flows whose first record is still on its way
      for (const k of live.values()) flows.push({ tgid: k.key.tgid, startTime: k.key.startTime, proto: k.key.proto, remoteAddr: k.key.remoteAddr, remotePort: k.key.remotePort, counters: k.counters });

      const totals = { tcp: zero(), udp: zero() };
      const owner = processResolver(collector.tree.list());
      const processes = new Map<ProcessNode, ProcessTotals>();
      const remotes = new Map<string, RemoteTotals>();
      for (const f of flows) {
        const proto = protoName(f.proto);
        add(totals[proto], f.counters);
        // traffic of a process the tree does not know yet stays in the totals (and so in "other")
        const node = owner(f.tgid, f.startTime);
        if (node) {
          let p = processes.get(node);
          if (!p) {
            const container = node.container ? containerLabel(node.container) : '';
            processes.set(node, (p = { key: keyOf(node), pid: node.pid, comm: node.comm, container, tcp: zero(), udp: zero() }));
          }
          add(p[proto], f.counters);
        }
        const id = `${proto}/${f.remoteAddr}/${f.remotePort}`;
        let r = remotes.get(id);
        if (!r) remotes.set(id, (r = { key: id, proto, remoteAddr: f.remoteAddr, remotePort: f.remotePort, ...zero() }));
        add(r, f.counters);
      }

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
  };
}
