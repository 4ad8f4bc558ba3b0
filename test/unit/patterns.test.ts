// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BULK_MIN_BYTES,
  BULK_MIN_RATE,
  BULK_MIN_WINDOW_MS,
  FAILED_CONNECTS_MIN,
  FANOUT_MIN_ENDPOINTS,
  LONG_IDLE_MAX_RATE,
  LONG_IDLE_MIN_DURATION_MS,
  LONG_IDLE_MIN_FRACTION,
  PERIODIC_MAX_JITTER_RATIO,
  PERIODIC_MIN_OCCURRENCES,
  PERIODIC_MIN_PERIOD_MS,
  RR_MAX_REQUEST_BYTES,
  RR_MIN_EXCHANGES,
  detectPatterns,
  findPeriod,
} from '../../src/analysis/patterns';
import type { FlowSeries } from '../../src/analysis/series';
import type { ConnectionReport, Pattern } from '../../src/schema/report';
import { bulkCalls, pollCalls, simulateFlow, type Call } from './flowsim';

const MiB = 1024 * 1024;

function conn(pid: number, start: number, extra: Partial<ConnectionReport> = {}): ConnectionReport {
  return {
    pid, proto: 'tcp', role: 'active', localAddr: '10.0.0.2', localPort: 40000, remoteAddr: '127.0.0.1', remotePort: 8080,
    startOffsetMs: start, durationMs: 20, txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0, outcome: 'closed', error: null,
    ...extra,
  };
}

/** One row per flow, as the report would have it. */
function rowsOf(flows: FlowSeries[]): ConnectionReport[] {
  return flows.map((f) => {
    const last = f.samples.at(-1)!;
    return conn(f.pid, f.startMs, {
      proto: f.proto, remoteAddr: f.remoteAddr, remotePort: f.remotePort,
      durationMs: f.endMs === null ? null : f.endMs - f.startMs, outcome: f.endMs === null ? 'open' : 'closed',
      txBytes: last.txBytes, rxBytes: last.rxBytes, txCalls: last.txCalls, rxCalls: last.rxCalls,
    });
  });
}

function detect(flows: FlowSeries[], durationMs: number, extra: ConnectionReport[] = []): Pattern[] {
  return detectPatterns({ series: flows, connections: [...rowsOf(flows), ...extra], durationMs });
}
const kinds = (ps: Pattern[]) => ps.map((p) => p.kind);
const only = (ps: Pattern[], kind: string) => ps.filter((p) => p.kind === kind);

/** Times with gaps alternating period·(1+a), period·(1-a): median gap = period, stddev = a·period. */
function alternating(n: number, period: number, a: number, t0 = 100): number[] {
  const t = [t0];
  for (let i = 1; i < n; i++) t.push(t[i - 1] + period * (i % 2 ? 1 + a : 1 - a));
  return t;
}

// ---------------------------------------------------------------- periodic

test('periodic: a beacon on a persistent connection, with the summary the terminal shows', () => {
  // Gaps alternate 1012 and 988 ms: median 1000, standard deviation 12.
  const f = simulateFlow(pollCalls(9, 1000, 120, 800, { jitter: (i) => (i % 2 ? 12 : 0) }), { endMs: 9200, startMs: 50 });
  const ps = detect([f], 9500);
  assert.deepEqual(kinds(ps), ['periodic']); // a poller is request-response too: not said twice
  const p = ps[0];
  assert.deepEqual(p.pids, [42]);
  assert.deepEqual(p.endpoint, { proto: 'tcp', remoteAddr: '127.0.0.1', remotePort: 8080 });
  assert.equal(p.evidence.count, 9);
  assert.equal(p.evidence.periodMs, 1000);
  assert.equal(p.evidence.jitterMs, 12);
  assert.equal(p.summary, 'pid 42 polls 127.0.0.1:8080 every 1.00 s (±12 ms, 9 times)');
});

test(`periodic: ${PERIODIC_MIN_OCCURRENCES} occurrences are enough, one fewer is not`, () => {
  const flow = (n: number) => simulateFlow(pollCalls(n, 1000, 50, 0), { endMs: 6000, proto: 'udp' });
  assert.deepEqual(kinds(detect([flow(PERIODIC_MIN_OCCURRENCES)], 6000)), ['periodic']);
  assert.match(detect([flow(PERIODIC_MIN_OCCURRENCES)], 6000)[0].summary, /sends to 127\.0\.0\.1:8080 every 1\.00 s/);
  assert.deepEqual(only(detect([flow(PERIODIC_MIN_OCCURRENCES - 1)], 6000), 'periodic'), []);
});

