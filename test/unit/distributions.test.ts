// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  activity,
  bucketQuantile,
  buildDistributions,
  connectionDurations,
  durationStats,
  messageSizes,
  percentile,
  sizeBucketMax,
  timeToFirstByte,
} from '../../src/analysis/distributions';
import type { SizeHistogram } from '../../src/analysis/series';
import type { ConnectionReport } from '../../src/schema/report';
import { pollCalls, simulateFlow } from './flowsim';

function conn(pid: number, start: number, durationMs: number | null, extra: Partial<ConnectionReport> = {}): ConnectionReport {
  return {
    pid, proto: 'tcp', role: 'active', localAddr: '10.0.0.2', localPort: 40000, remoteAddr: '10.0.0.1', remotePort: 80,
    startOffsetMs: start, durationMs, txBytes: 10, rxBytes: 20, txCalls: 1, rxCalls: 1, outcome: durationMs === null ? 'open' : 'closed', error: null,
    ...extra,
  };
}

/** A histogram with `counts` placed at the given bucket indexes. */
function hist(pid: number, direction: 'tx' | 'rx', at: Record<number, number>, proto: 'tcp' | 'udp' = 'tcp'): SizeHistogram {
  const buckets = new Array<number>(24).fill(0);
  for (const [i, n] of Object.entries(at)) buckets[Number(i)] = n;
  return { pid, proto, direction, buckets };
}

test('size buckets: upper bounds and quantiles (nearest rank)', () => {
  assert.equal(sizeBucketMax(0), 0);
  assert.equal(sizeBucketMax(1), 1);
  assert.equal(sizeBucketMax(11), 2047);
  assert.equal(bucketQuantile([0, 0, 0], 0.5), -1);
  assert.equal(bucketQuantile([1, 1, 1, 1], 0.5), 1); // rank 2 of 4
  assert.equal(bucketQuantile([1, 1, 1, 1], 0.51), 2); // rank 3 of 4
  assert.equal(bucketQuantile([0, 0, 9, 1], 0.9), 2);
  assert.equal(bucketQuantile([0, 0, 9, 1], 0.91), 3);
});

test('messageSizes: merged per direction over processes and protocols, and per process', () => {
  const h = [
    hist(1, 'tx', { 7: 90, 17: 10 }), // 64..127 B, 64..128 KiB
    hist(1, 'rx', { 11: 5 }),
    hist(2, 'tx', { 7: 10 }, 'udp'),
    hist(2, 'rx', { 0: 1, 3: 3 }, 'udp'),
  ];
  const m = messageSizes(h);
  assert.equal(m.tx.calls, 110);
  assert.equal(m.tx.buckets[7], 100);
  assert.equal(m.tx.buckets[17], 10);
  assert.equal(m.tx.p50, 127);
  assert.equal(m.tx.p90, 127); // rank 99 of 110 is still in bucket 7
  assert.equal(m.tx.p99, 2 ** 17 - 1);
  assert.equal(m.rx.calls, 9);
  assert.equal(m.rx.p50, 2047);
  assert.deepEqual(m.perProcess.map((p) => p.pid), [1, 2]);
  assert.equal(m.perProcess[0].tx.p90, 127); // pid 1 alone: rank 90 of 100 is the last small one
  assert.equal(m.perProcess[0].tx.p99, 2 ** 17 - 1);
  assert.equal(m.perProcess[1].tx.calls, 10);
  assert.equal(m.perProcess[1].tx.p99, 127);
  assert.equal(m.perProcess[1].rx.calls, 4);
  assert.equal(m.perProcess[1].rx.buckets[0], 1);
  assert.equal(messageSizes([]).tx.p50, null);
  assert.equal(messageSizes([]).tx.calls, 0);
});

