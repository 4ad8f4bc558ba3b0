// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { L7Aggregator } from '../../src/analysis/l7-aggregate';
import { ALPHA, LatencyStats } from '../../src/analysis/l7-latency';
import { BURST_MAX_GAP_MS, detectL7Patterns, L7_ERRORS_MIN_REQUESTS, NPLUS1_MIN_REPEATS } from '../../src/analysis/l7-patterns';
import type { Exchange, ExchangeProtocol, Role } from '../../src/l7/types';
import { prng } from './l7wire';

const MS = 1e6;

function exchange(o: { protocol?: ExchangeProtocol; role?: Role; operation: string; status?: string; error?: boolean; start: number; latency?: number; req?: number; res?: number }): Exchange {
  const latency = o.latency ?? 1 * MS;
  return {
    protocol: o.protocol ?? 'http1', role: o.role ?? 'client', operation: o.operation, status: o.status ?? '200', error: o.error ?? false, host: null,
    requestBytes: o.req ?? 100, responseBytes: o.res ?? 1000,
    requestStartNs: o.start, requestEndNs: o.start, responseStartNs: o.start + latency / 2, responseEndNs: o.start + latency,
    latencyFirstNs: latency / 2, latencyLastNs: latency, tls: false, partial: false, notes: [],
    detail: { kind: 'http', method: 'GET', path: '/', host: null, status: 200 },
  };
}

test('latency quantiles: exact (nearest rank) up to the cap, then within the sketch\'s 1 %', () => {
  const exact = new LatencyStats(1000);
  for (let i = 1; i <= 100; i++) exact.add(i * MS);
  assert.equal(exact.exact, true);
  assert.deepEqual([exact.quantile(0.5), exact.quantile(0.9), exact.quantile(0.99)], [50 * MS, 90 * MS, 99 * MS]);
  const rand = prng(3);
  const values: number[] = [];
  const sketch = new LatencyStats(64);
  for (let i = 0; i < 20000; i++) {
    const v = Math.exp(rand() * 20) * 1000; // 1 µs .. 485 s, log-uniform
    values.push(v);
    sketch.add(v);
  }
  assert.equal(sketch.exact, false);
  values.sort((a, b) => a - b);
  for (const q of [0.5, 0.9, 0.99]) {
    const truth = values[Math.ceil(q * values.length) - 1];
    const got = sketch.quantile(q);
    assert.ok(Math.abs(got - truth) / truth <= ALPHA + 1e-9, `q${q}: ${got} vs ${truth}`);
  }
  assert.equal(sketch.max, values[values.length - 1]);
  const merged = new LatencyStats(64);
  merged.merge(exact);
  merged.merge(sketch);
  assert.equal(merged.count, 20100);
});

test('aggregator: rows per (process, endpoint, protocol, operation, status); Redis and PostgreSQL per command', () => {
  const a = new L7Aggregator();
  for (let i = 0; i < 10; i++) a.add({ pid: 1, endpoint: 'api.test:80', exchange: exchange({ operation: 'GET /a', status: i < 8 ? '200' : '503', error: i >= 8, start: i * MS, latency: (i + 1) * MS }) });
  for (let i = 0; i < 4; i++) a.add({ pid: 1, endpoint: '127.0.0.1:6379', exchange: exchange({ protocol: 'redis', operation: 'get', status: i ? 'OK' : 'ERR', error: i === 0, start: i * MS }) });
  const s = a.summary();
  assert.equal(s.exchanges, 14);
  const rows = s.rows.map((r) => `${r.endpoint} ${r.operation} ${r.status} n=${r.count} err=${r.errors} req=${r.requestBytes}`);
  assert.deepEqual(rows, [
    'api.test:80 GET /a 200 n=8 err=0 req=800',
    '127.0.0.1:6379 get  n=4 err=1 req=400',
    'api.test:80 GET /a 503 n=2 err=2 req=200',
  ]);
  const ok = s.rows[0];
  assert.equal(ok.latencyLast!.p50Ms, 4);
  assert.equal(ok.latencyLast!.maxMs, 8);
  assert.equal(ok.latencyFirst!.p90Ms, 4);
});