test(`periodic: jitter up to ${PERIODIC_MAX_JITTER_RATIO * 100}% of the period`, () => {
  const rows = (a: number) => alternating(9, 1000, a).map((t) => conn(42, t));
  const above = detectPatterns({ series: [], connections: rows(PERIODIC_MAX_JITTER_RATIO - 0.01), durationMs: 10_000 });
  assert.deepEqual(kinds(above), ['periodic']);
  assert.equal(above[0].evidence.periodMs, 1000);
  assert.equal(above[0].evidence.jitterMs, 190);
  assert.match(above[0].summary, /^pid 42 connects to 127\.0\.0\.1:8080 every 1\.00 s \(±190 ms, 9 times\)$/);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: rows(PERIODIC_MAX_JITTER_RATIO + 0.01), durationMs: 10_000 })), []);
});

test(`periodic: period at least ${PERIODIC_MIN_PERIOD_MS} ms; busy flows sampled every 100 ms are not periodic`, () => {
  const flow = (period: number) => simulateFlow(pollCalls(12, period, 40, 0), { endMs: 12 * period + 200, proto: 'udp' });
  assert.deepEqual(kinds(detect([flow(PERIODIC_MIN_PERIOD_MS)], 5000)), ['periodic']);
  assert.deepEqual(kinds(detect([flow(PERIODIC_MIN_PERIOD_MS - 10)], 5000)), []);
  // A chatty flow: a call every 7 ms for 5 s. Its samples come every 105 ms, as steady as a clock.
  const chatty: Call[] = Array.from({ length: 700 }, (_, i) => ({ tMs: 10 + i * 7, dir: 'tx' as const, bytes: 30 }));
  assert.equal(findPeriod(simulateFlow(chatty).samples.map((s) => s.tMs).slice(0, -1)), null);
  assert.deepEqual(kinds(detect([simulateFlow(chatty, { proto: 'udp' })], 5000)), []);
});

test('periodic: a new connection per beacon, even from a new process each time (shell loop)', () => {
  const flows = [0, 1, 2, 3, 4, 5].map((i) =>
    simulateFlow([{ tMs: 200 + i * 2000, dir: 'tx', bytes: 80 }, { tMs: 203 + i * 2000, dir: 'rx', bytes: 900 }], { pid: 100 + i, socket: `s${i}`, endMs: 210 + i * 2000 }),
  );
  const ps = detect(flows, 12_000);
  assert.deepEqual(kinds(ps), ['periodic']); // not request-response again
  assert.deepEqual(ps[0].pids, [100, 101, 102, 103, 104, 105]);
  assert.equal(ps[0].evidence.source, 'connections');
  assert.match(ps[0].summary, /^pids 100, 101, 102, 103 and 2 more connect to 127\.0\.0\.1:8080 every 2\.00 s \(±0 ms, 6 times\)$/);
});

// ---------------------------------------------------------------- bulk

test('bulk: a download is bulk, and only bulk (not periodic, not request-response)', () => {
  const calls: Call[] = [{ tMs: 100, dir: 'tx', bytes: 90 }, ...bulkCalls('rx', 20 * MiB, 105, 4000)];
  const ps = detect([simulateFlow(calls, { startMs: 99 })], 5000);
  assert.deepEqual(kinds(ps), ['bulk']);
  assert.equal(ps[0].evidence.direction, 'rx');
  assert.equal(ps[0].evidence.bytes, 20 * MiB);
  const r = ps[0].evidence.rateBytesPerSec as number;
  assert.ok(r > 4.8 * MiB && r < 5.2 * MiB, String(r));
  assert.match(ps[0].summary, /^pid 42 downloads 20\.0 MiB from 127\.0\.0\.1:8080 at 5\.0 MiB\/s \(4\.0\d s\)$/);
});

