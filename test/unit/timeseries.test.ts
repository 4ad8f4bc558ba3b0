// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTimeSeries, chooseIntervalMs, bucketOf } from '../../src/analysis/timeseries';
import { flowDeltas, type FlowSeries } from '../../src/analysis/series';
import { bulkCalls, pollCalls, simulateFlow } from './flowsim';

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

test('chooseIntervalMs: 1/2/5×10^k ms, at least 10 ms, about 60–120 buckets', () => {
  assert.equal(chooseIntervalMs(0), 10);
  assert.equal(chooseIntervalMs(250), 10);
  assert.equal(chooseIntervalMs(1000), 10); // 100 buckets
  assert.equal(chooseIntervalMs(10_000), 100);
  assert.equal(chooseIntervalMs(60_000), 500);
  assert.equal(chooseIntervalMs(3_600_000), 50_000); // 72 buckets
  for (let d = 600; d < 1e8; d = Math.round(d * 1.13)) {
    const i = chooseIntervalMs(d);
    const mant = i / 10 ** Math.floor(Math.log10(i));
    assert.ok([1, 2, 5].includes(Math.round(mant)), `${d} → ${i}`);
    const n = Math.ceil(d / i);
    assert.ok(n >= 48 && n <= 150, `${d} ms → ${i} ms gives ${n} buckets`);
  }
  // When 60–120 is reachable it is reached: 2.5 s could be 125 (20 ms) or 50 (50 ms) buckets → neither;
  // 6 s is 120 buckets of 50 ms.
  assert.equal(Math.ceil(6000 / chooseIntervalMs(6000)), 120);
});

test('buildTimeSeries: byte deltas go to the bucket of their sample and sum to the final totals', () => {
  const a = simulateFlow(pollCalls(9, 1000, 100, 2000), { pid: 7, socket: 'a' });
  const b = simulateFlow(bulkCalls('rx', 5_000_000, 2000, 1500), { pid: 8, socket: 'b' });
  const c = simulateFlow([...bulkCalls('tx', 300_000, 4000, 400, 3), { tMs: 4100, dir: 'rx', bytes: 17 }], { pid: 7, socket: 'c', proto: 'udp' });
  const flows = [a, b, c];
  const ts = buildTimeSeries(flows, 10_000, 100);
  assert.equal(ts.intervalMs, 100);
  assert.equal(ts.startMs, 0);
  assert.equal(ts.tx.length, 100);
  assert.equal(ts.rx.length, 100);
  const finalTx = sum(flows.map((f) => f.samples.at(-1)!.txBytes));
  const finalRx = sum(flows.map((f) => f.samples.at(-1)!.rxBytes));
  assert.equal(sum(ts.tx), finalTx);
  assert.equal(sum(ts.rx), finalRx);
  assert.equal(finalRx, 9 * 2000 + 5_000_000 + 17);
  // per process: pids ascending, each summing to its own flows
  assert.deepEqual(ts.perProcess.map((p) => p.pid), [7, 8]);
  assert.equal(sum(ts.perProcess[0].tx), a.samples.at(-1)!.txBytes + c.samples.at(-1)!.txBytes);
  assert.equal(sum(ts.perProcess[1].rx), 5_000_000);
  assert.equal(sum(ts.perProcess[1].tx), 0);
  // The poller's requests land in the buckets of the seconds they were sent at.
  for (let i = 0; i < 9; i++) assert.ok(ts.perProcess[0].tx[1 + i * 10] >= 100, `bucket ${1 + i * 10}`);
  // The download fills the buckets between 2.0 and 3.5 s and nothing before.
  assert.equal(sum(ts.perProcess[1].rx.slice(0, 20)), 0);
  assert.ok(ts.perProcess[1].rx.slice(21, 35).every((v) => v > 200_000));
});

test('buildTimeSeries: samples past the end go to the last bucket, before 0 to the first', () => {
  const f: FlowSeries = {
    pid: 1, proto: 'tcp', socket: 'x', remoteAddr: '10.0.0.1', remotePort: 1, startMs: 0, endMs: null,
    samples: [
      { tMs: -3, txBytes: 5, rxBytes: 0, txCalls: 1, rxCalls: 0 },
      { tMs: 55, txBytes: 15, rxBytes: 4, txCalls: 2, rxCalls: 1 },
      { tMs: 1234, txBytes: 20, rxBytes: 4, txCalls: 3, rxCalls: 1 },
    ],
  };
  const ts = buildTimeSeries([f], 100, 10);
  assert.deepEqual(ts.tx, [5, 0, 0, 0, 0, 10, 0, 0, 0, 5]);
  assert.deepEqual(ts.rx, [0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
  assert.equal(bucketOf(100, 10, 10), 9);
  assert.equal(buildTimeSeries([], 0, 10).tx.length, 1);
  assert.throws(() => buildTimeSeries([], 100, 0), RangeError);
});

test('flowDeltas: a counter that goes back never makes a negative delta', () => {
  const f: FlowSeries = {
    pid: 1, proto: 'tcp', socket: 'x', remoteAddr: '10.0.0.1', remotePort: 1, startMs: 0, endMs: 10,
    samples: [
      { tMs: 1, txBytes: 10, rxBytes: 0, txCalls: 1, rxCalls: 0 },
      { tMs: 2, txBytes: 8, rxBytes: 0, txCalls: 1, rxCalls: 0 },
      { tMs: 3, txBytes: 30, rxBytes: 0, txCalls: 2, rxCalls: 0 },
    ],
  };
  assert.deepEqual(flowDeltas(f).map((d) => d.txBytes), [10, 0, 20]);
});
