// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Exchange, ExchangeDetail } from '../../src/l7/types';
import { L7MetricsCounter, L7_LATENCY_BOUNDS, methodOf } from '../../src/metrics/l7';

function exchange(detail: ExchangeDetail, status: string, latencyLastNs: number | null, protocol: Exchange['protocol'] = 'http1'): Exchange {
  return {
    protocol, role: 'client', operation: 'x', status, error: false, host: null, requestBytes: 1, responseBytes: 1,
    requestStartNs: 0, requestEndNs: 0, responseStartNs: latencyLastNs, responseEndNs: latencyLastNs,
    latencyFirstNs: latencyLastNs, latencyLastNs, tls: false, partial: false, notes: [], detail,
  };
}
const http = (method: string | null): ExchangeDetail => ({ kind: 'http', method, path: '/a?id=1', host: null, status: 200 });

test('L7 metrics: method is the HTTP method / Redis command / DNS type, never a path; latency buckets are cumulative', () => {
  assert.equal(methodOf(exchange(http('GET'), '200', 1)), 'GET');
  assert.equal(methodOf(exchange({ kind: 'redis', command: 'config|get', args: 2, replyType: '*', error: null, inline: false }, 'OK', 1, 'redis')), 'config|get');
  assert.equal(methodOf(exchange({ kind: 'dns', id: 1, name: 'a.test', type: 28, typeName: 'AAAA', rcode: 3, rcodeName: 'NXDOMAIN', answers: 0, truncated: false }, 'NXDOMAIN', 1, 'dns')), 'AAAA');
  const c = new L7MetricsCounter();
  for (let i = 0; i < 5; i++) c.add(exchange(http('GET'), '200', 300_000)); // 0.3 ms
  c.add(exchange(http('GET'), '404', 3_000_000_000)); // 3 s
  c.add(exchange(http('POST'), '', null)); // no response: counted, no latency
  const t = c.totals();
  assert.deepEqual(t.requests.map((r) => [r.method, r.status, r.count]), [['GET', '200', 5], ['GET', '404', 1], ['POST', '', 1]]);
  const h = t.latency.find((x) => x.protocol === 'http1')!;
  assert.equal(h.count, 6);
  assert.ok(Math.abs(h.sum - (5 * 0.0003 + 3)) < 1e-9);
  assert.equal(h.counts[L7_LATENCY_BOUNDS.indexOf(0.00025)], 0);
  assert.equal(h.counts[L7_LATENCY_BOUNDS.indexOf(0.0005)], 5);
  assert.equal(h.counts[L7_LATENCY_BOUNDS.indexOf(2.5)], 5);
  assert.equal(h.counts[L7_LATENCY_BOUNDS.indexOf(5)], 6);
  for (let i = 1; i < h.counts.length; i++) assert.ok(h.counts[i] >= h.counts[i - 1]);
});

test('L7 metrics: label sets are bounded; the rest count as other, and counts only grow', () => {
  const c = new L7MetricsCounter(3);
  let before = 0;
  for (let i = 0; i < 50; i++) {
    c.add(exchange(http(`M${i % 10}`), '200', 1000));
    const t = c.totals();
    assert.ok(t.requests.length <= 4);
    const total = t.requests.reduce((a, r) => a + r.count, 0);
    assert.equal(total, before + 1);
    before = total;
  }
  const t = c.totals();
  assert.equal(t.requests.find((r) => r.method === 'other')?.count, 50 - 3 * 5);
  assert.equal(t.requests.find((r) => r.method === 'M0')?.count, 5);
});
