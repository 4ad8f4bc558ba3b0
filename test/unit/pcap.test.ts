// SPDX-License-Identifier: MIT
// Classic pcap encoder (nanosecond magic): header and record layout by hand, then read back by
// capinfos / tshark / tcpdump.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pcapGlobalHeader, pcapRecord } from '../../src/pcap/pcap';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from '../../src/pcap/pcapng';
import { createPcapWriter, fileSink, type ByteSink, type CapturedPacket } from '../../src/pcap/writer';

// ---------------------------------------------------------------- helpers

function checksum(...parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) for (let i = 0; i < p.length; i += 2) sum += (p[i] << 8) | (i + 1 < p.length ? p[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4 + UDP (proto 17) or TCP (proto 6, a bare ACK/PSH segment) with valid checksums. */
function ipv4Packet(src: number[], dst: number[], proto: 6 | 17, payload: string): Buffer {
  const data = Buffer.from(payload);
  const l4 = Buffer.alloc(proto === 6 ? 20 : 8);
  l4.writeUInt16BE(50000, 0);
  l4.writeUInt16BE(50001, 2);
  if (proto === 6) {
    l4[12] = 5 << 4;
    l4[13] = 0x02; // SYN: no earlier segments needed for tshark to be happy
    l4.writeUInt32BE(1, 4);
    l4.writeUInt16BE(65535, 14);
  } else l4.writeUInt16BE(8 + data.length, 4);
  const seg = Buffer.concat([l4, data]);
  const pseudo = Buffer.from([...src, ...dst, 0, proto, seg.length >> 8, seg.length & 0xff]);
  seg.writeUInt16BE(checksum(pseudo, seg) || 0xffff, proto === 6 ? 16 : 6);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + seg.length, 2);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = proto;
  ip.set(src, 12);
  ip.set(dst, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, seg]);
}

/** IPv6 + UDP with a valid checksum. */
function ipv6UdpPacket(payload: string): Buffer {
  const src = Buffer.from('fd000000000000000000000000000001', 'hex');
  const dst = Buffer.from('fd000000000000000000000000000002', 'hex');
  const seg = Buffer.concat([Buffer.alloc(8), Buffer.from(payload)]);
  seg.writeUInt16BE(50002, 0);
  seg.writeUInt16BE(50003, 2);
  seg.writeUInt16BE(seg.length, 4);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(seg.length);
  seg.writeUInt16BE(checksum(src, dst, len, Buffer.from([0, 0, 0, 17]), seg) || 0xffff, 6);
  const ip = Buffer.alloc(40);
  ip.writeUInt32BE(0x60000000, 0);
  ip.writeUInt16BE(seg.length, 4);
  ip[6] = 17;
  ip[7] = 64;
  src.copy(ip, 8);
  dst.copy(ip, 24);
  return Buffer.concat([ip, seg]);
}

/** Walk a little-endian nanosecond pcap: header fields and every record. */
function walkPcap(buf: Buffer): { snapLen: number; linkType: number; records: Array<{ sec: number; nsec: number; incl: number; orig: number; data: Buffer }> } {
  assert.equal(buf.readUInt32LE(0), 0xa1b23c4d);
  const records = [];
  let off = 24;
  while (off < buf.length) {
    assert.ok(buf.length - off >= 16, `truncated record header at ${off}`);
    const incl = buf.readUInt32LE(off + 8);
    const rec = { sec: buf.readUInt32LE(off), nsec: buf.readUInt32LE(off + 4), incl, orig: buf.readUInt32LE(off + 12), data: buf.subarray(off + 16, off + 16 + incl) };
    assert.equal(rec.data.length, incl, `record at ${off} overruns the file`);
    assert.ok(rec.nsec < 1e9);
    assert.ok(rec.orig >= incl);
    records.push(rec);
    off += 16 + incl;
  }
  return { snapLen: buf.readUInt32LE(16), linkType: buf.readUInt32LE(20), records };
}