test(`bulk: at least ${BULK_MIN_BYTES} bytes`, () => {
  const flow = (bytes: number) => simulateFlow(bulkCalls('tx', bytes, 100, 500), { startMs: 99 });
  const yes = detect([flow(BULK_MIN_BYTES + 1024)], 1000);
  assert.deepEqual(kinds(yes), ['bulk']);
  assert.match(yes[0].summary, /uploads 1\.0 MiB to/);
  assert.deepEqual(kinds(detect([flow(BULK_MIN_BYTES - 1024)], 1000)), []);
});

test(`bulk: at least ${BULK_MIN_RATE} bytes/s`, () => {
  const flow = (rate: number) => simulateFlow(bulkCalls('rx', 4 * MiB, 100, (4 * MiB * 1000) / rate), { startMs: 99 });
  assert.deepEqual(kinds(detect([flow(1.05 * BULK_MIN_RATE)], 5000)), ['bulk']);
  assert.deepEqual(kinds(detect([flow(0.95 * BULK_MIN_RATE)], 5000)), []);
});

test('bulk: the rate is over the real time between the I/O samples, not floored at the flow interval', () => {
  // 8 MiB arriving between two samples 14 ms apart (the last one at the flow's last I/O), then 150 ms apart.
  const burst = (gap: number, bytes = 8 * MiB): FlowSeries => ({
    pid: 1, proto: 'tcp', socket: 'b', remoteAddr: '10.0.0.9', remotePort: 443, startMs: 0, endMs: 10 + gap,
    samples: [{ tMs: 10, txBytes: 100, rxBytes: 0, txCalls: 1, rxCalls: 0 }, { tMs: 10 + gap, txBytes: 100, rxBytes: bytes, txCalls: 1, rxCalls: 30 }],
  });
  const short = detect([burst(14)], 1000);
  assert.equal(short[0].evidence.durationMs, 14);
  assert.equal(short[0].evidence.rateBytesPerSec, Math.round((8 * MiB) / 0.014));
  assert.match(short[0].summary, / 8\.0 MiB from 10\.0\.0\.9:443 at 571 MiB\/s \(14 ms\)$/);
  const long = detect([burst(BULK_MIN_WINDOW_MS + 50)], 1000);
  assert.equal(long[0].evidence.rateBytesPerSec, Math.round((8 * MiB) / ((BULK_MIN_WINDOW_MS + 50) / 1000)));
  // The decision still takes a run as at least BULK_MIN_WINDOW_MS long: 1 MiB in 10 ms is bulk, 0.5 MiB not.
  assert.equal(detect([burst(10, MiB)], 1000).length, 1);
  assert.equal(detect([burst(10, MiB / 2)], 1000).length, 0);
});

test('bulk: bytes that came in one call have no rate: the summary says so', () => {
  const once: FlowSeries = {
    pid: 1, proto: 'tcp', socket: 'c', remoteAddr: '10.0.0.9', remotePort: 443, startMs: 10, endMs: 10,
    samples: [{ tMs: 10, txBytes: 0, rxBytes: 4 * MiB, txCalls: 0, rxCalls: 1 }],
  };
  const [p] = detect([once], 1000);
  assert.equal(p.kind, 'bulk');
  assert.equal(p.evidence.rateBytesPerSec, undefined);
  assert.match(p.summary, /downloads 4\.0 MiB from 10\.0\.0\.9:443 in one call$/);
});

// ---------------------------------------------------------------- request-response

/** Irregular gaps (never periodic). */
const irregular = [0, 300, 1100, 1500, 2900, 3300, 5200];

test(`request-response: ${RR_MIN_EXCHANGES} exchanges on one flow, one fewer is not`, () => {
  const flow = (n: number) =>
    simulateFlow(irregular.slice(0, n).flatMap((t): Call[] => [{ tMs: 100 + t, dir: 'tx', bytes: 200 }, { tMs: 104 + t, dir: 'rx', bytes: 3000 }]), { endMs: 6000 });
  const ps = detect([flow(RR_MIN_EXCHANGES)], 6000);
  assert.deepEqual(kinds(ps), ['request-response']);
  assert.equal(ps[0].evidence.requests, RR_MIN_EXCHANGES);
  assert.equal(ps[0].evidence.medianRequestBytes, 200);
  assert.equal(ps[0].evidence.medianResponseBytes, 3000);
  assert.equal(ps[0].summary, 'pid 42 sends 4 requests to 127.0.0.1:8080, on one connection: median request 200 B, response 2.9 KiB');
  assert.deepEqual(kinds(detect([flow(RR_MIN_EXCHANGES - 1)], 6000)), []);
});

