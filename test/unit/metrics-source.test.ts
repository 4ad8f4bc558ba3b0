// SPDX-License-Identifier: MIT
// The engine's MetricsSource: flows as fresh as the kernel's counters while the BPF object is open, the
// model's final figures once it is closed; processes and remotes as the report counts them; a released
// socket whose CLOSE has not come yet is not "ended" until the trace is over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TraceModel } from '../../src/model/model';
import type { FlowCounters, FlowKey, TraceRecord } from '../../src/kernel/records';
import { sessionMetricsSource } from '../../src/trace/metrics-source';
import type { TraceSession } from '../../src/trace/session';
import type { FinalFlow } from '../../src/kernel/maps';
import { TCP_STATE } from '../../src/model/connections';

const key = (cookie: bigint, tgid: number, port: number): FlowKey => ({
  id: `${cookie}/${tgid}/6/${port}`, cookie, tgid, startTime: 0n, family: 2, proto: 6, remoteAddr: '127.0.0.1', remotePort: port, raw: new Uint8Array(0),
});
const c = (txBytes: number, rxBytes: number, txCalls = 1, rxCalls = 1): FlowCounters => ({ txBytes, rxBytes, txCalls, rxCalls });
const flow = (k: FlowKey, counters: FlowCounters, tsNs = 1): TraceRecord => ({ type: 'flow', isNew: true, tgid: k.tgid, tsNs, key: k, counters, firstNs: 0, localAddr: '127.0.0.1', localPort: 40000, startTime: 0n });
const state = (cookie: bigint, oldState: number, newState: number, tsNs: number): TraceRecord => ({
  type: 'sockState', tgid: 100, tsNs, cookie, family: 2, oldState, newState, error: 0, flags: 0, localAddr: '127.0.0.1', localPort: 40000, remoteAddr: '127.0.0.1', remotePort: 80, startTime: 0n,
});

function fakeSession(collector: TraceModel, kernelFlows: () => FinalFlow[]): TraceSession {
  let open = true;
  const guard = <T>(v: () => T) => () => {
    if (!open) throw new Error('BpfObject is closed');
    return v();
  };
  const tracer = {
    backend: 'tracepoint',
    dumpFlows: guard(kernelFlows),
    dumpRetransmits: guard(() => new Map([[7n, 3]])),
    readStats: guard(() => ({ lostRecords: { flowUpdate: 2 }, flowTableFull: 0, flowTableFullBytes: 0, tracedTableFull: 0, retransmitTableFull: 0 })),
    close: () => (open = false),
  };
  return { model: collector, probes: tracer, records: 0 } as unknown as TraceSession;
}

test('live kernel counters win over older samples; the model alone once the object is closed', () => {
  const collector = new TraceModel();
  collector.tree.addRoot(100, 1, 'nginx', ['nginx'], 0);
  const a = key(7n, 100, 80);
  collector.onRecord(flow(a, c(1000, 10)));
  const kernel: FinalFlow[] = [
    // a process the tree does not know yet (its records are on their way): in the totals, not in the processes
    { key: key(8n, 555, 53), counters: c(5, 5), sizes: { tx: [], rx: [] }, firstNs: 0, lastNs: 2, localAddr: '127.0.0.1', localPort: 40002 },
    { key: a, counters: c(4000, 40, 4, 2), sizes: { tx: [], rx: [] }, firstNs: 0, lastNs: 2, localAddr: '127.0.0.1', localPort: 40000 },
    // a flow whose first record is still in the ring buffer
    { key: key(9n, 100, 443), counters: c(7, 0, 1, 0), sizes: { tx: [], rx: [] }, firstNs: 0, lastNs: 2, localAddr: '127.0.0.1', localPort: 40001 },
  ];
  const engine = fakeSession(collector, () => kernel);
  const source = sessionMetricsSource(engine);
  let s = source.snapshot();
  assert.deepEqual(s.totals.tcp, { txBytes: 4012, rxBytes: 45, txCalls: 6, rxCalls: 3 });
  assert.deepEqual(s.processes.map((p) => [p.pid, p.comm, p.tcp.txBytes]), [[100, 'nginx', 4007]]);
  assert.deepEqual(s.remotes.map((r) => [r.remotePort, r.txBytes]).sort((x, y) => x[0] - y[0]), [[53, 5], [80, 4000], [443, 7]]);
  assert.equal(s.retransmits, 3);
  assert.deepEqual(s.lostRecords, { flowUpdate: 2 });
  const firstKey = s.processes[0].key;

  // the model's final read at the end (finalize), then the object closes
  collector.flows.finalize(a, c(4100, 41, 5, 2), 0, 3, '127.0.0.1', 40000);
  (engine.probes as unknown as { close(): void }).close();
  s = source.snapshot();
  assert.equal(s.totals.tcp.txBytes, 4100, 'flows only the kernel knew are gone with it (the engine finalizes every flow before it closes)');
  assert.equal(s.processes[0].key, firstKey, 'a process keeps its key');
});

test('connections: opened by role; ended only by the kernel\'s CLOSE until the trace is over', () => {
  const collector = new TraceModel();
  collector.tree.addRoot(100, 1, 'curl', [], 0);
  collector.onRecord(state(1n, TCP_STATE.CLOSE, TCP_STATE.SYN_SENT, 1));
  collector.onRecord(state(1n, TCP_STATE.SYN_SENT, TCP_STATE.ESTABLISHED, 2));
  collector.onRecord(flow(key(1n, 100, 80), c(10, 10)));
  collector.onRecord(state(2n, TCP_STATE.CLOSE, TCP_STATE.SYN_SENT, 3));
  collector.onRecord({ ...state(2n, TCP_STATE.SYN_SENT, TCP_STATE.CLOSE, 4), error: 111 } as TraceRecord);
  collector.onRecord({ type: 'sockRelease', tgid: 100, tsNs: 5, cookie: 1n, startTime: 0n });
  const engine = fakeSession(collector, () => []);
  const source = sessionMetricsSource(engine);
  let s = source.snapshot();
  assert.deepEqual(s.connections.opened, { active: 2, passive: 0 });
  assert.deepEqual(s.connections.ended, [{ role: 'active', outcome: 'refused', count: 1 }]);
  (engine.probes as unknown as { close(): void }).close();
  s = source.snapshot();
  assert.deepEqual(s.connections.ended.sort((x, y) => x.outcome.localeCompare(y.outcome)), [
    { role: 'active', outcome: 'closed', count: 1 },
    { role: 'active', outcome: 'refused', count: 1 },
  ]);
});
