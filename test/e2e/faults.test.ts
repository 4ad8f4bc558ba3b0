// SPDX-License-Identifier: MIT
// Faults and bad input: a killed proctap leaves nothing behind (no cgroup, no traced process, no BPF
// program), signals stop the trace with a complete report, output files are never written through
// symlinks or over existing files, a ring-buffer overflow is counted exactly, a full disk stops the trace
// with readable files, NODE_OPTIONS never reaches the privileged process, bad paths and a non-root user
// get one clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { formatCount } from '../../src/util/format';
import { PROCTAP, loadedProgramNames, proctapCgroups, tempDir } from './harness';

const OURS = /^(sys_enter|tp_sock_send_le|tp_sock_recv_le|sched_process_|inet_sock_set_s|skb_egress|skb_ingress|sock_create|sock_release|tcp_retransmit_)/;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function cgroupMount(): string {
  const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(' - cgroup2 '))!;
  return line.split(' ')[4];
}

async function until(what: string, ms: number, check: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out: ${what}`);
    await sleep(20);
  }
}

/** Running, not a zombie (a killed process whose parent died waits for init to reap it). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

test('kill -9 of proctap: within a second the traced tree, its cgroup and every BPF program of ours are gone', async () => {
  const proctap = spawn(PROCTAP, ['run', '-q', '--', 'sh', '-c', 'sleep 60 & sleep 60 & exec sleep 60'], { stdio: 'ignore' });
  const cgroup = path.join(cgroupMount(), `proctap-${proctap.pid}-run`);
  await until('the traced tree to start', 5000, () => fs.existsSync(cgroup) && fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').trim().split('\n').length >= 3);
  const tree = fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').trim().split('\n').map(Number);
  proctap.kill('SIGKILL');
  const killedAt = Date.now();
  await until('the tree, the cgroup and the programs to go', 1000, () =>
    tree.every((pid) => !alive(pid)) && !fs.existsSync(cgroup) && !loadedProgramNames().some((n) => OURS.test(n)));
  process.stderr.write(`# cleaned up ${Date.now() - killedAt} ms after SIGKILL\n`);
  assert.deepEqual(proctapCgroups(), []);
});

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`${signal} to proctap: the command tree gets SIGTERM, the report is complete, nothing is left`, async () => {
    const dir = tempDir();
    const json = path.join(dir, 'r.json');
    const pcap = path.join(dir, 'r.pcapng');
    const sender = 'import socket, time\nu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(3): u.sendto(b"x", ("127.0.0.1", 9))\ntime.sleep(60)';
    const proctap = spawn(PROCTAP, ['run', '-q', '--json', json, '--pcap', pcap, '--', 'sh', '-c', `sleep 60 & exec python3 -c '${sender}'`], { stdio: 'ignore' });
    const cgroup = path.join(cgroupMount(), `proctap-${proctap.pid}-run`);
    await until('the traced tree to start', 5000, () => fs.existsSync(cgroup) && fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').trim().split('\n').length >= 2);
    // the datagrams went out and reached the file (flushed every ring-buffer batch)
    const packetsInFile = () => Number(/Number of packets:\s+(\d+)/.exec(spawnSync('capinfos', ['-c', pcap], { encoding: 'utf8' }).stdout)?.[1] ?? 0);
    await until('the datagrams to reach the capture file', 5000, () => packetsInFile() >= 3);
    proctap.kill(signal);
    const code = await new Promise((resolve) => proctap.on('close', resolve));
    assert.equal(code, 143, 'the command was ended by SIGTERM: 128 + 15');
    const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(report.exitCode, 143);
    assert.ok(report.processes.length >= 2);
    assert.deepEqual(proctapCgroups(), []);
    // the capture is complete and readable after the signal
    const info = spawnSync('capinfos', ['-c', pcap], { encoding: 'utf8' });
    assert.equal(info.status, 0, info.stderr);
    assert.match(info.stdout, /Number of packets:\s+3\b/);
    fs.rmSync(dir, { recursive: true, force: true });
  });
}