test('durations: percentiles, max and histogram; open connections only counted', () => {
  assert.equal(percentile([], 0.5), null);
  assert.equal(percentile([1, 2, 3, 4], 0.5), 2);
  assert.equal(percentile([1, 2, 3, 4], 0.99), 4);
  const values = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100 ms
  const s = durationStats(values);
  assert.equal(s.count, 100);
  assert.equal(s.p50, 50);
  assert.equal(s.p90, 90);
  assert.equal(s.p99, 99);
  assert.equal(s.max, 100);
  assert.deepEqual(s.histogram.slice(0, 4), [{ leMs: 1, count: 1 }, { leMs: 10, count: 9 }, { leMs: 100, count: 90 }, { leMs: 1000, count: 0 }]);
  assert.deepEqual(s.histogram.at(-1), { leMs: null, count: 0 });
  assert.equal(durationStats([700_000]).histogram.at(-1)!.count, 1);

  const c = connectionDurations([conn(1, 0, 5), conn(1, 1, 250), conn(1, 2, null), conn(2, 3, 1500)]);
  assert.equal(c.count, 3);
  assert.equal(c.open, 1);
  assert.equal(c.p50, 250);
  assert.equal(c.max, 1500);
  const none = connectionDurations([]);
  assert.equal(none.p50, null);
  assert.equal(none.max, null);
});

test('time to first byte: first sample with received bytes minus the start, TCP only, an upper bound', () => {
  // Request at 100 ms, answer 5 ms later: the recv is within 100 ms of the request's sample, so it is
  // first seen at the next request (1.1 s): 1.0 s, an upper bound of the true 5 ms.
  const poll = simulateFlow(pollCalls(3, 1000, 100, 500), { socket: 'p', startMs: 90 });
  // A slow answer (300 ms) gets its own sample: exact to the call.
  const slow = simulateFlow([{ tMs: 10, dir: 'tx', bytes: 50 }, { tMs: 310, dir: 'rx', bytes: 70 }], { socket: 'q', startMs: 0, endMs: 400 });
  const silent = simulateFlow([{ tMs: 10, dir: 'tx', bytes: 50 }], { socket: 'r', startMs: 0 });
  const udp = simulateFlow([{ tMs: 10, dir: 'rx', bytes: 50 }], { socket: 'u', proto: 'udp', startMs: 0 });
  const t = timeToFirstByte([poll, slow, silent, udp]);
  assert.equal(t.resolutionMs, 100);
  assert.deepEqual(t.connections.map((c) => [c.socket, c.ms]), [['p', 1010], ['q', 310]]);
  assert.equal(t.count, 2);
  assert.equal(t.max, 1010);
  assert.equal(timeToFirstByte([slow], 250).resolutionMs, 250);
});

test('activity: first/last seen and active time per process and endpoint', () => {
  // pid 5 talks to A at 0.1, 1.1, 2.1 s; pid 6 to B once at 5 s.
  const a = simulateFlow(pollCalls(3, 1000, 100, 500), { pid: 5, socket: 'a', startMs: 50, endMs: 2500, remoteAddr: '10.0.0.1' });
  const b = simulateFlow([{ tMs: 5000, dir: 'tx', bytes: 9 }], { pid: 6, socket: 'b', startMs: 4990, endMs: 5200, remoteAddr: '10.0.0.2' });
  const act = activity([a, b], 6000, 100);
  assert.equal(act.intervalMs, 100);
  const p5 = act.processes.find((p) => p.pid === 5)!;
  assert.equal(p5.firstSeenMs, 50);
  assert.equal(p5.lastSeenMs, 2500);
  // samples with new bytes at 100, 1100, 2100 and the final at 2500: 4 buckets of 100 ms
  assert.equal(p5.activeMs, 400);
  const p6 = act.processes.find((p) => p.pid === 6)!;
  assert.equal(p6.activeMs, 100); // the final sample (5200) has no new bytes
  assert.deepEqual(act.endpoints.map((e) => e.remoteAddr), ['10.0.0.1', '10.0.0.2']);
  assert.equal(act.endpoints[1].firstSeenMs, 4990);
  assert.equal(act.endpoints[1].lastSeenMs, 5200);
});

test('buildDistributions puts the parts together', () => {
  const d = buildDistributions({
    series: [simulateFlow(pollCalls(2, 1000, 10, 20), { startMs: 0 })],
    histograms: [hist(42, 'tx', { 4: 2 })],
    connections: [conn(42, 0, 1200)],
    durationMs: 2000,
    intervalMs: 20,
  });
  assert.equal(d.messageSizes.tx.p50, 15);
  assert.equal(d.connectionDurations.p50, 1200);
  assert.equal(d.timeToFirstByte.connections.length, 1);
  assert.equal(d.activity.intervalMs, 20);
});
