// SPDX-License-Identifier: MIT
// The bounded model (issue 14): retention pools, folded aggregates, service endpoints, the timeline, the
// digest; and the model as a whole, fed the records of many short connections, keeps its tables small
// while the report's totals stay exact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { FlowKey, TraceRecord } from '../../src/kernel/records';
import { TCP_STATE } from '../../src/model/connections';
import { Digest, EXACT_VALUES } from '../../src/model/digest';
import { TraceModel } from '../../src/model/model';
import { Retention } from '../../src/model/retention';
import { serviceEndpoint } from '../../src/model/service';
import { MAX_BASE_BUCKETS, Timeline } from '../../src/model/timeline';
import { assembleReport } from '../../src/report/assemble';

test('retention keeps the newest, the largest and the failed, and folds each other item exactly once', () => {
  const folded: number[] = [];
  const r = new Retention<number>({ newest: 2, largest: 2, failed: 1 }, (x) => folded.push(x));
  // item i has score (bytes) sizes[i]; 3 failed
  const sizes = [5, 100, 7, 1, 50, 2, 3, 4];
  sizes.forEach((s, i) => r.offer(i, s, i === 3));
  const kept = r.kept().sort((a, b) => a - b);
  assert.deepEqual(kept, [1, 3, 4, 6, 7], 'largest 1 and 4, failed 3, newest 6 and 7');
  assert.deepEqual(folded.sort((a, b) => a - b), [0, 2, 5]);
  assert.equal(r.folded + r.size, sizes.length);
  // caps of zero keep nothing: every item is folded at once
  const none: number[] = [];
  const z = new Retention<number>({ newest: 0, largest: 0, failed: 0 }, (x) => none.push(x));
  [1, 2, 3].forEach((x) => z.offer(x, x, true));
  assert.deepEqual([none, z.kept()], [[1, 2, 3], []]);
});

test('service endpoints: a server\'s clients by our port, a client\'s servers by theirs, ephemeral ports never', () => {
  const range: [number, number] = [32768, 60999];
  assert.deepEqual(serviceEndpoint({ proto: 'tcp', role: 'passive', localPort: 40000, remoteAddr: '10.0.0.1', remotePort: 45000 }, range), {
    proto: 'tcp', direction: 'inbound', remoteAddr: '10.0.0.1', port: 40000,
  });
  assert.deepEqual(serviceEndpoint({ proto: 'tcp', role: 'active', localPort: 45000, remoteAddr: '10.0.0.1', remotePort: 443 }, range).direction, 'outbound');
  // a connection whose handshake was not seen (accepted before an attach): the ports tell
  assert.equal(serviceEndpoint({ proto: 'tcp', role: 'active', localPort: 8080, remoteAddr: '10.0.0.1', remotePort: 45000 }, range).direction, 'inbound');
  assert.equal(serviceEndpoint({ proto: 'udp', role: 'udp', localPort: 53, remoteAddr: '10.0.0.1', remotePort: 50000 }, range).port, 53);
  assert.equal(serviceEndpoint({ proto: 'udp', role: 'udp', localPort: 50000, remoteAddr: '10.0.0.1', remotePort: 53 }, range).port, 53);
});

test('digest: exact percentiles up to EXACT_VALUES, then within 1 %; histogram and max exact; merges', () => {
  const small = Digest.of([5, 1, 3, 2, 4]);
  assert.deepEqual([small.quantile(0.5), small.quantile(0.9), small.max, small.exact], [3, 5, 5, true]);
  const big = new Digest();
  for (let i = 1; i <= 10 * EXACT_VALUES; i++) big.add(i);
  assert.equal(big.exact, false);
  const p50 = big.quantile(0.5)!;
  assert.ok(Math.abs(p50 - 5 * EXACT_VALUES) / (5 * EXACT_VALUES) <= 0.011, `p50 ${p50}`);
  assert.equal(big.max, 10 * EXACT_VALUES);
  assert.equal(big.histogram.reduce((a, b) => a + b, 0), big.count);
  const merged = Digest.of([1, 2]);
  merged.merge(Digest.of([3, 4, 5]));
  assert.deepEqual([merged.count, merged.quantile(0.5), merged.sum], [5, 3, 15]);
});

test('timeline: buckets widen by 10 past MAX_BASE_BUCKETS and re-bucket exactly; a fixed interval never widens', () => {
  const t = new Timeline();
  t.setOrigin(0);
  const ep = { proto: 'tcp' as const, direction: 'outbound' as const, remoteAddr: '10.0.0.1', port: 80 };
  const ms = 1e6;
  t.add(5 * ms, 1, 0n, ep, 100, 10, 2);
  t.add(15_000 * ms, 1, 0n, ep, 1, 0, 1); // past 1200 buckets of 10 ms: 100 ms buckets now
  t.add(15_050 * ms, 2, 0n, ep, 0, 7, 1);
  const r = t.result(20_000, 200);
  assert.equal(t.baseIntervalMs, 100);
  assert.equal(r.tx.length, 100);
  assert.deepEqual([r.tx[0], r.tx[75], r.rx[0], r.rx[75]], [100, 1, 10, 7]);
  assert.equal(r.tx.reduce((a, b) => a + b, 0), 101);
  assert.deepEqual(r.perProcess.map((p) => [p.pid, p.tx.reduce((a, b) => a + b, 0), p.rx.reduce((a, b) => a + b, 0)]), [[1, 101, 10], [2, 0, 7]]);
  assert.deepEqual(r.endpoints.map((e) => e.activeMs), [400], 'two 200 ms buckets active');
  const fixed = new Timeline(7);
  fixed.setOrigin(0);
  fixed.add(MAX_BASE_BUCKETS * 10 * ms, 1, 0n, ep, 3, 0, 1);
  assert.equal(fixed.baseIntervalMs, 7);
});

