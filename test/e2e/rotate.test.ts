// SPDX-License-Identifier: MIT
// -C / -G / -W end to end: `proctap run -o FILE` with each flag on a loopback workload; every file is
// read alone by capinfos and tshark, and across the files every packet the kernel counted (cgroup_skb
// counters, report.totals.packets) is there exactly once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { NETLOAD, PROCTAP, ROOT, TEST_BACKEND, lineFrom, loopbackFixture } from './harness';

const env = loopbackFixture();
const ROOT_BANNER = /Running as user "root" and group "root"\. This could be dangerous\.\n?/;

function tool(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 256 << 20 });
  assert.equal(r.error, undefined, `${cmd}: ${r.error?.message}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr.replace(ROOT_BANNER, '').trim(), '', `${cmd} complained about ${args.join(' ')}`);
  return r.stdout;
}

/** One line per packet that tells it from every other (time to the ns, addresses, TCP numbers, length). */
function packetsOf(file: string): string[] {
  const count = Number(/^Number of packets:\s*(\d+)/m.exec(tool('capinfos', ['-c', file]))?.[1]);
  const fields = ['frame.time_epoch', 'ip.src', 'tcp.srcport', 'tcp.dstport', 'tcp.seq_raw', 'tcp.ack_raw', 'tcp.len', 'frame.len', 'frame.comment'];
  const lines = tool('tshark', ['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])]).split('\n').filter(Boolean);
  assert.equal(lines.length, count, `${file}: tshark and capinfos count the same packets`);
  return lines;
}

/** Async: the loopback servers the workload talks to live in this process's event loop. */
function proctapRun(dir: string, flags: string[], command: string[]): Promise<{ report: Report; stderr: string }> {
  const json = path.join(dir, 'report.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const child = spawn(PROCTAP, ['run', ...backend, '-q', '--json', json, ...flags, '--', ...command], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`proctap exited ${code}: ${stderr}`));
      resolve({ report: JSON.parse(fs.readFileSync(json, 'utf8')) as Report, stderr });
    });
  });
}

const upload = (size: number) => ['python3', NETLOAD, 'upload', '--out', path.join(env.dir, 'counts.jsonl'), '--host', '127.0.0.1', '--port', String(env.servers.port + 1), '--size', String(size)];

/** The capture holds what the kernel counted for the traced sockets, each packet once across the files. */
function assertEveryPacketOnce(report: Report, files: string[]): string[] {
  const all = files.flatMap(packetsOf);
  const kernel = report.totals.packets.txPackets + report.totals.packets.rxPackets;
  assert.equal(report.capture?.dropped, 0);
  assert.equal(all.length, kernel, `packets in the files = packets the kernel counted (${kernel})`);
  assert.equal(report.capture?.packets, kernel);
  assert.equal(new Set(all).size, all.length, 'no packet in two files');
  return all;
}

test('-C 1: FILE, FILE1, FILE2...; each file just past 1,000,000 bytes; every packet once', async (t) => {
  const dir = fs.mkdtempSync(path.join(env.dir, 'c-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { report } = await proctapRun(dir, ['-o', path.join(dir, 'cap.pcapng'), '-C', '1'], upload(6_000_000));
  const files = report.capture?.files ?? [];
  assert.ok(files.length >= 5, `${files.length} files`);
  assert.deepEqual(files.map((f) => path.basename(f)), ['cap.pcapng', ...files.slice(1).map((_, i) => `cap.pcapng${i + 1}`)]);
  for (const f of files.slice(0, -1)) {
    // past 1 MB by its last packet at most (a GSO packet on lo can be larger than 64 KiB)
    const size = fs.statSync(f).size;
    const last = Number(tool('tshark', ['-r', f, '-T', 'fields', '-e', 'frame.cap_len']).trim().split('\n').pop());
    assert.ok(size > 1_000_000 && size - last - 256 <= 1_000_000, `${path.basename(f)}: ${size} bytes, last packet ${last}`);
  }
  const all = assertEveryPacketOnce(report, files);
  process.stderr.write(`# -C 1: ${files.length} files, ${all.length} packets, each once\n`);
  // every file is a complete pcapng: its own section and interface (capinfos -I reads each alone)
  for (const f of files) assert.match(tool('capinfos', ['-I', f]), /cgroup proctap-\d+-run/);
});

test('-C 1 -W 2: a ring of cap.pcapng0 and cap.pcapng1 holding the latest packets, each once', async (t) => {
  const dir = fs.mkdtempSync(path.join(env.dir, 'w-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { report } = await proctapRun(dir, ['-o', path.join(dir, 'cap.pcapng'), '-C', '1', '-W', '2'], upload(6_000_000));
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.startsWith('cap')).sort(), ['cap.pcapng0', 'cap.pcapng1']);
  const files = report.capture?.files ?? [];
  assert.equal(files.length, 2);
  const kept = files.flatMap(packetsOf);
  assert.equal(new Set(kept).size, kept.length, 'no packet twice');
  const kernel = report.totals.packets.txPackets + report.totals.packets.rxPackets;
  assert.ok(kept.length < kernel, `older files were overwritten (${kept.length} of ${kernel} packets kept)`);
  // the ring keeps the end of the capture: its last packet is the capture's last
  process.stderr.write(`# -C 1 -W 2: ${kept.length} of ${kernel} packets kept in the ring\n`);
  const times = kept.map((l) => Number(l.split('\t')[0]));
  assert.equal(Math.max(...times), times[times.length - 1]);
});

