// SPDX-License-Identifier: MIT
// The server's side of the patterns (src/analysis/server.ts): accepted connections seen from the side
// that accepted them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RR_MIN_EXCHANGES, detectPatterns } from '../../src/analysis/patterns';
import type { FlowSeries } from '../../src/analysis/series';
import type { ConnectionReport, Pattern } from '../../src/schema/report';
import { bulkCalls, simulateFlow, type Call } from './flowsim';

const MiB = 1024 * 1024;
const LOCAL = { localAddr: '127.0.0.1', localPort: 6379 };

/** A flow the server accepted: the client's ephemeral port is its remote. */
function accepted(calls: Call[], o: { pid?: number; remotePort?: number; socket?: string; endMs?: number | null } = {}): FlowSeries {
  return { ...simulateFlow(calls, { remotePort: 50000, ...o }), accepted: true, ...LOCAL };
}

function passiveRow(f: FlowSeries, extra: Partial<ConnectionReport> = {}): ConnectionReport {
  const last = f.samples.at(-1)!;
  return {
    pid: f.pid, proto: 'tcp', role: 'passive', ...LOCAL, remoteAddr: f.remoteAddr, remotePort: f.remotePort, startOffsetMs: f.startMs,
    durationMs: f.endMs === null ? null : f.endMs - f.startMs, txBytes: last.txBytes, rxBytes: last.rxBytes, txCalls: last.txCalls, rxCalls: last.rxCalls,
    outcome: f.endMs === null ? 'open' : 'closed', error: null, ...extra,
  };
}

const detect = (flows: FlowSeries[], durationMs: number, rows = flows.map((f) => passiveRow(f))): Pattern[] =>
  detectPatterns({ series: flows, connections: rows, durationMs });

/** A client's commands answered at once: n requests of `req` bytes, answers of `resp`, `gapMs` apart. */
function commands(n: number, req: number, resp: number, t0 = 100, gapMs = 0.2): Call[] {
  return Array.from({ length: n }, (_, i) => [
    { tMs: t0 + i * gapMs, dir: 'rx' as const, bytes: req },
    { tMs: t0 + i * gapMs + 0.05, dir: 'tx' as const, bytes: resp },
  ]).flat();
}

test('a server answering 2000 commands on one connection answers requests; it sends none', () => {
  const f = accepted(commands(2000, 14, 7), { endMs: 600 });
  const ps = detect([f], 1000);
  assert.deepEqual(ps.map((p) => [p.kind, p.evidence.side]), [['request-response', 'server']]);
  const p = ps[0];
  assert.deepEqual(p.local, { proto: 'tcp', ...LOCAL });
  assert.equal(p.endpoint, undefined);
  assert.deepEqual([p.evidence.requests, p.evidence.responses, p.evidence.connections, p.evidence.clients], [2000, 2000, 1, 1]);
  assert.equal(p.summary, 'pid 42 answers 2,000 requests on 127.0.0.1:6379 (1 connection from 1 client): average request 14 B, response 7 B');
  // the same flow as the client-side code saw it before: "sends N requests to 127.0.0.1:50000"
  const asClient = detectPatterns({ series: [{ ...f, accepted: undefined }], connections: [], durationMs: 1000 });
  assert.ok(asClient.every((x) => !/answers 2,000/.test(x.summary)));
});

test(`server request-response: ${RR_MIN_EXCHANGES} requests make it, one fewer does not; a sink answers none`, () => {
  assert.equal(detect([accepted(commands(RR_MIN_EXCHANGES, 100, 900), { endMs: 200 })], 1000).length, 1);
  assert.deepEqual(detect([accepted(commands(RR_MIN_EXCHANGES - 1, 100, 900), { endMs: 200 })], 1000), []);
  const sink = accepted(Array.from({ length: 50 }, (_, i) => ({ tMs: 100 + i, dir: 'rx' as const, bytes: 4000 })), { endMs: 200 });
  assert.deepEqual(detect([sink], 1000), []);
  // several workers and clients on one listening port make one finding
  const flows = [accepted(commands(10, 80, 5000), { pid: 101, socket: 'a', remotePort: 50001, endMs: 300 }), accepted(commands(10, 80, 5000), { pid: 102, socket: 'b', remotePort: 50002, endMs: 300 })];
  const [p] = detect(flows, 1000);
  assert.deepEqual([p.pids, p.evidence.requests, p.evidence.connections], [[101, 102], 20, 2]);
  assert.match(p.summary, /^pids 101, 102 answer 20 requests on 127\.0\.0\.1:6379 \(2 connections from 1 client\)/);
});

test("a server's accepted connections every 465 ms are accepts, not connects", () => {
  const flows = Array.from({ length: 6 }, (_, i) => accepted(commands(1, 30, 60, 100 + i * 465), { socket: `c${i}`, remotePort: 50000 + i, endMs: 104 + i * 465 }));
  const ps = detect(flows, 3000);
  const periodic = ps.filter((p) => p.kind === 'periodic');
  assert.deepEqual(periodic.map((p) => p.evidence.source), ['accepts']);
  assert.equal(periodic[0].summary, 'pid 42 accepts a connection on 127.0.0.1:6379 every 465 ms (±0 ms, 6 times)');
  assert.ok(ps.every((p) => !/connects to/.test(p.summary)), JSON.stringify(ps));
  // the client's side of the same connections: connects
  const asClient = detectPatterns({ series: [], connections: flows.map((f) => passiveRow(f, { role: 'active', localPort: f.remotePort, remotePort: 6379 })), durationMs: 3000 });
  assert.match(asClient.find((p) => p.kind === 'periodic')!.summary, /connects to 127\.0\.0\.1:6379 every 465 ms/);
});

test('bulk from a server is sent to its client; reset and idle accepted connections are no failed connects', () => {
  const f = accepted(bulkCalls('tx', 20 * MiB, 200, 1000, 5), { endMs: 1300 });
  const [bulk] = detect([f], 2000).filter((p) => p.kind === 'bulk');
  assert.match(bulk.summary, /^pid 42 sends 20\.0 MiB on 127\.0\.0\.1:6379 \(1 connection\) at /);
  assert.deepEqual([bulk.local, bulk.endpoint, bulk.evidence.side], [{ proto: 'tcp', ...LOCAL }, undefined, 'server']);
  const idle = accepted([{ tMs: 100, dir: 'rx', bytes: 20 }, { tMs: 101, dir: 'tx', bytes: 20 }], { endMs: null });
  const rows = [passiveRow(idle, { durationMs: null, outcome: 'open' }), { ...passiveRow(idle), remotePort: 50009, outcome: 'reset' as const, error: 'ECONNRESET', durationMs: 5 }];
  const ps = detect([idle], 5000, rows);
  assert.deepEqual(ps.map((p) => p.kind), ['long-lived-idle']);
  assert.deepEqual(ps[0].local, { proto: 'tcp', ...LOCAL });
  assert.match(ps[0].summary, /^pid 42 holds an idle connection accepted on 127\.0\.0\.1:6379 open 4\.90 s/);
});
