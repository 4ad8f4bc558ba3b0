// SPDX-License-Identifier: MIT
// proctap itself inside a network namespace (issue 13): `ip netns exec NS proctap run ...` (a mount
// namespace of its own with /sys remounted: no cgroup2 mount there) and `nsenter --net=... proctap run
// ...` (the host's mounts, but no proc connector: it exists only in the initial network namespace). The
// accuracy workload must be exact in both, and nothing may be left behind in the host.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { NETLOAD, PROCTAP, ROOT, TEST_BACKEND, lineFrom, proctapCgroups, tempDir, type WorkloadCounts } from './harness';

const NS = `proctap-inns-${process.pid}`;
let servers: ChildProcess | null = null;
let port = 0;
let dir = '';

const cgroup2Mounts = () => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(' - cgroup2 ')).length;

before(async () => {
  spawnSync('ip', ['netns', 'del', NS], { stdio: 'ignore' });
  assert.equal(spawnSync('ip', ['netns', 'add', NS]).status, 0);
  assert.equal(spawnSync('ip', ['-n', NS, 'link', 'set', 'lo', 'up']).status, 0);
  dir = tempDir();
  fs.chmodSync(dir, 0o777);
  servers = spawn('ip', ['netns', 'exec', NS, process.execPath, path.join(ROOT, 'dist/test/e2e/ns-servers.js'), '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  port = Number((await lineFrom(servers.stdout!, /ready \d+/, 'the servers in the namespace')).split(' ')[1]);
});

after(async () => {
  servers?.stdin?.end();
  if (servers && servers.exitCode === null) await new Promise((resolve) => servers!.on('close', resolve));
  spawnSync('ip', ['netns', 'del', NS]);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function runIn(prefix: string[], scenario: string): Promise<{ code: number | null; stderr: string; report: Report; counts: WorkloadCounts[] }> {
  const out = path.join(dir, `${scenario}-${Date.now()}.jsonl`);
  const json = path.join(dir, `${scenario}-${Date.now()}.json`);
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const child = spawn(prefix[0], [...prefix.slice(1), PROCTAP, 'run', ...backend, '-q', '--json', json, '--', 'python3', NETLOAD, scenario, '--out', out, '--port', String(port)]);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0, stderr);
  const counts = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WorkloadCounts);
  return { code, stderr, report: JSON.parse(fs.readFileSync(json, 'utf8')), counts };
}

for (const [how, prefix] of [
  ['ip netns exec', ['ip', 'netns', 'exec', NS]],
  ['nsenter --net', ['nsenter', `--net=/run/netns/${NS}`]],
] as const) {
  test(`${how} NS proctap run: the accuracy workload is exact, and nothing is left behind`, async () => {
    const mountsBefore = cgroup2Mounts();
    for (const scenario of ['tree', 'udp']) {
      const { report, counts, stderr } = await runIn([...prefix], scenario);
      assert.ok(counts.length > 0);
      for (const c of counts) {
        const p = report.processes.find((x) => x.pid === c.pid);
        assert.ok(p, `pid ${c.pid} missing (${scenario})`);
        assert.deepEqual([p.tcp, p.udp], [c.tcp, c.udp], `${scenario}: pid ${c.pid}`);
        assert.equal(p.ppid, c.ppid, `${scenario}: ppid of ${c.pid}`);
      }
      assert.equal(report.lost.records, 0);
      // the proc connector was reached from the namespace (no note that it was not)
      assert.ok(!report.notes.some((n) => n.startsWith('No proc connector')), `${report.notes.join(' ')} ${stderr}`);
    }
    assert.deepEqual(proctapCgroups(), [], 'no cgroup left');
    assert.equal(cgroup2Mounts(), mountsBefore, 'no cgroup2 mount leaked into the host');
  });
}
