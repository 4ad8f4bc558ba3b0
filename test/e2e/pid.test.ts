// SPDX-License-Identifier: MIT
// Process identity end to end: pids recycled during a trace (host and namespace pids), a target inside a
// PID namespace the test creates (host pid and NSpid in the report), and a proc connector overflow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ProcessReport, Report } from '../../src/schema/report';
import { PROCTAP, ROOT, TEST_BACKEND, loopbackFixture, proctapRun, lineFrom } from './harness';

const CHURN = path.join(ROOT, 'test/workloads/pidchurn.py');
const STORM = path.join(ROOT, 'test/workloads/forkstorm.py');
const TARGET = path.join(ROOT, 'test/workloads/attach_target.py');
const env = loopbackFixture();

interface ChurnChild {
  seq: number;
  hostPid: number;
  nsPid: number;
  startTicks: number;
  tcpTx: number;
  udpTx: number;
}

test('PID reuse under spawn/exit churn: every instance of a recycled pid keeps exactly its own bytes', async () => {
  const rounds = 400;
  // A new PID namespace with pid_max 400 (namespace pids wrap), and each host pid taken twice (clone3 set_tid)
  // every instance listed (no process folded): the test is about each instance's own bytes
  const run = await proctapRun(['-q', '--keep-processes', '1000000', '--user', 'root', '--', 'unshare', '--pid', '--fork', 'python3', CHURN, String(env.servers.port), String(rounds)]);
  assert.equal(run.code, 0, run.stderr);
  const out = JSON.parse(run.stdout.trim().split('\n').pop()!) as { children: ChurnChild[]; reused: number; sinkBytes: number };
  const report = run.report!;
  const sent = out.children.reduce((n, c) => n + c.tcpTx, 0);
  assert.equal(out.sinkBytes, sent, 'the sink got what the children say they sent');
  assert.ok(out.reused >= rounds / 2, `host pids reused ${out.reused} times in ${rounds} rounds`);
  const nsUses = new Map<number, number>();
  for (const c of out.children) nsUses.set(c.nsPid, (nsUses.get(c.nsPid) ?? 0) + 1);
  assert.ok(Math.max(...nsUses.values()) >= 3, 'namespace pids wrapped (pid_max 400 in the namespace)');

  const byPid = new Map<number, ProcessReport[]>();
  for (const p of report.processes) byPid.set(p.pid, [...(byPid.get(p.pid) ?? []), p]);
  const childrenByPid = new Map<number, ChurnChild[]>();
  for (const c of out.children) childrenByPid.set(c.hostPid, [...(childrenByPid.get(c.hostPid) ?? []), c]);
  let checked = 0;
  for (const [pid, instances] of childrenByPid) {
    const reported = (byPid.get(pid) ?? []).sort((a, b) => a.startTimeNs! - b.startTimeNs!);
    assert.equal(reported.length, instances.length, `pid ${pid}: ${instances.length} processes, report has ${JSON.stringify(reported)}`);
    assert.equal(new Set(reported.map((p) => p.startTimeNs)).size, reported.length, `pid ${pid}: distinct start times`);
    instances.sort((a, b) => a.seq - b.seq);
    instances.forEach((c, i) => {
      const p = reported[i];
      assert.deepEqual([p.tcp.txBytes, p.udp.txBytes, p.nspid], [c.tcpTx, c.udpTx, c.nsPid], `pid ${pid} instance ${i} (seq ${c.seq})`);
      checked++;
    });
  }
  assert.equal(checked, out.children.length);
  assert.equal(report.totals.tcp.txBytes, sent, 'no byte counted twice or lost');
  // one socket shared by every child: one row per process instance, each with its own start time
  const shared = report.connections.filter((c) => c.proto === 'tcp' && c.remotePort === env.servers.port + 1 && c.txBytes > 0);
  assert.equal(shared.length, out.children.length);
  assert.equal(new Set(shared.map((c) => `${c.pid}/${c.startTimeNs}`)).size, shared.length);
});

test('attach: a target inside a PID namespace shows its host pid and NSpid; so does the child it forks', async () => {
  const out = path.join(env.dir, 'pidns.jsonl');
  const unshare = spawn('unshare', ['--pid', '--fork', 'python3', TARGET, '--port', String(env.servers.port), '--bytes', '23456', '--out', out], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await lineFrom(unshare.stdout!, /ready/, 'the target in its PID namespace');
  // unshare --fork: the target is unshare's child, pid 1 of the new namespace
  const hostPid = Number(fs.readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  assert.match(fs.readFileSync(`/proc/${hostPid}/status`, 'utf8'), new RegExp(`^NSpid:\\s+${hostPid}\\s+1$`, 'm'));
  const jsonPath = path.join(env.dir, 'pidns.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--json', jsonPath, String(hostPid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  await lineFrom(proctap.stderr!, /attached to pid \d+/, 'proctap to attach');
  unshare.stdin!.write('go\n');
  assert.equal(await new Promise((resolve) => proctap.on('close', resolve)), 0, stderr);
  const report: Report = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const counts = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.equal(counts.length, 2, 'the target and its child');
  for (const c of counts) {
    const p = report.processes.find((x) => x.pid === c.pid);
    assert.ok(p, `host pid ${c.pid} missing: ${JSON.stringify(report.processes)}`);
    assert.equal(p.nspid, c.nsPid, `NSpid of ${c.pid}`);
    assert.deepEqual([p.tcp, p.udp], [c.tcp, c.udp], `traffic of ${c.pid}`);
  }
  assert.equal(report.processes.find((p) => p.pid === hostPid)?.nspid, 1);
});

test('proc connector overflow: a fork storm with the reader stopped is detected, warned about, and the tree rebuilt', async () => {
  // a tiny socket queue that is not read for the first second, a 4 KiB ring buffer that loses fork records too
  const run = await proctapRun([
    '-q', '--test-hook', 'proc-connector-buffer=1', '--test-hook', 'proc-connector-pause=1s', '--ring-buffer', '4K',
    '--', 'python3', STORM, '300', '2.5',
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /^proctap: warning: proc connector overflow \(ENOBUFS/m);
  const report = run.report!;
  assert.ok(report.lost.procConnectorOverflows > 0, JSON.stringify(report.lost));
  const { alive } = JSON.parse(run.stdout.trim().split('\n').pop()!) as { alive: number[] };
  assert.equal(alive.length, 600, 'every child and grandchild was alive at the end of the storm');
  const known = new Set(report.processes.map((p) => p.pid));
  const missing = alive.filter((pid) => !known.has(pid));
  assert.deepEqual(missing, [], `${missing.length} live processes missing from the tree (lost ${JSON.stringify(report.lost)})`);
  assert.ok(report.notes.some((n) => /proc connector overflowed/.test(n)), JSON.stringify(report.notes));
});
