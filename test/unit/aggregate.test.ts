// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionTracker, TCP_STATE, closeOutcome } from '../../src/model/connections';
import { FlowTable } from '../../src/model/flows';
import { assembleReport, type ReportInputs } from '../../src/report/assemble';
import { ProcessTree, decodeWaitStatus } from '../../src/model/tree';
import type { FlowKey } from '../../src/kernel/records';

function key(tgid: number, cookie: bigint, proto: number, remoteAddr: string, remotePort: number, startTime = 0n): FlowKey {
  const id = `${cookie}/${tgid}/${startTime}/${proto}/${remoteAddr}/${remotePort}`;
  return { id, cookie, tgid, startTime, family: 2, proto, remoteAddr, remotePort, raw: new Uint8Array(40) };
}
const counters = (txBytes: number, rxBytes: number, txCalls: number, rxCalls: number) => ({ txBytes, rxBytes, txCalls, rxCalls });

test('wait status decodes to the shell convention', () => {
  assert.deepEqual(decodeWaitStatus(0), { exitCode: 0, exitSignal: null });
  assert.deepEqual(decodeWaitStatus(7 << 8), { exitCode: 7, exitSignal: null });
  assert.deepEqual(decodeWaitStatus(9), { exitCode: 137, exitSignal: 9 });
  assert.deepEqual(decodeWaitStatus(null), { exitCode: null, exitSignal: null });
});

test('the process tree: children inherit argv until exec; kernel exits win over the proc connector', () => {
  const tree = new ProcessTree();
  tree.addRoot(10, 1, 'sh', ['sh', '-c', 'x'], 0);
  tree.onFork(11, 10, 'sh', 5);
  assert.deepEqual(tree.get(11)?.argv, ['sh', '-c', 'x']);
  tree.onExec(11, 'curl', ['curl', 'u']);
  assert.equal(tree.get(11)?.comm, 'curl');
  tree.onExit(11, 9, 256, 'connector');
  tree.onExit(11, 8, 512, 'kernel');
  tree.onExit(11, 7, 768, 'connector');
  assert.equal(tree.get(11)?.waitStatus, 512);
  assert.equal(tree.get(11)?.exitNs, 8);
  // a fork record that arrives after the connector saw the child fixes the parent and source
  tree.onFork(12, 10, '', 6, 'connector');
  assert.equal(tree.get(12)?.comm, 'sh', 'the connector knows no comm: the parent\'s for now');
  tree.onFork(12, 11, 'curl', 7, 'kernel');
  assert.equal(tree.get(12)?.ppid, 11);
  assert.equal(tree.get(12)?.source, 'kernel');
  assert.equal(tree.get(12)?.comm, 'curl', 'the kernel fork record carries the child\'s own comm');
  assert.equal(tree.get(12)?.startNs, 7);
});

test('flow counters only grow from interval records, and final kernel counters replace them', () => {
  const flows = new FlowTable();
  const k = key(1, 5n, 6, '127.0.0.1', 80);
  flows.observe(k, counters(100, 0, 1, 0), 1, 1, '127.0.0.1', 4000);
  flows.observe(k, counters(50, 0, 1, 0), 1, 2, '127.0.0.1', 4000); // late, smaller: ignored
  assert.equal(flows.get(k.id)?.counters.txBytes, 100);
  flows.finalize(k, counters(130, 7, 3, 1), 1, 3, '127.0.0.1', 4000);
  flows.observe(k, counters(200, 9, 9, 9), 1, 4, '127.0.0.1', 4000); // after final: ignored
  assert.deepEqual(flows.get(k.id)?.counters, counters(130, 7, 3, 1));
  assert.deepEqual(flows.markReleased(5n, 10).map((f) => f.releasedNs), [10]);
  assert.deepEqual(flows.flowsOfSocket(6n), []);
});

test('connection outcomes: refused, timeout, reset, aborted, closed', () => {
  assert.equal(closeOutcome(TCP_STATE.SYN_SENT, 111, false).outcome, 'refused');
  assert.equal(closeOutcome(TCP_STATE.SYN_SENT, 110, false).outcome, 'timeout');
  assert.equal(closeOutcome(TCP_STATE.SYN_SENT, 0, false).outcome, 'aborted');
  assert.equal(closeOutcome(TCP_STATE.ESTABLISHED, 104, true).outcome, 'reset');
  assert.equal(closeOutcome(TCP_STATE.LAST_ACK, 0, true).outcome, 'closed');
  const tracker = new ConnectionTracker();
  const base = { tgid: 3, cookie: 9n, error: 0, localAddr: '127.0.0.1', localPort: 0, remoteAddr: '127.0.0.1', remotePort: 81 };
  tracker.onState({ ...base, tsNs: 1, oldState: TCP_STATE.CLOSE, newState: TCP_STATE.SYN_SENT });
  tracker.onState({ ...base, tsNs: 2, localPort: 5000, oldState: TCP_STATE.SYN_SENT, newState: TCP_STATE.CLOSE, error: 111 });
  const [c] = tracker.list();
  assert.deepEqual([c.outcome, c.error, c.localPort, c.role], ['refused', 'ECONNREFUSED', 5000, 'active']);
});

