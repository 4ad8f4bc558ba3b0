// SPDX-License-Identifier: MIT
// Top-N series with "other": over random runs of a changing source, no series and no "other" ever goes
// down, the series of a group plus its "other" always equal its total, and at most N series exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TopN, type TopNEntry } from '../../src/metrics/topn';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Sim {
  values: Map<string, { group: string; values: number[] }>;
  totals: Map<string, number[]>;
}

/** Checks every invariant after each update; returns the last result. */
function run(cap: number, steps: number, seed: number, breakContract: boolean) {
  const rand = rng(seed);
  const width = 2;
  const topn = new TopN(cap, width);
  const sim: Sim = { values: new Map(), totals: new Map([['tcp', [0, 0]], ['udp', [0, 0]]]) };
  const seen = new Map<string, number[]>(); // label set -> last exported values
  const gone = new Set<string>();
  let otherBefore = new Map<string, number[]>();
  let nextKey = 0;
  for (let step = 0; step < steps; step++) {
    // the source changes: new keys, growth (skewed: some keys are heavy), folding (keys vanish, bytes stay)
    for (let i = 0; i < 1 + Math.floor(rand() * 3); i++) {
      const key = `k${nextKey++}`;
      sim.values.set(key, { group: rand() < 0.7 ? 'tcp' : 'udp', values: [0, 0] });
    }
    for (const [key, v] of sim.values) {
      if (rand() < 0.5) continue;
      const heavy = Number(key.slice(1)) % 7 === 0 ? 1000 : 10;
      const grow = [Math.floor(rand() * heavy), Math.floor(rand() * heavy)];
      v.values = v.values.map((x, i) => x + grow[i]);
      const t = sim.totals.get(v.group)!;
      sim.totals.set(v.group, t.map((x, i) => x + grow[i]));
    }
    for (const key of [...sim.values.keys()]) if (rand() < 0.05) sim.values.delete(key);
    // unlisted traffic: only in the totals (a fold of what the source no longer lists)
    if (rand() < 0.3) sim.totals.set('tcp', sim.totals.get('tcp')!.map((x) => x + 5));
    if (breakContract && rand() < 0.2) {
      // a breach: bytes move from one key to a new one (the source double-lists them)
      const victim = [...sim.values.entries()][0];
      if (victim) {
        sim.values.delete(victim[0]);
        sim.values.set(`k${nextKey++}`, { group: victim[1].group, values: victim[1].values.map((x) => x * 2) });
      }
    }

    const entries: TopNEntry[] = [...sim.values.entries()].map(([key, v]) => ({
      key,
      group: v.group,
      weight: v.values[0] + v.values[1],
      values: v.values,
      labels: { id: key },
    }));
    const result = topn.update(entries, sim.totals);
    assert.ok(result.series.length <= cap, `at most ${cap} series`);
    for (const r of result.removed) gone.add(JSON.stringify(r.labels));
    for (const s of result.series) {
      const id = JSON.stringify(s.labels);
      assert.ok(!gone.has(id), `${id} came back after it was dropped`);
      const before = seen.get(id);
      if (before) s.values.forEach((v, i) => assert.ok(v >= before[i], `${id} went down: ${before} -> ${s.values}`));
      seen.set(id, s.values);
    }
    for (const [group, total] of sim.totals) {
      const other = result.other.get(group)!;
      const sum = result.series.filter((s) => s.group === group).reduce((acc, s) => acc.map((x, i) => x + s.values[i]), [...other]);
      assert.deepEqual(sum, total, `step ${step}: series + other = total of ${group}`);
      const prev = otherBefore.get(group);
      if (prev) other.forEach((v, i) => assert.ok(v >= prev[i], `other of ${group} went down`));
    }
    otherBefore = result.other;
  }
  return { topn, sim };
}

test('top-N counters stay monotonic and sum to the exact totals over random runs', () => {
  for (let seed = 1; seed <= 40; seed++) run(1 + (seed % 6), 60, seed, false);
});

test('...also when the source breaks its contract (bytes moving between keys)', () => {
  for (let seed = 100; seed <= 130; seed++) run(3, 60, seed, true);
});

test('stable top talkers equal the source; a key leaving the top hands its bytes to other', () => {
  const topn = new TopN(2, 1);
  const totals = (n: number) => new Map([['g', [n]]]);
  const e = (key: string, v: number): TopNEntry => ({ key, group: 'g', weight: v, values: [v], labels: { k: key } });
  let r = topn.update([e('a', 100), e('b', 50), e('c', 10)], totals(160));
  assert.deepEqual(r.series.map((s) => [s.key, s.values[0]]).sort(), [['a', 100], ['b', 50]]);
  assert.deepEqual(r.other.get('g'), [10]);
  r = topn.update([e('a', 200), e('b', 60), e('c', 70)], totals(330));
  // c (70) overtook b (60): b's series is gone (last shown at 50), its bytes go to other with c's 10 from
  // before; c counts from now
  assert.deepEqual(r.removed.map((s) => [s.key, s.values[0]]), [['b', 50]]);
  assert.deepEqual(r.series.map((s) => [s.key, s.values[0]]).sort(), [['a', 200], ['c', 60]]);
  assert.deepEqual(r.other.get('g'), [70]);
  // b overtakes c again: b does not come back (its series would restart lower)
  r = topn.update([e('a', 200), e('b', 500), e('c', 80)], totals(780));
  assert.deepEqual(r.series.map((s) => [s.key, s.values[0]]).sort(), [['a', 200], ['c', 70]]);
  assert.deepEqual(r.other.get('g'), [510]);
});

test('a label set is never given to a second key (a pid reused by the same command)', () => {
  const topn = new TopN(5, 1);
  const r1 = topn.update([{ key: 'p1', group: '', weight: 10, values: [10], labels: { pid: '7', comm: 'sh' } }], new Map([['', [10]]]));
  assert.equal(r1.series.length, 1);
  const r2 = topn.update(
    [
      { key: 'p1', group: '', weight: 10, values: [10], labels: { pid: '7', comm: 'sh' } },
      { key: 'p2', group: '', weight: 99, values: [99], labels: { pid: '7', comm: 'sh' } },
    ],
    new Map([['', [109]]]),
  );
  assert.deepEqual(r2.series.map((s) => s.key), ['p1']);
  assert.deepEqual(r2.other.get(''), [99]);
});
