// SPDX-License-Identifier: MIT
// Rotating captures: file names exactly as tcpdump makes them, and real files (-C, -G with a clock the
// test drives, -W rings) each read alone by capinfos and tshark, every packet in exactly one of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRotatingWriter, firstRotatedFileName, rotatedFileName, rotationDigits, type RotationPlan } from '../../src/pcap/rotate';
import { LINKTYPE_RAW } from '../../src/pcap/pcapng';
import { createPcapngWriter, createPcapWriter, fdSink, type ByteSink } from '../../src/pcap/writer';
import { createOutputFile } from '../../src/util/output';
import { openCapture } from '../../src/pcap/capture';

test('names: FILE, FILE1, FILE2 with -C; FILE0.. padded to the digits of N-1 with -W; strftime with -G', () => {
  assert.deepEqual([0, 1, 2].map((n) => rotationDigits(n)), [0, 0, 1]);
  assert.deepEqual([3, 10, 11, 100, 101].map((n) => rotationDigits(n)), [1, 1, 2, 2, 3]);
  const c: RotationPlan = { pattern: 'out.pcapng', fileSize: 1, startedAtMs: 0 };
  assert.equal(firstRotatedFileName(c), 'out.pcapng');
  assert.equal(rotatedFileName(c, 1, 0, 0), 'out.pcapng1');
  assert.equal(rotatedFileName(c, 12, 0, 0), 'out.pcapng12');
  assert.equal(firstRotatedFileName({ ...c, count: 11 }), 'out.pcapng00');
  assert.equal(rotatedFileName(c, 7, rotationDigits(11), 0), 'out.pcapng07');
  assert.equal(firstRotatedFileName({ ...c, count: 1 }), 'out.pcapng', '-W 1 has no number');
  const at = new Date(2026, 0, 2, 3, 4, 5).getTime();
  const g: RotationPlan = { pattern: 'cap-%Y%m%d-%H%M%S.pcapng', seconds: 60, startedAtMs: at };
  assert.equal(firstRotatedFileName(g), 'cap-20260102-030405.pcapng');
  assert.equal(firstRotatedFileName({ ...g, fileSize: 1 }), 'cap-20260102-030405.pcapng', '-G -C: the first file of a period has no number');
  assert.equal(firstRotatedFileName({ ...g, fileSize: 1, count: 3 }), 'cap-20260102-030405.pcapng0');
  assert.equal(firstRotatedFileName({ pattern: '100%.pcap', fileSize: 1, startedAtMs: at }), '100%.pcap', 'no strftime without -G');
});