test('request-response: the server side of a flow (small requests received, larger answers sent)', () => {
  const calls = irregular.flatMap((t): Call[] => [{ tMs: 100 + t, dir: 'rx', bytes: 150 }, { tMs: 102 + t, dir: 'tx', bytes: 9000 }]);
  const ps = detect([simulateFlow(calls, { endMs: 6000, remotePort: 51000 })], 6000);
  assert.deepEqual(kinds(ps), ['request-response']);
  assert.equal(ps[0].evidence.side, 'server');
  assert.match(ps[0].summary, /^pid 42 answers 7 requests from 127\.0\.0\.1:51000/);
});

test(`request-response: requests up to ${RR_MAX_REQUEST_BYTES} bytes, answered by larger responses`, () => {
  const rows = (req: number, resp: number) => irregular.map((t) => conn(42, t, { proto: 'udp', role: 'udp', remotePort: 53, txBytes: req, rxBytes: resp }));
  const run = (req: number, resp: number) => detectPatterns({ series: [], connections: rows(req, resp), durationMs: 6000 });
  const ok = run(RR_MAX_REQUEST_BYTES, RR_MAX_REQUEST_BYTES + 1);
  assert.deepEqual(kinds(ok), ['request-response']);
  assert.equal(ok[0].evidence.source, 'connections');
  assert.match(ok[0].summary, /^pid 42 sends 7 requests to 127\.0\.0\.1:53, a new connection each: median request 16\.0 KiB/);
  assert.deepEqual(kinds(run(RR_MAX_REQUEST_BYTES + 1, RR_MAX_REQUEST_BYTES + 100)), []);
  assert.deepEqual(kinds(run(500, 500)), []); // response not larger
  assert.deepEqual(kinds(run(500, 501)), ['request-response']);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: rows(30, 90).slice(0, RR_MIN_EXCHANGES - 1), durationMs: 6000 })), []);
});

// ---------------------------------------------------------------- fan-out, failed connects

test(`fan-out: ${FANOUT_MIN_ENDPOINTS} distinct endpoints from one process; fewer is not (3 is not)`, () => {
  const rows = (n: number, pid = 42) => Array.from({ length: n }, (_, i) => conn(pid, i * 37 + 1, { remoteAddr: `10.0.0.${i + 1}`, remotePort: 443 }));
  const ps = detectPatterns({ series: [], connections: rows(FANOUT_MIN_ENDPOINTS), durationMs: 1000 });
  assert.deepEqual(kinds(ps), ['fan-out']);
  assert.equal(ps[0].evidence.endpoints, FANOUT_MIN_ENDPOINTS);
  assert.equal(ps[0].summary, 'pid 42 talks to 10 distinct remote endpoints (10 addresses, 1 port)');
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: rows(FANOUT_MIN_ENDPOINTS - 1), durationMs: 1000 })), []);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: rows(3), durationMs: 1000 })), []);
  // Accepted connections are fan-in, not fan-out; so are five endpoints each from two processes.
  const passive = rows(12).map((c) => ({ ...c, role: 'passive' as const }));
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: passive, durationMs: 1000 })), []);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: [...rows(5, 1), ...rows(5, 2)], durationMs: 1000 })), []);
});

