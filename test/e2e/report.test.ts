// SPDX-License-Identifier: MIT
// The traffic-pattern report end to end: a workload that beacons, bulk-uploads, fans out to closed ports
// and does request/response gets exactly those patterns with the right evidence and nothing spurious;
// charts are written; the NDJSON stream carries the records; `proctap report` re-renders identically.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NETLOAD, PROCTAP, proctapRun, loopbackFixture } from './harness';

const env = loopbackFixture();

test('beacon, bulk, fan-out to closed ports, request/response: each detected with its evidence, nothing else', async () => {
  const charts = path.join(env.dir, 'charts');
  const events = path.join(env.dir, 'events.ndjson');
  const run = await proctapRun(['--no-color', '--chart', charts, '--events', events, '--',
    'python3', NETLOAD, 'patterns', '--out', path.join(env.dir, 'p.jsonl'), '--port', String(env.servers.port)]);
  assert.equal(run.code, 0, run.stderr);
  const report = run.report!;
  const counts = fs.readFileSync(path.join(env.dir, 'p.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const me = report.processes.find((p) => p.pid === counts[0].pid)!;
  assert.deepEqual(me.tcp, counts[0].tcp);

  const patterns = report.patterns!;
  assert.deepEqual(patterns.map((p) => p.kind).sort(), ['bulk', 'failed-connects', 'fan-out', 'periodic', 'request-response']);
  const by = (kind: string) => patterns.find((p) => p.kind === kind)!;
  const periodic = by('periodic');
  assert.equal(periodic.endpoint?.remotePort, env.servers.port);
  assert.ok(Math.abs((periodic.evidence.periodMs as number) - 300) < 60, JSON.stringify(periodic.evidence));
  assert.ok((periodic.evidence.count as number) >= 4);
  const bulk = by('bulk');
  assert.deepEqual([bulk.endpoint?.remotePort, bulk.evidence.direction, bulk.evidence.bytes], [env.servers.port + 1, 'tx', 8 << 20]);
  const rr = by('request-response');
  assert.deepEqual([rr.endpoint?.remotePort, rr.evidence.requests, rr.evidence.medianRequestBytes, rr.evidence.medianResponseBytes], [env.servers.port + 3, 6, 50, 2000]);
  assert.equal(by('fan-out').evidence.endpoints, 15);
  assert.deepEqual([by('failed-connects').evidence.failures, by('failed-connects').evidence.refused], [12, 12]);
  const flat = (text: string) => text.replace(/\s+/g, ' '); // wrapped lines, non-breaking spaces
  for (const p of patterns) {
    assert.deepEqual(p.pids, [me.pid]);
    assert.ok(flat(run.stderr).includes(flat(p.summary)), `the terminal report explains: ${p.summary}`);
  }

  // statistics: the time series adds up to the totals, message sizes come from the kernel's histograms
  const ts = report.timeSeries!;
  assert.equal(ts.tx.reduce((a, b) => a + b, 0), report.totals.tcp.txBytes + report.totals.udp.txBytes);
  assert.equal(ts.rx.reduce((a, b) => a + b, 0), report.totals.tcp.rxBytes + report.totals.udp.rxBytes);

  // charts: four PNGs of the right size
  const pngs = fs.readdirSync(charts).sort();
  assert.deepEqual(pngs, ['connections.png', 'endpoints.png', 'message-sizes.png', 'throughput.png']);
  for (const f of pngs) {
    const png = fs.readFileSync(path.join(charts, f));
    assert.equal(png.subarray(1, 4).toString(), 'PNG');
    assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [1000, 600]);
  }

  // NDJSON: every line parses; lifecycle and flow records are there
  const lines = fs.readFileSync(events, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const types = new Set(lines.map((l) => l.type));
  for (const t of ['exec', 'flowNew', 'sockState', 'sockRelease', 'exit']) assert.ok(types.has(t), `${t} in ${[...types]}`);

  // proctap report re-renders the same terminal report from the JSON
  const json = path.join(env.dir, 'saved.json');
  fs.writeFileSync(json, JSON.stringify(report));
  const again = spawnSync(PROCTAP, ['report', '--no-color', json], { encoding: 'utf8' });
  assert.equal(again.status, 0, again.stderr);
  assert.ok(run.stderr.includes(again.stdout.trimEnd()), 'the re-rendered report equals what run printed');
});