const ROOT_BANNER = /^Running as user "[^"]*" and group "[^"]*"\. This could be dangerous\.\n?/m;
const haveTool = (name: string): boolean => spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
function run(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(ROOT_BANNER, '') };
}
function withTempDir<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-pcap-'));
  try {
    return fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
const TSHARK = haveTool('tshark') && haveTool('capinfos');

// ---------------------------------------------------------------- layout by hand

test('global header: nanosecond magic, version 2.4, snaplen, link type', () => {
  const h = pcapGlobalHeader({ linkType: LINKTYPE_RAW, snapLen: 262144 });
  assert.equal(h.length, 24);
  assert.deepEqual([...h.subarray(0, 4)], [0x4d, 0x3c, 0xb2, 0xa1]); // 0xa1b23c4d little-endian
  assert.equal(h.readUInt16LE(4), 2);
  assert.equal(h.readUInt16LE(6), 4);
  assert.equal(h.readInt32LE(8), 0); // thiszone
  assert.equal(h.readUInt32LE(12), 0); // sigfigs
  assert.equal(h.readUInt32LE(16), 262144);
  assert.equal(h.readUInt32LE(20), 101);
  assert.equal(pcapGlobalHeader({ linkType: LINKTYPE_ETHERNET, snapLen: 65535 }).readUInt32LE(20), 1);
  assert.throws(() => pcapGlobalHeader({ linkType: 101, snapLen: 0 }), RangeError);
});

test('record: ts_sec / ts_nsec split, incl_len, orig_len, truncation to snaplen', () => {
  const data = Buffer.from([1, 2, 3, 4, 5, 6, 7]);
  const r = pcapRecord({ timestampNs: 1_700_000_000_123_456_789n, data, originalLength: 9 });
  assert.equal(r.length, 16 + 7);
  assert.equal(r.readUInt32LE(0), 1_700_000_000);
  assert.equal(r.readUInt32LE(4), 123_456_789);
  assert.equal(r.readUInt32LE(8), 7);
  assert.equal(r.readUInt32LE(12), 9);
  assert.deepEqual([...r.subarray(16)], [...data]);
  const t = pcapRecord({ timestampNs: 999n, data, originalLength: 7, snapLen: 3 });
  assert.deepEqual([t.readUInt32LE(0), t.readUInt32LE(4), t.readUInt32LE(8), t.readUInt32LE(12)], [0, 999, 3, 7]);
  assert.deepEqual([...t.subarray(16)], [1, 2, 3]);
  assert.throws(() => pcapRecord({ timestampNs: 1n, data, originalLength: 6 }), RangeError);
  assert.throws(() => pcapRecord({ timestampNs: -1n, data, originalLength: 7 }), RangeError);
  assert.throws(() => pcapRecord({ timestampNs: 2n ** 32n * 1_000_000_000n, data, originalLength: 7 }), RangeError);
});

test('pcap writer: header first, snaplen truncation in the writer, batching and close', () => {
  const chunks: Buffer[] = [];
  let closed = 0;
  const sink: ByteSink = { write: (b) => void chunks.push(Buffer.from(b)), close: () => void closed++ };
  const w = createPcapWriter(sink, { linkType: LINKTYPE_RAW, snapLen: 100, batchPackets: 2 });
  assert.equal(chunks.length, 1);
  const mk = (n: number, extra = 0): CapturedPacket => ({ timestampNs: BigInt(n) * 1_000_000_001n, data: Buffer.alloc(n, 0xab), originalLength: n + extra, direction: 'inbound', comment: 'ignored in pcap' });
  w.writePacket(mk(150));
  assert.equal(chunks.length, 1);
  w.writePacket(mk(10, 5));
  assert.equal(chunks.length, 2);
  w.writePacket({ timestampNs: 5n, data: Buffer.alloc(20), originalLength: 0 }); // orig raised to len
  w.close();
  w.close();
  assert.equal(closed, 1);
  const f = walkPcap(Buffer.concat(chunks));
  assert.equal(f.snapLen, 100);
  assert.deepEqual(f.records.map((r) => [r.sec, r.nsec, r.incl, r.orig]), [[150, 150, 100, 150], [10, 10, 10, 15], [0, 5, 20, 20]]);
});

// ---------------------------------------------------------------- real tools

test('capinfos, tshark and tcpdump read the pcap: count, nanoseconds, truncation, clean expert info', { skip: TSHARK ? false : 'tshark/capinfos not installed' }, (t) => {
  withTempDir((dir) => {
    const file = path.join(dir, 'out.pcap');
    const snapLen = 60;
    const t0 = 1_700_000_000_000_000_001n;
    const pkts: CapturedPacket[] = [
      ipv4Packet([10, 0, 0, 1], [10, 0, 0, 2], 17, 'hello'),
      ipv4Packet([10, 0, 0, 1], [10, 0, 0, 2], 6, ''),
      ipv6UdpPacket('v6 udp'),
      ipv4Packet([10, 0, 0, 1], [10, 0, 0, 9], 17, 'x'.repeat(200)), // truncated to 60
    ].map((data, i) => ({ timestampNs: t0 + BigInt(i) * 1_000_000_000n, data, originalLength: data.length }));
    const w = createPcapWriter(fileSink(file), { linkType: LINKTYPE_RAW, snapLen });
    for (const p of pkts) w.writePacket(p);
    w.close();

    const ci = run('capinfos', ['-M', '-c', file]);
    assert.equal(ci.status, 0, ci.stderr);
    assert.equal(ci.stderr, '');
    assert.match(ci.stdout, /Number of packets:\s+4\n/);
    const info = run('capinfos', [file]).stdout;
    assert.match(info, /File type:\s+Wireshark\/tcpdump\/\.\.\. - nanosecond (lib)?pcap/); // "libpcap" before Wireshark 3.6
    assert.match(info, /File encapsulation:\s+Raw IP/);
    assert.match(info, /Packet size limit:\s+file hdr: 60 bytes/);
    assert.match(info, /File timestamp precision:\s+nanoseconds \(9\)/);

    const checks = ['-o', 'ip.check_checksum:TRUE', '-o', 'udp.check_checksum:TRUE', '-o', 'tcp.check_checksum:TRUE'];
    const fields = run('tshark', ['-r', file, ...checks, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.time_epoch', '-e', 'frame.cap_len', '-e', 'frame.len', '-e', 'ip.src', '-e', 'ipv6.dst', '-e', 'udp.length', '-e', 'tcp.flags.syn']);
    assert.equal(fields.status, 0, fields.stderr);
    assert.equal(fields.stderr, '');
    assert.deepEqual(fields.stdout.trimEnd().split('\n'), [
      '1700000000.000000001|33|33|10.0.0.1||13|',
      '1700000001.000000001|40|40|10.0.0.1|||1',
      '1700000002.000000001|54|54||fd00::2|14|',
      '1700000003.000000001|60|228|10.0.0.1||208|',
    ]);
    // The untruncated packets carry correct checksums and raise no warnings.
    const clean = run('tshark', ['-r', file, ...checks, '-c', '3', '-Y', '_ws.malformed || _ws.expert.severity >= note || ip.checksum.status == "Bad" || udp.checksum.status == "Bad" || tcp.checksum.status == "Bad"']);
    assert.equal(clean.status, 0, clean.stderr);
    assert.equal(clean.stdout, '');
    const good = run('tshark', ['-r', file, ...checks, '-c', '3', '-Y', 'udp.checksum.status == "Good" || tcp.checksum.status == "Good"', '-T', 'fields', '-e', 'frame.number']);
    assert.equal(good.stdout.trim(), '1\n2\n3');

    if (haveTool('tcpdump')) {
      const td = run('tcpdump', ['-nn', '-r', file]);
      assert.equal(td.status, 0, td.stderr);
      const lines = td.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 4);
      assert.match(lines[0], /IP 10\.0\.0\.1\.50000 > 10\.0\.0\.2\.50001: UDP, length 5/);
      assert.match(lines[2], /IP6 fd00::1\.50002 > fd00::2\.50003: UDP, length 6/);
    } else t.diagnostic('tcpdump not installed: tcpdump read-back skipped');
  });
});

test('fuzz: random sizes 0..70000 with snaplen 65535 → every record walks, tshark counts them', (t) => {
  let s = 0x1234567;
  const rnd = (): number => {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    return s / 0x1_0000_0000;
  };
  const snapLen = 65535;
  const chunks: Buffer[] = [];
  const w = createPcapWriter({ write: (b) => void chunks.push(Buffer.from(b)), close: () => {} }, { linkType: LINKTYPE_RAW, snapLen, batchPackets: 5 });
  const sizes: number[] = [];
  for (let i = 0; i < 40; i++) {
    const len = i < 4 ? [0, 65535, 65536, 70000][i] : Math.floor(rnd() * 70001);
    sizes.push(len);
    w.writePacket({ timestampNs: BigInt(i) * 999_999_999n, data: Buffer.alloc(len, i), originalLength: len });
  }
  w.close();
  const buf = Buffer.concat(chunks);
  const f = walkPcap(buf);
  assert.deepEqual(f.records.map((r) => [r.incl, r.orig]), sizes.map((n) => [Math.min(n, snapLen), n]));
  if (!TSHARK) {
    t.diagnostic('tshark/capinfos not installed: tshark read-back of the fuzz file skipped');
    return;
  }
  withTempDir((dir) => {
    const file = path.join(dir, 'fuzz.pcap');
    fs.writeFileSync(file, buf);
    const ts = run('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.cap_len', '-e', 'frame.len']);
    assert.equal(ts.status, 0, ts.stderr);
    assert.deepEqual(ts.stdout.trimEnd().split('\n'), sizes.map((n) => `${Math.min(n, snapLen)}\t${n}`));
    assert.match(run('capinfos', ['-M', '-c', file]).stdout, /Number of packets:\s+40\n/);
  });
});