test('aggregator: bounded keys; the (other) rows keep the totals exact', () => {
  const a = new L7Aggregator({ maxKeys: 50, top: 10 });
  let total = 0;
  for (let i = 0; i < 1000; i++) {
    a.add({ pid: 7, endpoint: 'e:80', exchange: exchange({ operation: `GET /item/${i % 200}`, start: i * MS, req: i }) });
    total += i;
  }
  const s = a.summary();
  assert.equal(s.rows.filter((r) => !r.other).length, 10);
  assert.equal(s.rows.reduce((n, r) => n + r.count, 0), 1000);
  assert.equal(s.rows.reduce((n, r) => n + r.requestBytes, 0), total);
  const other = s.rows.find((r) => r.other)!;
  assert.equal(other.operation, '(other)');
  assert.equal(other.folded, 190);
  assert.equal(s.foldedKeys, 190);
});

test('patterns: a periodic request, an endpoint answering 5xx, N+1 per served request and in a burst', () => {
  const a = new L7Aggregator();
  // GET /health every 30 s.
  for (let i = 0; i < 6; i++) a.add({ pid: 10, endpoint: 'api.test:80', exchange: exchange({ operation: 'GET /health', start: i * 30_000 * MS + (i % 2) * 5 * MS }) });
  // 3 of 20 requests to shop.test answer 503.
  for (let i = 0; i < 20; i++) a.add({ pid: 11, endpoint: 'shop.test:80', exchange: exchange({ operation: `GET /p/${i % 3}`, status: i % 7 === 0 ? '503' : '200', error: i % 7 === 0, start: i * 17 * MS }) });
  // pid 12 serves GET /orders; inside each, 40 identical queries (N+1).
  for (let r = 0; r < 3; r++) {
    const t0 = 1_000_000 * MS + r * 1000 * MS;
    for (let q = 0; q < 40; q++) {
      a.add({ pid: 12, endpoint: '127.0.0.1:5432', connection: 1, exchange: exchange({ protocol: 'postgres', operation: 'select * from items where id = $1', status: 'SELECT', start: t0 + 1 * MS + q * 2 * MS, latency: MS }) });
    }
    a.add({ pid: 12, endpoint: 'client:4000', exchange: exchange({ role: 'server', operation: 'GET /orders', start: t0, latency: 100 * MS }) });
  }
  // pid 13, no server side: 15 identical GETs back to back on one connection.
  for (let q = 0; q < 15; q++) a.add({ pid: 13, endpoint: '127.0.0.1:6379', connection: 'c', exchange: exchange({ protocol: 'redis', operation: 'get', status: 'OK', start: 5e9 + q * 3 * MS, latency: MS }) });
  const patterns = detectL7Patterns(a.evidence());
  const summaries = patterns.map((p) => p.summary);
  assert.deepEqual(patterns.map((p) => [p.kind, p.pids.join()]), [
    ['l7-periodic', '10'], ['l7-errors', '11'], ['l7-n-plus-one', '12'], ['l7-n-plus-one', '13'],
  ], summaries.join('\n'));
  assert.match(summaries[0], /pid 10 sends GET \/health to api\.test:80 every 30 s/);
  assert.match(summaries[1], /^15 % of requests to shop\.test:80 \(pid 11\) answer 5xx: 3 of 20$/);
  assert.match(summaries[2], /N\+1: pid 12 runs select \* from items where id = \$1 40 times per GET \/orders \(median of 3 requests\)/);
  assert.equal(patterns[3].evidence.longest, 15);
  assert.ok(NPLUS1_MIN_REPEATS <= 15 && L7_ERRORS_MIN_REQUESTS <= 20 && BURST_MAX_GAP_MS >= 2);
});

test('patterns: below the thresholds nothing is reported', () => {
  const a = new L7Aggregator();
  for (let i = 0; i < 3; i++) a.add({ pid: 1, endpoint: 'x:1', exchange: exchange({ operation: 'GET /rare', start: i * 10_000 * MS }) });
  for (let i = 0; i < 21; i++) a.add({ pid: 2, endpoint: 'y:1', exchange: exchange({ operation: 'GET /', status: i ? '200' : '500', error: i === 0, start: i * 97 * MS }) });
  for (let q = 0; q < NPLUS1_MIN_REPEATS - 1; q++) a.add({ pid: 3, endpoint: 'db:1', exchange: exchange({ protocol: 'postgres', operation: 'select $1', start: q * MS, latency: MS / 2 }) });
  for (let q = 0; q < 12; q++) a.add({ pid: 4, endpoint: 'db:1', exchange: exchange({ protocol: 'postgres', operation: 'select $1', start: q * (BURST_MAX_GAP_MS + 5) * MS, latency: MS }) });
  assert.deepEqual(detectL7Patterns(a.evidence()), []);
});