const ROOT_BANNER = /^Running as user "[^"]*" and group "[^"]*"\. This could be dangerous\.\n?/m;
function tool(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) throw new Error(`${cmd}: ${r.error.message} (installed by scripts/install-deps.sh)`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr.replace(ROOT_BANNER, '')}`);
  return r.stdout;
}

/** An IPv4/UDP packet whose payload carries its sequence number (read back with tshark). */
function packet(seq: number, size: number): Buffer {
  const payload = Buffer.alloc(size, 0x61);
  payload.write(`seq${String(seq).padStart(6, '0')}`, 0);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(40000, 0);
  udp.writeUInt16BE(40001, 2);
  udp.writeUInt16BE(8 + size, 4);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(28 + size, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip.set([127, 0, 0, 1], 12);
  ip.set([127, 0, 0, 1], 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([ip, udp, payload]);
}

/** Writes `count` packets through a rotating writer; `tick` advances the test's clock per packet. */
function capture(dir: string, plan: Omit<RotationPlan, 'startedAtMs' | 'pattern'> & { pattern?: string }, count: number, size: number, tick = 0, format: 'pcapng' | 'pcap' = 'pcapng') {
  let now = new Date(2026, 5, 1, 12, 0, 0).getTime();
  const full: RotationPlan = { ...plan, pattern: path.join(dir, plan.pattern ?? 'cap.pcapng'), startedAtMs: now };
  const output = { force: false, owner: null };
  const first = firstRotatedFileName(full);
  const firstSink: ByteSink = fdSink(createOutputFile(first, output), { label: first, closeFd: true });
  const started: string[] = [];
  let limit: string[] | null = null;
  const make = (sink: ByteSink) =>
    format === 'pcap'
      ? createPcapWriter(sink, { linkType: LINKTYPE_RAW, snapLen: 65535, batchPackets: 4 })
      : createPcapngWriter(sink, { userAppl: 'proctap test', interfaces: [{ name: 'cgroup test', linkType: LINKTYPE_RAW, snapLen: 0 }], batchPackets: 4 });
  const writer = createRotatingWriter(full, { first: firstSink, output }, make, {
    now: () => now,
    onFileStart: (_w, name) => started.push(name),
    onLimit: (files) => (limit = files),
  });
  let written = 0;
  for (let seq = 0; seq < count; seq++) {
    if (writer.writePacket({ timestampNs: BigInt(now) * 1_000_000n, data: packet(seq, size), originalLength: 28 + size, comment: `pid ${seq}` }) !== false) written++;
    now += tick;
  }
  writer.close();
  return { files: writer.files(), started, written, discarded: writer.discarded, limit: limit as string[] | null, plan: full };
}

/** Every file read alone: its sequence numbers (tshark), its packet count (capinfos). */
function readBack(file: string): number[] {
  const count = Number(/^Number of packets:\s*(\d+)/m.exec(tool('capinfos', ['-c', file]))?.[1]);
  const seqs = tool('tshark', ['-r', file, '-T', 'fields', '-e', 'data.text', '-o', 'data.show_as_text:TRUE'])
    .split('\n')
    .filter(Boolean)
    .map((l) => Number(/seq(\d{6})/.exec(l)?.[1]));
  assert.equal(seqs.length, count, `${file}: tshark and capinfos agree`);
  return seqs;
}

function inTempDir(fn: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-rotate-'));
  try {
    fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('-C: a new file once one is larger than SIZE; each a complete pcapng; every packet once, in order', () =>
  inTempDir((dir) => {
    const r = capture(dir, { fileSize: 10_000 }, 100, 1000);
    assert.equal(r.written, 100);
    assert.ok(r.files.length >= 9, `${r.files.length} files`);
    assert.deepEqual(r.files.map((f) => path.basename(f)), ['cap.pcapng', ...r.files.slice(1).map((_, i) => `cap.pcapng${i + 1}`)]);
    assert.deepEqual(fs.readdirSync(dir).sort(), r.files.map((f) => path.basename(f)).sort());
    const all = r.files.flatMap(readBack);
    assert.deepEqual(all, [...Array(100).keys()]);
    for (const f of r.files.slice(0, -1)) {
      const size = fs.statSync(f).size;
      // rotation happens before the packet that would be written to a file already past SIZE
      assert.ok(size > 10_000 && size < 10_000 + 1200, `${f}: ${size} bytes`);
    }
    // each file names its own interface (a complete section of its own)
    for (const f of r.files) assert.match(tool('capinfos', ['-I', f]), /cgroup test/);
  }));

test('-C -W: a ring of N files, the oldest overwritten; the files left hold the latest packets exactly once', () =>
  inTempDir((dir) => {
    const r = capture(dir, { fileSize: 5000, count: 3 }, 60, 1000);
    assert.deepEqual(fs.readdirSync(dir).sort(), ['cap.pcapng0', 'cap.pcapng1', 'cap.pcapng2']);
    assert.ok(r.started.length > 3, `the ring went round: ${r.started.length} files started`);
    const kept = r.files.flatMap(readBack);
    // the last files written, in order, end with the last packet; nothing appears twice
    assert.equal(new Set(kept).size, kept.length);
    assert.equal(kept[kept.length - 1], 59);
    assert.deepEqual(kept, [...Array(kept.length).keys()].map((i) => 60 - kept.length + i));
  }));

test('-G: a new strftime-named file every G seconds (on the packet after the period); -G -C numbers within a period', () =>
  inTempDir((dir) => {
    // 10 packets a second for 5 s, -G 2: periods start at 0, 2, 4 s
    const r = capture(dir, { pattern: 'g-%H%M%S.pcapng', seconds: 2 }, 50, 100, 100);
    assert.deepEqual(r.files.map((f) => path.basename(f)), ['g-120000.pcapng', 'g-120002.pcapng', 'g-120004.pcapng']);
    assert.deepEqual(r.files.map((f) => readBack(f).length), [20, 20, 10]);
    assert.deepEqual(r.files.flatMap(readBack), [...Array(50).keys()]);
  }));

test('-G -C: within a period FILE, FILE1...; the count starts again with each period', () =>
  inTempDir((dir) => {
    const r = capture(dir, { pattern: 'h-%S.pcapng', seconds: 2, fileSize: 3000 }, 40, 1000, 100);
    const names = r.files.map((f) => path.basename(f));
    assert.equal(names[0], 'h-00.pcapng');
    assert.ok(names.includes('h-00.pcapng1') && names.includes('h-02.pcapng') && names.includes('h-02.pcapng1'), names.join(' '));
    assert.deepEqual(r.files.flatMap(readBack).sort((a, b) => a - b), [...Array(40).keys()]);
  }));

test('-G -W: after N files the capture is over (tcpdump exits there): no more packets are written', () =>
  inTempDir((dir) => {
    const r = capture(dir, { pattern: 'w-%S.pcapng', seconds: 1, count: 2 }, 30, 100, 100);
    assert.deepEqual(r.files.map((f) => path.basename(f)), ['w-00.pcapng', 'w-01.pcapng']);
    assert.deepEqual(r.limit?.map((f) => path.basename(f)), ['w-00.pcapng', 'w-01.pcapng']);
    assert.equal(r.written, 20);
    assert.equal(r.discarded, 10);
    assert.deepEqual(r.files.flatMap(readBack), [...Array(20).keys()]);
  }));

test('classic pcap rotates too; a file this capture did not make is not overwritten without --force', () =>
  inTempDir((dir) => {
    const r = capture(dir, { pattern: 'p.pcap', fileSize: 4000 }, 20, 1000, 0, 'pcap');
    assert.deepEqual(r.files.flatMap(readBack), [...Array(20).keys()]);
    fs.rmSync(path.join(dir, 'p.pcap'));
    fs.writeFileSync(path.join(dir, 'p.pcap1'), 'mine');
    assert.throws(() => capture(dir, { pattern: 'p.pcap', fileSize: 4000 }, 20, 1000, 0, 'pcap'), /p\.pcap1 exists \(use --force to overwrite it\)/);
    assert.equal(fs.readFileSync(path.join(dir, 'p.pcap1'), 'utf8'), 'mine');
  }));

/** The secrets of each Decryption Secrets Block (type 0x0000000A) of a pcapng file, in order. */
function secretsBlocks(file: string): string[] {
  const b = fs.readFileSync(file);
  const found: string[] = [];
  for (let at = 0; at + 12 <= b.length; ) {
    const type = b.readUInt32LE(at);
    const length = b.readUInt32LE(at + 4);
    if (type === 0x0a) found.push(b.subarray(at + 16, at + 16 + b.readUInt32LE(at + 12)).toString());
    at += length;
  }
  return found;
}

test('rotated captures with a key log: every file carries the secrets logged so far, before its packets', () =>
  inTempDir((dir) => {
    const pattern = path.join(dir, 'tls.pcapng');
    const plan: RotationPlan = { pattern, fileSize: 1, startedAtMs: Date.now() };
    plan.fileSize = 600; // bytes here (the CLI's -C is in MB): a new file every few packets
    const output = { force: false, owner: null };
    const logged = ['CLIENT_RANDOM aa 11\n', 'CLIENT_RANDOM bb 22\n'];
    let next = 0;
    const capture = openCapture(
      { path: pattern, fd: createOutputFile(pattern, output), format: 'pcapng', snaplen: 65535, userAppl: 'proctap test', interfaceName: 'cgroup test', secrets: { take: () => (next < logged.length ? Buffer.from(logged[next++]) : null) }, rotation: { plan, output } },
      () => undefined,
    );
    for (let seq = 0; seq < 12; seq++) {
      const data = packet(seq, 200);
      capture.onPacket({ type: 'packet', tgid: 1, tsNs: seq, startTime: 0n, cookie: 1n, originalLength: data.length, ifindex: 1, direction: 'tx', data });
      capture.flush();
    }
    capture.close(0);
    const files = fs.readdirSync(dir).sort();
    assert.ok(files.length >= 3, files.join(' '));
    // the first file got each line as it was logged; every later one starts with all of them
    assert.deepEqual(secretsBlocks(path.join(dir, files[0])), logged);
    for (const f of files.slice(1)) assert.equal(secretsBlocks(path.join(dir, f))[0], logged.join(''), f);
    for (const f of files) tool('capinfos', ['-c', path.join(dir, f)]);
  }));