test('output files: never through a symlink, never over an existing file without --force, mode 0644', async () => {
  const dir = tempDir();
  const target = path.join(dir, 'victim');
  fs.writeFileSync(target, 'precious');
  const link = path.join(dir, 'link.json');
  fs.symlinkSync(target, link);
  for (const [args, message] of [
    [['--json', link], /is a symbolic link: refusing to write through it/],
    [['--force', '--json', link], /is a symbolic link/],
    [['--json', target], /exists \(use --force to overwrite it\)/],
    [['--pcap', target], /exists/],
  ] as const) {
    const r = spawnSync(PROCTAP, ['run', '-q', ...args, '--', 'true'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(fs.readFileSync(target, 'utf8'), 'precious');
  }
  const fresh = path.join(dir, 'fresh.json');
  const ok = spawnSync(PROCTAP, ['run', '-q', '--json', fresh, '--', 'true'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(fs.statSync(fresh).mode & 0o777, 0o644);
  const forced = spawnSync(PROCTAP, ['run', '-q', '--force', '--json', target, '--', 'true'], { encoding: 'utf8' });
  assert.equal(forced.status, 0, forced.stderr);
  assert.equal(JSON.parse(fs.readFileSync(target, 'utf8')).schemaVersion, 1);
  // devices and pipes are written as they are
  const devnull = spawnSync(PROCTAP, ['run', '-q', '--events', '/dev/null', '--detail', '--json', '/dev/null', '--', 'true'], { encoding: 'utf8' });
  assert.equal(devnull.status, 0, devnull.stderr);
  // a run that fails before tracing leaves no empty output file behind
  const failed = path.join(dir, 'failed.json');
  const bad = spawnSync(PROCTAP, ['run', '-q', '--backend', 'kprobe', '--json', failed, '--', 'true'], { encoding: 'utf8' });
  if (bad.status !== 0) assert.equal(fs.existsSync(failed), false, 'the half-made output was removed');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('least privilege: under sudo the command runs as the caller with no capabilities; --user root keeps root', () => {
  const env = { ...process.env, SUDO_UID: '65534', SUDO_GID: '65534' };
  const script = "id -u; id -g; grep CapEff /proc/self/status; echo $HOME";
  const dropped = spawnSync(PROCTAP, ['run', '-q', '--', 'sh', '-c', script], { encoding: 'utf8', env });
  assert.equal(dropped.status, 0, dropped.stderr);
  const [uid, gid, caps] = dropped.stdout.trim().split('\n');
  assert.deepEqual([uid, gid], ['65534', '65534']);
  assert.match(caps, /^CapEff:\s+0+$/);
  const root = spawnSync(PROCTAP, ['run', '-q', '--user', 'root', '--', 'id', '-u'], { encoding: 'utf8', env });
  assert.equal(root.stdout.trim(), '0');
});

/** A UDP flood that waits for `go` before sending, counts its own calls and bytes, and writes them to `out`. */
const FLOOD = `
import json, os, socket, sys, time
ready, go, out, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("127.0.0.1", 0))
rx.setblocking(False)
tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.01)
c = {"txBytes": 0, "rxBytes": 0, "txCalls": 0, "rxCalls": 0}
for i in range(n):
    c["txBytes"] += tx.sendto(b"f" * (1 + i % 300), rx.getsockname())
    c["txCalls"] += 1
    if i % 32 == 31:
        while True:
            try:
                d = rx.recv(4096)
            except BlockingIOError:
                break
            c["rxCalls"] += 1
            c["rxBytes"] += len(d)
with open(out + ".tmp", "w") as f:
    json.dump({"pid": os.getpid(), "udp": c}, f)
os.rename(out + ".tmp", out)
`;

test('ring-buffer overflow: a 4K buffer, a stopped consumer, a flood: lost records counted and shown, delivered + lost = calls, totals exact', async (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o777);
  const [ready, go, out, json, events] = ['ready', 'go', 'counts.json', 'r.json', 'events.ndjson'].map((f) => path.join(dir, f));
  const calls = 20000;
  const proctap = spawn(PROCTAP, ['run', '--ring-buffer', '4K', '--json', json, '--events', events, '--detail', '--no-color', '--',
    'python3', '-c', FLOOD, ready, go, out, String(calls)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const closed = new Promise((resolve) => proctap.on('close', resolve));
  await until('the workload to start', 10000, () => fs.existsSync(ready));
  // The consumer stops (proctap is frozen: its poll thread too) while the workload floods.
  proctap.kill('SIGSTOP');
  try {
    fs.writeFileSync(go, '');
    await until('the workload to finish its flood', 60000, () => fs.existsSync(out));
  } finally {
    proctap.kill('SIGCONT');
  }
  assert.equal(await closed, 0, stderr);
  const { pid, udp: counts } = JSON.parse(fs.readFileSync(out, 'utf8'));
  const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
  const workload = report.processes.find((p) => p.pid === pid);
  assert.ok(workload, `pid ${pid} is in the report`);
  // Byte and call totals come from kernel counters: exact, whatever the ring buffer lost.
  assert.deepEqual(workload.udp, counts);
  assert.deepEqual(report.totals.udp, counts);
  assert.equal(counts.txCalls, calls);
  // Each counted send/recv call tried to reserve one `call` record: delivered ones are in the event
  // stream, the others were counted as lost in kernel. Nothing is lost in user space.
  const delivered = fs.readFileSync(events, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'call').length;
  const lostCalls = report.lost.recordsByKind.call ?? 0;
  process.stderr.write(`# ${counts.txCalls + counts.rxCalls} calls: ${delivered} call records delivered, ${lostCalls} lost; ${report.lost.records} records lost in all\n`);
  assert.ok(lostCalls > 0, 'the 4K ring buffer overflowed');
  assert.ok(delivered > 0, 'records before the buffer filled were delivered');
  assert.equal(delivered + lostCalls, counts.txCalls + counts.rxCalls);
  assert.equal(report.lost.records, Object.values(report.lost.recordsByKind).reduce((a, b) => a + b, 0));
  // Said on stderr: a warning line (also with -q) and the report's LOST line.
  assert.match(stderr, new RegExp(`^proctap: warning: ring buffer full: ${report.lost.records} records lost \\(.*call ${lostCalls}.*\\); byte and call totals are still exact`, 'm'));
  assert.ok(stderr.includes(`LOST: ${formatCount(report.lost.records)} ring-buffer records dropped`), stderr);
  assert.ok(report.notes.some((n) => /Ring-buffer records were lost/.test(n)));
  assert.deepEqual(proctapCgroups(), []);
});

test('disk full (256K tmpfs) while writing a capture, an event stream and a JSON report: one clear line, exit 125, what was written stays readable', async () => {
  const dir = tempDir();
  const mnt = path.join(dir, 'full');
  fs.mkdirSync(mnt);
  const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0777', 'proctap-faults-tmpfs', mnt], { encoding: 'utf8' });
  assert.equal(mount.status, 0, mount.stderr);
  try {
    const [pcap, events, json] = ['c.pcapng', 'e.ndjson', 'r.json'].map((f) => path.join(mnt, f));
    // 1000 datagrams of 1000 bytes to a socket of its own: far more than 256K of capture
    const flood = 'import socket, time\nr = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nr.bind(("127.0.0.1", 0))\n' +
      'u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(1000):\n  u.sendto(b"d" * 1000, r.getsockname())\n  time.sleep(0.002)\ntime.sleep(30)';
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(PROCTAP, ['run', '-q', '--pcap', pcap, '--events', events, '--json', json, '--', 'python3', '-c', flood], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d) => (stderr += d));
      child.on('close', (code) => resolve({ code, stderr }));
    });
    assert.equal(r.code, 125, r.stderr);
    assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    const errors = r.stderr.split('\n').filter((l) => /^proctap: cannot write/.test(l));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0], /^proctap: cannot write (capture|the event stream|the JSON report) to .*: no space left on device \(ENOSPC\)/);
    assert.match(r.stderr, /an output failed: stopping the traced command/, 'the trace stopped at once (the command sleeps 30 s)');
    // The capture ends at a block boundary: tshark reads every packet in it without complaint.
    const read = spawnSync('tshark', ['-r', pcap, '-T', 'fields', '-e', 'frame.len'], { encoding: 'utf8' });
    assert.equal(read.status, 0, read.stderr);
    assert.doesNotMatch(read.stderr, /damaged|corrupt|cut short/, read.stderr);
    const packets = read.stdout.trim().split('\n').filter(Boolean);
    assert.ok(packets.length >= 64 && packets.every((len) => len === '1028'), `${packets.length} packets: ${packets.join(' ')}`);
    // The event stream ends at a line boundary: every line is JSON.
    const lines = fs.readFileSync(events, 'utf8');
    assert.ok(lines === '' || lines.endsWith('\n'));
    for (const line of lines.split('\n').filter(Boolean)) JSON.parse(line);
    // The JSON report is whole or absent, never cut.
    if (fs.existsSync(json)) assert.equal(JSON.parse(fs.readFileSync(json, 'utf8')).schemaVersion, 1);
    else assert.match(r.stderr, /the partial file was removed|cannot write (capture|the event stream)/);
    process.stderr.write(`# disk full: ${errors[0]}; ${packets.length} packets readable, ${lines.split('\n').length - 1} event lines\n`);
    assert.deepEqual(proctapCgroups(), []);
  } finally {
    const umount = spawnSync('umount', [mnt], { encoding: 'utf8' });
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(umount.status, 0, umount.stderr);
  }
});

test('NODE_OPTIONS, NODE_PATH and OPENSSL_CONF are ignored by the privileged process, and given back to the traced command', (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const marker = path.join(dir, 'marker');
  const preload = path.join(dir, 'x.js');
  fs.writeFileSync(preload, `require('fs').appendFileSync(${JSON.stringify(marker)}, process.pid + ' ' + process.argv.join(' ') + '\\n');\n`);
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `--require ${preload}`, NODE_PATH: dir, OPENSSL_CONF: path.join(dir, 'openssl.cnf') };
  for (const args of [['--version'], ['doctor'], ['run', '-q', '--', 'true']]) {
    const r = spawnSync(PROCTAP, args, { encoding: 'utf8', env });
    assert.ok(r.status === 0 || (args[0] === 'doctor' && r.status === 1), `${args.join(' ')}: ${r.stderr}`);
    assert.equal(fs.existsSync(marker), false, `proctap ${args.join(' ')} ran the NODE_OPTIONS preload: ${fs.existsSync(marker) && fs.readFileSync(marker, 'utf8')}`);
  }
  // The traced command runs with the environment it was given: the variables come back under their names.
  const r = spawnSync(PROCTAP, ['run', '-q', '--user', 'root', '--', 'sh', '-c', 'env | grep -E "^(NODE_|OPENSSL_|PROCTAP_)" | sort'], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  for (const name of ['NODE_OPTIONS', 'NODE_PATH', 'OPENSSL_CONF']) assert.ok(lines.includes(`${name}=${env[name]}`), r.stdout);
  assert.ok(!lines.some((l) => l.startsWith('PROCTAP_SAVED_')), r.stdout);
  // ...so a node program traced by proctap still gets its NODE_OPTIONS: the preload runs there, as the command.
  const traced = spawnSync(PROCTAP, ['run', '-q', '--user', 'root', '--', process.execPath, '-e', '0'], { encoding: 'utf8', env });
  assert.equal(traced.status, 0, traced.stderr);
  const ran = fs.readFileSync(marker, 'utf8').trim().split('\n');
  assert.equal(ran.length, 1, ran.join('\n'));
  assert.doesNotMatch(ran[0], /proctap/);
});

test('bad input: unwritable output paths and a non-root user: one line naming the cause, non-zero exit, nothing created', () => {
  const cases: Array<[string[], RegExp]> = [
    [['--json', '/sys/proctap-faults.json'], /^proctap: cannot create \/sys\/proctap-faults.json: permission denied$/],
    [['--pcap', '/nonexistent-proctap-faults/x.pcapng'], /^proctap: cannot create \/nonexistent-proctap-faults\/x.pcapng: no such file or directory$/],
    [['--force', '--events', os.tmpdir()], new RegExp(`^proctap: cannot create ${os.tmpdir()}: illegal operation on a directory$`)],
  ];
  for (const [args, message] of cases) {
    const r = spawnSync(PROCTAP, ['run', '-q', ...args, '--', 'true'], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trimEnd(), message);
  }
  assert.equal(fs.existsSync('/sys/proctap-faults.json'), false);
  // An unprivileged user: the message names every capability proctap needs, for every command.
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'];
  const all = /^proctap: missing capabilities CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN: proctap needs root \(run it with sudo\)$/;
  for (const [args, code] of [[['run', '-q', '--', 'true'], 125], [['attach', '1'], 1], [['doctor'], 1], [['cleanup'], 1]] as const) {
    const r = spawnSync(nobody[0], [...nobody.slice(1), PROCTAP, ...args], { encoding: 'utf8' });
    assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trimEnd(), all, args.join(' '));
  }
  // root without some of them (bounding set dropped): exactly the missing ones are named
  const partial = spawnSync('setpriv', ['--bounding-set=-bpf,-perfmon', '--inh-caps=-all', PROCTAP, 'run', '-q', '--', 'true'], { encoding: 'utf8' });
  assert.equal(partial.status, 125, partial.stderr);
  assert.match(partial.stderr.trimEnd(), /^proctap: missing capabilities CAP_BPF, CAP_PERFMON: proctap needs root/);
  assert.deepEqual(proctapCgroups(), []);
});