// ---------------------------------------------------------------- the model fed many connections

const NGINX = 100;
const START = 5n;

function key(cookie: bigint, port: number, tgid = NGINX, startTime = START): FlowKey {
  return { id: `${cookie}/${tgid}/${startTime}/6/127.0.0.1/${port}`, cookie, tgid, startTime, family: 2, proto: 6, remoteAddr: '127.0.0.1', remotePort: port, raw: new Uint8Array(40) };
}

function state(cookie: bigint, oldState: number, newState: number, tsNs: number, port: number, error = 0, tgid = NGINX): TraceRecord {
  return { type: 'sockState', tgid, startTime: START, tsNs, cookie, family: 2, oldState, newState, error, flags: 0, localAddr: '127.0.0.1', localPort: 8080, remoteAddr: '127.0.0.1', remotePort: port };
}

const zeroSizes = () => ({ tx: new Array<number>(24).fill(0), rx: new Array<number>(24).fill(0) });

/** One accepted connection: handshake, a first-use record, release (final counters), close. */
function serve(m: TraceModel, i: number, tx: number, rx: number): void {
  const cookie = BigInt(1000 + i);
  const port = 32768 + (i % 20000);
  const t = 1e6 + i * 1e5;
  m.onRecord(state(cookie, TCP_STATE.LISTEN, TCP_STATE.SYN_RECV, t, port));
  m.onRecord(state(cookie, TCP_STATE.SYN_RECV, TCP_STATE.ESTABLISHED, t + 10, port));
  const k = key(cookie, port);
  m.onRecord({ type: 'flow', isNew: true, tgid: NGINX, startTime: START, tsNs: t + 20, key: k, counters: { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 }, firstNs: t + 20, localAddr: '127.0.0.1', localPort: 8080 });
  m.onRecord({ type: 'sockRelease', tgid: NGINX, startTime: START, tsNs: t + 90, cookie });
  for (const c of m.takeReleased()) {
    assert.equal(c, cookie);
    m.onFinalFlow({ key: k, counters: { txBytes: tx, rxBytes: rx, txCalls: 1, rxCalls: 1 }, sizes: zeroSizes(), firstNs: t + 20, lastNs: t + 80, localAddr: '127.0.0.1', localPort: 8080 });
  }
  m.retire(m.takeSettled());
  assert.equal(m.flows.size, 1, 'released but not closed: its flow stays (read) until the close');
  m.onRecord(state(cookie, TCP_STATE.FIN_WAIT2, TCP_STATE.CLOSE, t + 95, port));
  m.retire(m.takeSettled());
}

test('the model retires closed sockets: live tables stay empty, kept rows are capped, the report is exact', () => {
  const m = new TraceModel({ keepConnections: { newest: 3, largest: 2, failed: 2 }, ephemeralRange: [32768, 60999] });
  m.setOrigin(0);
  m.tree.addRoot(NGINX, 1, 'nginx', ['nginx'], null, START);
  const N = 5000;
  let tx = 0;
  for (let i = 0; i < N; i++) {
    const bytes = i === 77 ? 1_000_000 : 200 + (i % 7);
    tx += bytes;
    serve(m, i, bytes, 80);
  }
  assert.deepEqual([m.flows.size, m.connections.list().length], [0, 0]);
  assert.ok(m.keptSocketList().length <= 5, `${m.keptSocketList().length} kept`);
  const s = m.summary();
  assert.equal(s.foldedSockets + s.kept.length, N);
  const report = assembleReport({
    version: '0', mode: 'attach', backend: 'tracepoint', command: [], exitCode: null, startedAt: new Date(0), durationMs: N / 10, originNs: 0,
    processes: m.tree.list(), flows: s.kept.flatMap((k) => k.flows), connections: s.kept.flatMap((k) => (k.connection ? [k.connection] : [])),
    packets: [], lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    notes: [], statistics: { flowIntervalMs: 100 }, summary: s,
  });
  assert.equal(report.totals.tcp.txBytes, tx);
  assert.equal(report.processes[0].tcp.txBytes, tx, 'per process, folded sockets included');
  assert.deepEqual(report.endpoints.map((e) => [e.direction, e.localPort, e.remotePort, e.connections, e.txBytes]), [['inbound', 8080, 0, N, tx]]);
  assert.ok(report.connections.some((c) => c.txBytes === 1_000_000), 'the largest is kept');
  assert.equal(report.folding!.connections + report.connections.length, N);
  assert.equal(report.foldedConnections!.length, 1);
  assert.equal(report.timeSeries!.tx.reduce((a, b) => a + b, 0), tx);
  assert.equal(report.distributions!.connectionDurations.count, N);
  assert.equal(report.distributions!.connectionDurations.approximate, true);
});