test('the report sums flows per process and protocol, groups endpoints and lists connections', () => {
  const tree = new ProcessTree();
  tree.addRoot(1, 0, 'app', ['app'], 1_000_000);
  tree.onFork(2, 1, 'app', 3_000_000);
  tree.onExit(2, 5_000_000, 0);
  const flows = new FlowTable();
  flows.finalize(key(1, 1n, 6, '10.9.9.9', 443), counters(100, 1000, 2, 3), 2_000_000, 2_500_000, '10.0.0.1', 5555);
  flows.finalize(key(2, 2n, 6, '10.9.9.9', 443), counters(10, 20, 1, 1), 3_500_000, 4_000_000, '10.0.0.1', 5556);
  flows.finalize(key(2, 3n, 17, '127.0.0.53', 53), counters(40, 80, 1, 1), 3_600_000, 3_700_000, '*', 40000);
  flows.markReleased(3n, 4_500_000);
  const tracker = new ConnectionTracker();
  const st = { cookie: 1n, tgid: 1, error: 0, localAddr: '10.0.0.1', localPort: 5555, remoteAddr: '10.9.9.9', remotePort: 443 };
  tracker.onState({ ...st, tsNs: 1_900_000, oldState: TCP_STATE.CLOSE, newState: TCP_STATE.SYN_SENT });
  tracker.onState({ ...st, tsNs: 1_950_000, oldState: TCP_STATE.SYN_SENT, newState: TCP_STATE.ESTABLISHED });
  const input: ReportInputs = {
    version: '0.0.0', mode: 'run', backend: 'tracepoint', command: ['app'], exitCode: 0, startedAt: new Date(0),
    durationMs: 10, originNs: 1_000_000, processes: tree.list(), flows: flows.list(), connections: tracker.list(),
    packets: [{ tgid: 1, startTime: 0n, packets: { txPackets: 4, rxPackets: 5, txBytes: 400, rxBytes: 500 } }, { tgid: 0, startTime: 0n, packets: { txPackets: 1, rxPackets: 0, txBytes: 60, rxBytes: 0 } }],
    lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    notes: [],
    statistics: { flowIntervalMs: 100 },
  };
  const report = assembleReport(input);
  assert.equal(report.schemaVersion, 1);
  assert.deepEqual(report.processes.map((p) => [p.pid, p.ppid, p.startOffsetMs, p.exitOffsetMs]), [[1, 0, 0, null], [2, 1, 2, 4]]);
  assert.deepEqual(report.processes[1].tcp, counters(10, 20, 1, 1));
  assert.deepEqual(report.processes[1].udp, counters(40, 80, 1, 1));
  assert.equal(report.processes[0].packets.txPackets, 4);
  assert.deepEqual(report.unattributedPackets, { tx: 1, rx: 0 });
  assert.deepEqual(report.totals.tcp, counters(110, 1020, 3, 4));
  const https = report.endpoints.find((e) => e.remotePort === 443)!;
  assert.deepEqual([https.txBytes, https.rxBytes, https.connections, https.pids], [110, 1020, 2, [1, 2]]);
  assert.equal(report.endpoints[0].remotePort, 443, 'endpoints sorted by bytes');
  const active = report.connections.find((c) => c.pid === 1)!;
  assert.deepEqual([active.role, active.outcome, active.startOffsetMs, active.txBytes], ['active', 'open', 0.9, 100]);
  const udp = report.connections.find((c) => c.proto === 'udp')!;
  assert.deepEqual([udp.role, udp.outcome, udp.durationMs], ['udp', 'closed', 0.9]);
  const unknown = report.connections.find((c) => c.pid === 2 && c.proto === 'tcp')!;
  assert.equal(unknown.role, 'unknown');
  assert.ok(report.connections.every((c) => c.retransmits === undefined), 'not counted: no field');

  // retransmits per socket: TCP rows get their socket's count (0 when none), UDP rows none
  const counted = assembleReport({ ...input, retransmits: new Map([[1n, 7]]) });
  assert.deepEqual(counted.connections.map((c) => [c.pid, c.proto, c.retransmits]), [[1, 'tcp', 7], [2, 'tcp', 0], [2, 'udp', undefined]]);
});
