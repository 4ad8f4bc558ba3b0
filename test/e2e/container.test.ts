// SPDX-License-Identifier: MIT
// Containers by name with a real runtime: podman runs a container from a root file system this test
// builds (busybox-static: no registry is needed), networked on the host's loopback only. `proctap attach
// --container NAME` follows its processes now and later (`podman exec`), and names the container in the
// report, the NDJSON stream and every packet comment; bytes equal what the test's server received.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { PROCTAP, TEST_BACKEND, lineFrom, loopbackFixture, tempDir } from './harness';

const env = loopbackFixture();
const NAME = `pt-${process.pid}`;
const state: { rootfs: string; id: string; skip: string | null } = { rootfs: '', id: '', skip: null };

/** A root file system of one static busybox and the applets the test uses. */
function buildRootfs(): string {
  const dir = tempDir();
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.copyFileSync('/bin/busybox', path.join(dir, 'bin/busybox'));
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const applet of ['sh', 'sleep', 'head', 'nc', 'cat']) fs.symlinkSync('busybox', path.join(dir, 'bin', applet));
  return dir;
}

/**
 * How podman can start a container here. runc rather than crun: crun refuses a hybrid cgroup setup whose
 * v2 hierarchy has any controller ("cgroups in hybrid mode not supported"), runc handles it. Small
 * rlimits: podman's defaults (and even this process's own hard limits, which podman lowers for its
 * children) are more than a root without CAP_SYS_RESOURCE, as on this machine, may set.
 */
function podmanRunFlags(): string[] {
  const runc = spawnSync('sh', ['-c', 'command -v runc'], { encoding: 'utf8' }).status === 0;
  return [...(runc ? ['--runtime', 'runc'] : []), '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024'];
}

before(() => {
  state.rootfs = buildRootfs();
  const version = spawnSync('podman', ['--version'], { encoding: 'utf8' });
  assert.equal(version.error, undefined, 'podman is installed by scripts/install-deps.sh');
  const r = spawnSync('podman', ['run', '-d', '--name', NAME, ...podmanRunFlags(), '--network', 'host', '--rootfs', state.rootfs, '/bin/sh', '-c', 'while :; do sleep 1; done'], { encoding: 'utf8' });
  if (r.status !== 0) {
    state.skip = `podman cannot start a container on this machine: ${r.stderr.trim()}`;
    return;
  }
  state.id = r.stdout.trim().split('\n').pop()!;
});

after(() => {
  spawnSync('podman', ['rm', '-f', '-t', '0', NAME], { encoding: 'utf8' });
  if (state.rootfs) fs.rmSync(state.rootfs, { recursive: true, force: true });
  assert.equal(spawnSync('podman', ['ps', '-a', '-q', '--filter', `name=^${NAME}$`], { encoding: 'utf8' }).stdout.trim(), '', 'the container is gone');
});

/** `podman exec` a shell line inside the container (async: the servers it talks to are in this process). */
function podmanExec(line: string): Promise<number | null> {
  return new Promise((resolve) => spawn('podman', ['exec', NAME, 'sh', '-c', line], { stdio: 'inherit' }).on('close', resolve));
}

test('attach --container NAME: its processes now and later, named in the report, the NDJSON and every packet', async (t) => {
  if (state.skip) return t.skip(state.skip);
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'r.json');
  const events = path.join(dir, 'e.ndjson');
  const pcap = path.join(dir, 'c.pcapng');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--container', NAME, '--json', json, '--events', events, '-o', pcap], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  await lineFrom(proctap.stderr!, /attached to pid \d+/, 'proctap to attach');

  // two later processes, each sending a known number of bytes to the sink (it answers with 8 bytes)
  const sink = env.servers.port + 1;
  assert.equal(await podmanExec(`head -c 12345 /dev/zero | nc 127.0.0.1 ${sink} | head -c 8 >/dev/null`), 0);
  assert.equal(await podmanExec(`head -c 23456 /dev/zero | nc 127.0.0.1 ${sink} | head -c 8 >/dev/null`), 0);
  await new Promise((resolve) => setTimeout(resolve, 300));
  proctap.kill('SIGINT');
  assert.equal(await exited, 0, stderr);

  const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
  const container = { runtime: 'podman', id: state.id, name: NAME };
  assert.deepEqual(report.targets, [{ kind: 'container', query: NAME, container, cgroup: report.targets?.[0].kind === 'container' ? report.targets[0].cgroup : '' }]);
  assert.match((report.targets?.[0] as { cgroup: string }).cgroup, new RegExp(`libpod-${state.id}`));
  const senders = report.processes.filter((p) => p.tcp.txBytes > 0).map((p) => [p.tcp.txBytes, p.tcp.rxBytes]).sort((a, b) => a[0] - b[0]);
  assert.deepEqual(senders, [[12345, 8], [23456, 8]], 'each nc sent what it read from /dev/zero and got the 8-byte count');
  assert.deepEqual(report.totals.tcp.txBytes, 12345 + 23456);
  // every process is the container's: the shell that ran before the attach and everything exec'd since
  assert.ok(report.processes.length >= 3, `${report.processes.length} processes`);
  for (const p of report.processes) assert.deepEqual(p.container, container, `pid ${p.pid} (${p.comm})`);
  assert.ok(report.processes.some((p) => p.startOffsetMs === null), 'the container\'s shell, there before the attach');

  const execs = fs.readFileSync(events, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'exec');
  assert.ok(execs.length >= 2);
  for (const e of execs) assert.deepEqual(e.container, container, `exec of pid ${e.pid}`);

  const comments = spawnSync('tshark', ['-r', pcap, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean);
  assert.equal(comments.length, report.capture?.packets);
  assert.ok(comments.length > 0);
  for (const c of comments) assert.match(c, new RegExp(`^pid \\d+ \\(\\S+\\) container ${NAME}$`));
  process.stderr.write(`# container ${NAME} (${state.id.slice(0, 12)}): ${report.processes.length} processes, ${comments.length} packets named\n`);
});

test('attach --container: by id prefix; an unknown container is one line and exit 2', async (t) => {
  if (state.skip) return t.skip(state.skip);
  const r = spawnSync(PROCTAP, ['attach', '-q', '--container', state.id.slice(0, 12), '--duration', '1s', '--json', '-'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const report: Report = JSON.parse(r.stdout);
  assert.equal(report.targets?.[0].kind === 'container' && report.targets[0].container.name, NAME);
  const bad = spawnSync(PROCTAP, ['attach', '--container', 'no-such-container-here'], { encoding: 'utf8' });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /^proctap: no running container 'no-such-container-here' \(running: /);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  const both = spawnSync(PROCTAP, ['attach', '--container', NAME, '--cgroup', '/'], { encoding: 'utf8' });
  assert.equal(both.status, 2);
  assert.match(both.stderr, /give --cgroup or --container, not both/);
});
