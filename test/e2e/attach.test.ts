// SPDX-License-Identifier: MIT
// `proctap attach` end to end: post-attach bytes of a running target and of a child it forks afterwards
// are exact; bytes sent before the attach and an untraced neighbour's traffic to the same server are not
// counted; the pre-existing connection is listed; a target inside a network namespace is traced too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { PROCTAP, ROOT, TEST_BACKEND, loopbackFixture, lineFrom, type WorkloadCounts } from './harness';

const TARGET = path.join(ROOT, 'test/workloads/attach_target.py');
const env = loopbackFixture();

function startTarget(argv: string[]): ChildProcess {
  return spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
}

async function attachTo(pid: number, jsonPath: string, extra: string[] = []): Promise<{ done: Promise<number | null>; stderr: () => string }> {
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--json', jsonPath, ...extra, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  await lineFrom(proctap.stderr!, /attached to pid \d+/, 'proctap to attach');
  return { done, stderr: () => stderr };
}

function readCounts(file: string): WorkloadCounts[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

test('attach: exact post-attach counts for the target and its new child; neighbour and earlier bytes not counted', async () => {
  const targetOut = path.join(env.dir, 'target.jsonl');
  const neighbourOut = path.join(env.dir, 'neighbour.jsonl');
  const common = ['--port', String(env.servers.port), '--before', '5000', '--bytes', '40000'];
  const target = startTarget(['python3', TARGET, ...common, '--out', targetOut]);
  const neighbour = startTarget(['python3', TARGET, ...common, '--out', neighbourOut]);
  await Promise.all([lineFrom(target.stdout!, /ready/, 'target'), lineFrom(neighbour.stdout!, /ready/, 'neighbour')]);
  const jsonPath = path.join(env.dir, 'attach.json');
  const pcap = path.join(env.dir, 'attach.pcapng');
  const proctap = await attachTo(target.pid!, jsonPath, ['--pcap', pcap]);
  target.stdin!.write('go\n');
  neighbour.stdin!.write('go\n');
  const code = await proctap.done;
  assert.equal(code, 0, proctap.stderr());
  const report: Report = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const counts = readCounts(targetOut);
  assert.equal(counts.length, 2, 'target and its child');
  const neighbourPids = readCounts(neighbourOut).map((c) => c.pid);
  assert.equal(report.mode, 'attach');
  assert.deepEqual(report.targets?.map((t) => t.kind === 'pid' && t.pid), [target.pid]);
  for (const c of counts) {
    const p = report.processes.find((x) => x.pid === c.pid);
    assert.ok(p, `pid ${c.pid} missing`);
    assert.deepEqual(p.tcp, c.tcp, `tcp of ${c.pid}`);
    assert.deepEqual(p.udp, c.udp, `udp of ${c.pid}`);
  }
  const child = counts.find((c) => c.pid !== target.pid)!;
  assert.equal(report.processes.find((p) => p.pid === child.pid)!.ppid, target.pid);
  for (const pid of neighbourPids) assert.ok(!report.processes.some((p) => p.pid === pid), `neighbour ${pid} must not appear`);
  assert.deepEqual(report.totals.tcp, counts.find((c) => c.pid === target.pid)!.tcp, 'nothing but the target in the totals');
  // attach --pcap: the target's and its child's packets, each naming its pid; nothing of the neighbour
  const comments = spawnSync('tshark', ['-r', pcap, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  assert.equal(comments.length, report.capture?.packets);
  const pids = new Set(comments.map((c) => Number(/^pid (\d+) /.exec(c)?.[1])));
  assert.deepEqual([...pids].sort(), counts.map((c) => c.pid).sort(), 'packets of the target and its child only');
  const pre = report.connections.filter((c) => c.preexisting);
  assert.equal(pre.length, 1, JSON.stringify(report.connections));
  assert.deepEqual([pre[0].proto, pre[0].remoteAddr, pre[0].remotePort, pre[0].txBytes], ['tcp', '127.0.0.1', env.servers.port, 40000]);
});

test('attach: a target inside a network namespace is traced, and its netns is reported', async (t) => {
  const ns = `proctap-test-${process.pid}`;
  const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
  assert.equal(ip('netns', 'add', ns).status, 0);
  t.after(() => ip('netns', 'del', ns));
  assert.equal(ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up').status, 0);
  const out = path.join(env.dir, 'ns.jsonl');
  const target = startTarget(['ip', 'netns', 'exec', ns, 'python3', TARGET, '--echo-server', '--port', '7777', '--bytes', '12345', '--out', out]);
  await lineFrom(target.stdout!, /ready/, 'namespaced target');
  // `ip netns exec` execs the command: the pid we spawned is the python process itself
  const jsonPath = path.join(env.dir, 'ns.json');
  const proctap = await attachTo(target.pid!, jsonPath);
  target.stdin!.write('go\n');
  assert.equal(await proctap.done, 0, proctap.stderr());
  const report: Report = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const counts = readCounts(out);
  for (const c of counts) {
    const p = report.processes.find((x) => x.pid === c.pid)!;
    assert.deepEqual([p.tcp, p.udp], [c.tcp, c.udp], `pid ${c.pid}`);
  }
  const root = report.processes.find((p) => p.pid === target.pid)!;
  const nsInode = fs.statSync(`/var/run/netns/${ns}`).ino; // the bind-mounted nsfs file: its inode is the netns id
  assert.equal(root.netns, nsInode);
});

test('attach: bad targets are one clear line and a usage exit code', () => {
  const cases: Array<[string[], RegExp]> = [
    [['attach', '4194303'], /^proctap: no process with pid 4194303$/m],
    [['attach'], /attach needs PIDs, --comm NAME, --cgroup PATH or --container ID\|NAME/],
    [['attach', '--cgroup', '/no/such/cgroup'], /^proctap: unknown cgroup '\/no\/such\/cgroup'/m],
    [['attach', 'abc'], /not a pid: 'abc'/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(PROCTAP, args, { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test('attach --comm waits for a matching process and follows it from its exec', async () => {
  const jsonPath = path.join(env.dir, 'comm.json');
  const comm = `pt${process.pid % 100000}`;
  const proctap = spawn(PROCTAP, ['attach', '-q', '--comm', comm, '--duration', '4s', '--json', jsonPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  await lineFrom(proctap.stderr!, /waiting for/, 'the waiting message');
  // a process whose comm becomes `comm` at exec: a symlink to python3 named so
  const link = path.join(env.dir, comm);
  fs.symlinkSync(spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim(), link);
  const script = `import socket\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3): u.sendto(b"x" * 50, ("127.0.0.1", ${env.servers.port})); u.recvfrom(100)`;
  // async: the echo server answering it lives in this process's event loop
  const exited = await new Promise((resolve) => spawn(link, ['-c', script], { stdio: 'inherit' }).on('close', resolve));
  assert.equal(exited, 0);
  assert.equal(await new Promise((resolve) => proctap.on('close', resolve)), 0);
  const report: Report = JSON.parse(fs.readFileSync(jsonPath, 'utf8'));
  const p = report.processes.find((x) => x.comm === comm);
  assert.ok(p, JSON.stringify(report.processes));
  assert.deepEqual(p.udp, { txBytes: 150, rxBytes: 150, txCalls: 3, rxCalls: 3 });
});