test('the model folds exited processes without live flows, keeping their bytes in the totals', () => {
  const m = new TraceModel({ keepProcesses: { newest: 1, largest: 1, failed: 1 }, keepConnections: { newest: 0, largest: 0, failed: 0 } });
  m.setOrigin(0);
  m.tree.addRoot(1, 0, 'sh', ['sh', 'loop.sh'], 0, 1n);
  let total = 0;
  for (let i = 0; i < 50; i++) {
    const pid = 1000 + i;
    const st = BigInt(10 + i);
    const t = 1e6 * (i + 1);
    m.onRecord({ type: 'fork', tgid: pid, startTime: st, tsNs: t, ppid: 1, nspid: pid, comm: 'curl' });
    const k = key(BigInt(5000 + i), 80, pid, st);
    m.onRecord({ type: 'flow', isNew: true, tgid: pid, startTime: st, tsNs: t + 10, key: k, counters: { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 }, firstNs: t + 10, localAddr: '127.0.0.1', localPort: 40000 + i });
    m.onRecord({ type: 'exit', tgid: pid, startTime: st, tsNs: t + 50, waitStatus: i === 7 ? 1 << 8 : 0 });
    m.onRecord({ type: 'sockRelease', tgid: pid, startTime: st, tsNs: t + 60, cookie: k.cookie });
    m.takeReleased();
    m.onFinalFlow({ key: k, counters: { txBytes: 10 + i, rxBytes: 0, txCalls: 1, rxCalls: 0 }, sizes: zeroSizes(), firstNs: t + 10, lastNs: t + 40, localAddr: '127.0.0.1', localPort: 40000 + i });
    total += 10 + i;
    m.retire(m.takeSettled());
  }
  const listed = m.tree.list();
  assert.ok(listed.length <= 4, `${listed.length} listed: the root, the newest, the largest, the failed`);
  assert.ok(listed.some((p) => p.pid === 1007), 'the failed one (exit 1) is listed');
  const s = m.summary();
  assert.equal(s.processGroups.length, 1);
  assert.equal(s.processGroups[0].count + listed.length - 1, 50);
  const report = assembleReport({
    version: '0', mode: 'run', backend: 'tracepoint', command: ['sh'], exitCode: 0, startedAt: new Date(0), durationMs: 60, originNs: 0,
    processes: listed, flows: [], connections: [], packets: [],
    lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    notes: [], statistics: { flowIntervalMs: 100 }, summary: s,
  });
  assert.equal(report.totals.tcp.txBytes, total);
  assert.equal(report.foldedProcesses![0].comm, 'curl');
  assert.equal(report.foldedProcesses![0].ppid, 1);
});

test('a proc connector fork that comes after the kernel records of a folded process does not bring it back', () => {
  const m = new TraceModel({ keepProcesses: { newest: 1, largest: 0, failed: 0 }, keepConnections: { newest: 0, largest: 0, failed: 0 } });
  m.setOrigin(0);
  m.tree.addRoot(1, 0, 'sh', ['sh'], 0, 1n);
  for (let i = 0; i < 5; i++) {
    const pid = 2000 + i;
    const t = 1e6 * (i + 1);
    m.onRecord({ type: 'fork', tgid: pid, startTime: BigInt(t), tsNs: t, ppid: 1, nspid: pid, comm: 'true' });
    m.onRecord({ type: 'exit', tgid: pid, startTime: BigInt(t), tsNs: t + 50, waitStatus: 0 });
    m.retire(m.takeSettled());
  }
  const before = m.tree.list().length;
  assert.ok(before <= 2, `root and the newest child listed, got ${before}`);
  // the connector, behind the ring buffer under load, reports the same forks and exits now
  m.onProcEvents([2000, 2001, 2002, 2003, 2004].flatMap((pid, i) => [
    { kind: 'fork' as const, pid, tgid: pid, parentPid: 1, parentTgid: 1, tsNs: 1e6 * (i + 1) + 3 },
    { kind: 'exit' as const, pid, tgid: pid, parentPid: 1, parentTgid: 1, tsNs: 1e6 * (i + 1) + 52, waitStatus: 0, exitSignal: 17 },
  ]));
  assert.equal(m.tree.list().length, before, m.tree.list().map((p) => `${p.pid}/${p.source}`).join(' '));
  // a later process with a reused pid is still a new process
  m.onProcEvents([{ kind: 'fork', pid: 2000, tgid: 2000, parentPid: 1, parentTgid: 1, tsNs: 9e6 }]);
  assert.equal(m.tree.list().length, before + 1);
});