test('-G 1: a file per second named by strftime; every packet once; -G 1 -W 2 ends the capture after two files', async (t) => {
  const dir = fs.mkdtempSync(path.join(env.dir, 'g-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // about 3.5 s of traffic: an upload every half second
  const steps = Array.from({ length: 7 }, () => `${upload(20_000).join(' ')}; sleep 0.5`).join('; ');
  const { report } = await proctapRun(dir, ['-o', path.join(dir, 'cap-%Y%m%d-%H%M%S.pcapng'), '-G', '1'], ['sh', '-c', steps]);
  const files = report.capture?.files ?? [];
  assert.ok(files.length >= 3, `${files.length} files`);
  const stamps = files.map((f) => {
    const m = /^cap-(\d{4})(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)\.pcapng$/.exec(path.basename(f));
    assert.ok(m, path.basename(f));
    return new Date(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]).getTime();
  });
  for (let i = 1; i < stamps.length; i++) assert.ok(stamps[i] - stamps[i - 1] >= 1000, 'one file per second at most');
  const all = assertEveryPacketOnce(report, files);
  assert.equal(all.length, report.capture?.packets);
  process.stderr.write(`# -G 1: ${files.length} files, ${all.length} packets, each once\n`);

  const limited = fs.mkdtempSync(path.join(env.dir, 'gw-'));
  t.after(() => fs.rmSync(limited, { recursive: true, force: true }));
  const second = await proctapRun(limited, ['-o', path.join(limited, 'cap-%H%M%S.pcapng'), '-G', '1', '-W', '2'], ['sh', '-c', steps]);
  const written = second.report.capture?.files ?? [];
  assert.equal(written.length, 2);
  assert.match(second.stderr, /-G\/-W: 2 files written, the capture is over \(tracing goes on\)/);
  const inFiles = written.flatMap(packetsOf);
  assert.equal(inFiles.length, second.report.capture?.packets);
  const kernel = second.report.totals.packets.txPackets + second.report.totals.packets.rxPackets;
  assert.ok(inFiles.length < kernel, 'packets after the limit are not written');
  assert.deepEqual(second.report.totals.tcp, report.totals.tcp, 'the trace went on: every byte is in the report');
});

test('rotation options: clear errors for contradictions, before anything starts', () => {
  const cases: Array<[string[], RegExp]> = [
    [['run', '-C', '1', '--', 'true'], /-C needs -o\/--pcap FILE/],
    [['run', '-o', '-', '-G', '5', '--', 'true'], /-G: rotating files cannot go to standard output/],
    [['run', '-o', '/tmp/x.pcapng', '-W', '3', '--', 'true'], /-W needs -C SIZE or -G SECONDS/],
    [['run', '-o', '/tmp/x.pcapng', '-C', '0', '--', 'true'], /-C takes a file size/],
    [['run', '-o', '/tmp/x.pcapng', '-G', '1.5', '--', 'true'], /-G must be an integer/],
  ];
  for (const [args, pattern] of cases) {
    const r = spawnSync(PROCTAP, args, { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.equal(fs.existsSync('/tmp/x.pcapng'), false);
});

test('-C on a libpcap capture (attach --netns-capture): every file complete, every packet written once', async (t) => {
  const ns = `proctap-rot-${process.pid}`;
  const ip = (...args: string[]) => spawnSync('ip', args, { encoding: 'utf8' });
  assert.equal(ip('netns', 'add', ns).status, 0);
  t.after(() => ip('netns', 'del', ns));
  assert.equal(ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up').status, 0);
  const dir = fs.mkdtempSync(path.join(env.dir, 'n-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = spawn('ip', ['netns', 'exec', ns, 'python3', path.join(ROOT, 'test/workloads/attach_target.py'), '--echo-server', '--port', '7777', '--bytes', '3000000', '--out', path.join(dir, 'counts.jsonl')], { stdio: ['pipe', 'pipe', 'inherit'] });
  await lineFrom(target.stdout!, /ready/, 'the namespaced target');
  const json = path.join(dir, 'report.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--json', json, '--netns-capture', '-o', path.join(dir, 'ns.pcapng'), '-C', '1', String(target.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  await lineFrom(proctap.stderr!, /attached to pid \d+/, 'proctap to attach');
  target.stdin!.write('go\n');
  assert.equal(await exited, 0, stderr);
  const report = JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
  const files = report.capture?.files ?? [];
  assert.ok(files.length >= 2, `${files.length} files`);
  assert.deepEqual(files.map((f) => path.basename(f)), ['ns.pcapng', ...files.slice(1).map((_, i) => `ns.pcapng${i + 1}`)]);
  const all = files.flatMap(packetsOf);
  assert.equal(all.length, report.capture?.packets, 'the files hold every packet written');
  assert.equal(report.capture?.dropped, 0);
  assert.equal(new Set(all).size, all.length, 'no packet in two files');
  for (const f of files) assert.match(tool('capinfos', ['-I', f]), /any \(netns \d+\)/);
  process.stderr.write(`# --netns-capture -C 1: ${files.length} files, ${all.length} packets, each once\n`);
});