test(`failed-connects: ${FAILED_CONNECTS_MIN} failure makes it, one finding per remote address, counted per outcome`, () => {
  const rows = [
    conn(42, 10, { remotePort: 9, outcome: 'refused', error: 'ECONNREFUSED', durationMs: 0.2 }),
    conn(42, 20, { remotePort: 9, outcome: 'refused', error: 'ECONNREFUSED', durationMs: 0.2 }),
    conn(43, 30, { remotePort: 9, outcome: 'timeout', error: 'ETIMEDOUT', durationMs: 300 }),
    conn(42, 40, { remoteAddr: '10.1.1.1', remotePort: 80, outcome: 'reset', error: 'ECONNRESET', txBytes: 10 }),
    conn(42, 50, { remotePort: 81 }),
  ];
  const ps = detectPatterns({ series: [], connections: rows, durationMs: 1000 });
  assert.deepEqual(kinds(ps), ['failed-connects', 'failed-connects']);
  const local = ps.find((p) => p.endpoint?.remotePort === 9)!;
  assert.deepEqual(local.pids, [42, 43]);
  assert.deepEqual(local.evidence, { failures: 3, attempts: 4, ports: 1, refused: 2, timeout: 1 });
  assert.equal(local.summary, 'pids 42, 43 had 3 of 4 connections to 127.0.0.1:9 fail (2 refused, 1 timeout)');
  assert.equal(ps.find((p) => p.endpoint?.remotePort === 80)!.summary, 'pid 42 had 1 of 1 connection to 10.1.1.1:80 fail (1 reset)');
  // a scan of closed ports on one address is one finding
  const scan = Array.from({ length: 12 }, (_, i) => conn(7, i, { remotePort: 1000 + i, outcome: 'refused', error: 'ECONNREFUSED' }));
  const [one] = detectPatterns({ series: [], connections: scan, durationMs: 1000 }).filter((p) => p.kind === 'failed-connects');
  assert.equal(one.summary, 'pid 7 had 12 of 12 connections to 127.0.0.1 (12 ports) fail (12 refused)');
  assert.equal(one.endpoint, undefined);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: [conn(42, 10, { outcome: 'aborted' })], durationMs: 1000 })), []);
});

// ---------------------------------------------------------------- long-lived idle

test(`long-lived-idle: open at least ${LONG_IDLE_MIN_FRACTION * 100}% of the trace`, () => {
  const D = 10_000;
  const row = (fraction: number) => conn(42, D * (1 - fraction), { durationMs: null, outcome: 'open', remotePort: 5432, txBytes: 300, rxBytes: 200 });
  const ps = detectPatterns({ series: [], connections: [row(LONG_IDLE_MIN_FRACTION)], durationMs: D });
  assert.deepEqual(kinds(ps), ['long-lived-idle']);
  assert.equal(ps[0].summary, 'pid 42 keeps a connection to 127.0.0.1:5432 open 8.00 s (80% of the trace) at 63 B/s');
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: [row(LONG_IDLE_MIN_FRACTION - 0.01)], durationMs: D })), []);
});

test(`long-lived-idle: below ${LONG_IDLE_MAX_RATE} bytes/s on average`, () => {
  const row = (bytes: number) => conn(42, 0, { durationMs: 10_000, outcome: 'closed', txBytes: bytes, rxBytes: 0 });
  const under = detectPatterns({ series: [], connections: [row(LONG_IDLE_MAX_RATE * 10 - 10)], durationMs: 10_000 });
  assert.deepEqual(kinds(under), ['long-lived-idle']);
  assert.equal(under[0].evidence.rateBytesPerSec, LONG_IDLE_MAX_RATE - 1);
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: [row(LONG_IDLE_MAX_RATE * 10)], durationMs: 10_000 })), []);
});

test(`long-lived-idle: at least ${LONG_IDLE_MIN_DURATION_MS} ms open, whatever the fraction`, () => {
  const run = (d: number) => detectPatterns({ series: [], connections: [conn(42, 0, { durationMs: d, outcome: 'closed' })], durationMs: d });
  assert.deepEqual(kinds(run(LONG_IDLE_MIN_DURATION_MS)), ['long-lived-idle']);
  assert.deepEqual(kinds(run(LONG_IDLE_MIN_DURATION_MS - 1)), []);
  // A refused connect is not a connection that stays open.
  assert.deepEqual(kinds(detectPatterns({ series: [], connections: [conn(42, 0, { durationMs: 5000, outcome: 'timeout' })], durationMs: 5000 })), ['failed-connects']);
});

test('nothing from nothing; patterns come ordered by kind', () => {
  assert.deepEqual(detectPatterns({ series: [], connections: [], durationMs: 0 }), []);
  const flows = [
    simulateFlow(pollCalls(6, 1000, 50, 400), { pid: 5, socket: 'p', endMs: 6500, remotePort: 1 }),
    simulateFlow(bulkCalls('rx', 3 * MiB, 100, 1000), { pid: 6, socket: 'b', remotePort: 2 }),
  ];
  const ps = detect(flows, 7000, [conn(7, 1, { outcome: 'refused', remotePort: 3 })]);
  assert.deepEqual(kinds(ps), ['periodic', 'bulk', 'failed-connects']);
});
