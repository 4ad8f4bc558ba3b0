// SPDX-License-Identifier: MIT
// Folding at scale (issue 14), end to end with caps of a few items: the totals stay what the workload
// counted itself while most connections and processes are folded; a server's clients make one endpoint
// per service port whatever their ephemeral ports; quiet processes fold into one line under their parent;
// a slow finish says so on stderr.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Traffic } from '../../src/schema/report';
import { ROOT, loopbackFixture, proctapRun, type WorkloadCounts } from './harness';

const MANY = path.join(ROOT, 'test/workloads/many.py');
const env = loopbackFixture();

const sum = (xs: Traffic[]): Traffic => xs.reduce((a, x) => ({ txBytes: a.txBytes + x.txBytes, rxBytes: a.rxBytes + x.rxBytes, txCalls: a.txCalls + x.txCalls, rxCalls: a.rxCalls + x.rxCalls }), { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

async function many(name: string, args: string[], workload: string[], opts: { json?: boolean } = {}) {
  const out = path.join(env.dir, `${name}.jsonl`);
  // /usr/bin/python3: a python3 on PATH may be a shim (pyenv) that runs its own shells first
  const run = await proctapRun([...args, '--', '/usr/bin/python3', MANY, '--out', out, ...workload], opts);
  assert.equal(run.code, 0, run.stderr);
  const counts: WorkloadCounts[] = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  const ports = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as { port: number; closedPort: number };
  return { run, counts, ports };
}

test('folding with caps of 2: exact totals, every row either listed or folded, endpoints per service port', async () => {
  const CONNS = 30;
  const BUSY = 4;
  const REFUSED = 3;
  const { run, counts, ports } = await many('fold', ['-q', '--keep-connections', '2', '--keep-processes', '1'], [
    '--conns', String(CONNS), '--refused', String(REFUSED), '--busy-children', String(BUSY), '--quiet-children', '5',
  ]);
  const r = run.report!;
  // Totals: what every process counted, folded processes included.
  assert.deepEqual(r.totals.tcp, sum(counts.map((c) => c.tcp)));
  const listed = sum(r.processes.map((p) => p.tcp));
  const folded = sum((r.foldedProcesses ?? []).map((g) => g.tcp));
  assert.deepEqual(sum([listed, folded]), r.totals.tcp, 'listed + folded processes = totals');
  // The parent (client and server threads) reports last; it is the traced root, always listed.
  const root = r.processes.find((p) => p.pid === counts.at(-1)!.pid)!;
  assert.deepEqual(root.tcp, counts.at(-1)!.tcp, 'the server process itself is listed, exact');

  // Processes: 9 children exited; the newest and the largest are listed, the rest folded per parent and command.
  const children = BUSY + 5;
  assert.ok(r.folding, 'folding section');
  const foldedCount = (r.foldedProcesses ?? []).reduce((n, g) => n + g.count, 0);
  assert.equal(foldedCount, r.folding!.processes);
  assert.ok(foldedCount >= children - 2 && foldedCount <= children - 1, `folded ${foldedCount} of ${children} children`);
  assert.equal(r.processes.length + foldedCount, 1 + children, 'every process listed or folded');
  assert.ok((r.foldedProcesses ?? []).every((g) => g.ppid === root.pid && g.comm === 'python3' && g.exits['0'] === g.count), JSON.stringify(r.foldedProcesses));

  // Rows: each connection is two rows (client and server side, both traced), each refused connect one.
  const rows = 2 * (CONNS + BUSY) + REFUSED;
  const closedListed = r.connections.filter((c) => c.outcome !== 'open');
  assert.equal(closedListed.length + r.folding!.connections, rows, 'every row listed or folded');
  assert.ok(closedListed.length <= 6, `at most 2 newest + 2 largest + 2 failed sockets listed, got ${closedListed.length} rows`);
  assert.equal((r.foldedConnections ?? []).reduce((n, g) => n + g.connections, 0), r.folding!.connections);
  const refused = closedListed.filter((c) => c.outcome === 'refused').length + (r.foldedConnections ?? []).reduce((n, g) => n + (g.outcomes.refused ?? 0), 0);
  assert.equal(refused, REFUSED);
  assert.ok(closedListed.filter((c) => c.outcome === 'refused').length >= 2, 'the failed ones are kept first');
  const rowTraffic = sum([...r.connections, ...(r.foldedConnections ?? [])].map((x) => x as Traffic));
  assert.deepEqual(rowTraffic, r.totals.tcp, 'listed rows + folded aggregates = totals');

  // Endpoints: one per service endpoint; no client port makes a row of its own.
  const tcp = r.endpoints.filter((e) => e.proto === 'tcp');
  assert.equal(tcp.length, 3, JSON.stringify(tcp));
  const out = tcp.find((e) => e.direction === undefined && e.remotePort === ports.port)!;
  const inbound = tcp.find((e) => e.direction === 'inbound' && e.localPort === ports.port)!;
  const closed = tcp.find((e) => e.remotePort === ports.closedPort)!;
  assert.ok(out && inbound && closed, JSON.stringify(tcp));
  assert.equal(inbound.remotePort, 0);
  assert.deepEqual([out.connections, inbound.connections, closed.connections], [CONNS + BUSY, CONNS + BUSY, REFUSED]);
  assert.deepEqual([out.txBytes, out.rxBytes], [(CONNS + BUSY) * 100, (CONNS + BUSY) * 1000]);
  assert.deepEqual([inbound.txBytes, inbound.rxBytes], [(CONNS + BUSY) * 1000, (CONNS + BUSY) * 100]);
  const patterns = (r.patterns ?? []).filter((p) => p.kind === 'failed-connects');
  assert.equal(patterns[0]?.evidence.failures, REFUSED, JSON.stringify(r.patterns));
  // The time series still sums to the totals: folded flows were added as they came.
  const series = r.timeSeries!;
  assert.equal(series.tx.reduce((a, b) => a + b, 0), r.totals.tcp.txBytes + r.totals.udp.txBytes);
  assert.equal(series.rx.reduce((a, b) => a + b, 0), r.totals.tcp.rxBytes + r.totals.udp.rxBytes);
  assert.equal(r.distributions!.connectionDurations.count + r.distributions!.connectionDurations.open, rows);
});

test('without caps that bite nothing is folded, and the report says so', async () => {
  const { run, counts } = await many('nofold', ['-q'], ['--conns', '5', '--busy-children', '2']);
  const r = run.report!;
  assert.deepEqual(r.totals.tcp, sum(counts.map((c) => c.tcp)));
  assert.deepEqual([r.folding?.connections, r.folding?.processes, r.foldedConnections, r.foldedProcesses], [0, 0, [], []]);
  assert.equal(r.connections.length, 2 * 7);
});

test('terminal report: quiet children are one line under their parent, every one with --all-processes', async () => {
  const quiet = await many('quiet', [], ['--conns', '2', '--quiet-children', '6']);
  const text = quiet.run.stderr;
  assert.match(text, /…\s+6 without traffic: python3/); // the tally may be cut to the column (×6)
  const pids = quiet.run.report!.processes.map((p) => p.pid);
  assert.equal(pids.length, 7);
  const shown = pids.filter((pid) => new RegExp(`(^|─)${pid}\\s`, 'm').test(text));
  assert.equal(shown.length, 1, 'only the parent has a row');
  // endpoints of the terminal: the server's clients on one row, figures with plain spaces
  assert.match(text, /tcp\s+127\.0\.0\.1 → :\d+\s/);
  assert.ok(!text.includes('\u00a0'));
  const all = await many('all', ['--all-processes'], ['--conns', '2', '--quiet-children', '6']);
  for (const p of all.run.report!.processes) assert.match(all.run.stderr, new RegExp(`(^|─)${p.pid}\\s`, 'm'));
});

test('a finish that takes longer than half a second prints one progress line, a quick one none', async () => {
  const slow = await many('slow', ['-q', '--test-hook', 'finish-delay=900'], ['--conns', '1']);
  assert.equal(slow.run.stderr.split('\n').filter((l) => /finishing the report/.test(l)).length, 1, slow.run.stderr);
  const quick = await many('quick', ['-q'], ['--conns', '1']);
  assert.doesNotMatch(quick.run.stderr, /finishing the report/);
});
