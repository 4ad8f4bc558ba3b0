// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { liveView, rates, statusLine } from '../../src/render/live-view';

test('the status line says elapsed time, bytes, records and whether anything was lost', () => {
  assert.equal(statusLine({ elapsedMs: 12_300, txBytes: 2048, rxBytes: 0, records: 1234, lost: 0 }), 'proctap: 12.30 s · tx 2.0 KiB · rx 0 B · 1,234 records · nothing lost');
  assert.match(statusLine({ elapsedMs: 1000, txBytes: 0, rxBytes: 0, records: 5, lost: 7 }), /7 LOST$/);
});

test('rates are the growth between two snapshots per second, busiest first', () => {
  const before = new Map<string, [number, number]>([['a', [100, 0]], ['b', [0, 0]]]);
  const now = new Map<string, [number, number]>([['a', [300, 0]], ['b', [0, 4000]], ['c', [10, 10]]]);
  const r = rates(now, before, 2);
  assert.deepEqual(r.map((x) => [x.key, x.txRate, x.rxRate]), [['b', 0, 2000], ['a', 100, 0], ['c', 5, 5]]);
  const view = liveView({ elapsedMs: 2000, txBytes: 310, rxBytes: 4010, records: 3, lost: 0 }, r, [], 2);
  assert.match(view, /^PROCESSES/m);
  assert.ok(view.includes('2.0 KiB/s') && view.includes('100 B/s'));
  assert.ok(!view.includes('\nc '), 'rows are limited');
});
