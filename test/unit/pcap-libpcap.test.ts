// SPDX-License-Identifier: MIT
// src/pcap/libpcap.ts without a kernel: batch decoding, SLL2 direction, and the adapter driven by a fake
// LibpcapCapture into a real pcapng file that tshark reads back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { DEFAULT_LIBPCAP_BUFFER_BYTES, decodeLibpcapBatch, sll2Direction, sll2InterfaceIndex, startLibpcapRun } from '../../src/pcap/libpcap';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2 } from '../../src/pcap/pcapng';
import { fileSink } from '../../src/pcap/writer';
import type { LibpcapCapture, LibpcapCaptureOptions, LibpcapCaptureStats } from '../../src/native';

interface RawPacket {
  tsNs: bigint;
  data: Uint8Array;
  origLen?: number;
}

/** A batch as the addon frames it. */
function encodeBatch(packets: RawPacket[]): ArrayBuffer {
  const size = packets.reduce((n, p) => n + 16 + ((p.data.length + 7) & ~7), 0);
  const out = Buffer.alloc(size);
  let at = 0;
  for (const p of packets) {
    out.writeBigUInt64LE(p.tsNs, at);
    out.writeUInt32LE(p.data.length, at + 8);
    out.writeUInt32LE(p.origLen ?? p.data.length, at + 12);
    out.set(p.data, at + 16);
    at += 16 + ((p.data.length + 7) & ~7);
  }
  return out.buffer.slice(out.byteOffset, out.byteOffset + out.length);
}

/** UDP/IPv4 datagram (checksums zero: tshark does not verify them by default). */
function udp4(payload: number): Buffer {
  const ip = Buffer.alloc(28 + payload);
  ip[0] = 0x45;
  ip.writeUInt16BE(28 + payload, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip.set([10, 0, 0, 1], 12);
  ip.set([10, 0, 0, 2], 16);
  ip.writeUInt16BE(40000, 20);
  ip.writeUInt16BE(9, 22);
  ip.writeUInt16BE(8 + payload, 24);
  return ip;
}

function sll2(packetType: number, ifindex: number, l3: Buffer): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(0x0800, 0);
  h.writeUInt32BE(ifindex, 4);
  h.writeUInt16BE(1, 8); // ARPHRD_ETHER
  h[10] = packetType;
  h[11] = 6;
  return Buffer.concat([h, l3]);
}

function ethernet(l3: Buffer): Buffer {
  const h = Buffer.alloc(14);
  h.writeUInt16BE(0x0800, 12);
  return Buffer.concat([h, l3]);
}

test('decodeLibpcapBatch: timestamps, lengths and bytes of every packet; padding skipped', () => {
  const a = Uint8Array.from([1, 2, 3]);
  const b = new Uint8Array(8).fill(9);
  const out = decodeLibpcapBatch(encodeBatch([{ tsNs: 1_700_000_000_123_456_789n, data: a, origLen: 1500 }, { tsNs: 5n, data: b }, { tsNs: 6n, data: new Uint8Array(0) }]));
  assert.equal(out.length, 3);
  assert.equal(out[0].timestampNs, 1_700_000_000_123_456_789n);
  assert.deepEqual([...out[0].data], [1, 2, 3]);
  assert.equal(out[0].originalLength, 1500);
  assert.deepEqual([...out[1].data], [...b]);
  assert.equal(out[2].data.length, 0);
  assert.deepEqual(decodeLibpcapBatch(new ArrayBuffer(0)), []);
});

test('decodeLibpcapBatch refuses a batch whose packet runs past the end', () => {
  const batch = Buffer.from(encodeBatch([{ tsNs: 1n, data: new Uint8Array(8) }]));
  batch.writeUInt32LE(64, 8);
  assert.throws(() => decodeLibpcapBatch(batch.buffer.slice(batch.byteOffset, batch.byteOffset + batch.length)), /runs past the end/);
  assert.throws(() => decodeLibpcapBatch(new ArrayBuffer(8)), /truncated header/);
});

test('sll2Direction: PACKET_OUTGOING is outbound, host/broadcast/multicast/otherhost inbound, others unknown', () => {
  const l3 = udp4(1);
  assert.equal(sll2Direction(sll2(4, 2, l3)), 'outbound');
  for (const t of [0, 1, 2, 3]) assert.equal(sll2Direction(sll2(t, 2, l3)), 'inbound');
  assert.equal(sll2Direction(sll2(5, 2, l3)), undefined);
  assert.equal(sll2Direction(new Uint8Array(10)), undefined);
  assert.equal(sll2InterfaceIndex(sll2(0, 0x01020304, l3)), 0x01020304);
});

class FakeCapture implements LibpcapCapture {
  readonly device: string;
  stopped = false;
  closed = false;
  constructor(
    readonly options: LibpcapCaptureOptions,
    readonly onBatch: (b: ArrayBuffer) => void,
    readonly linkType: number,
    private readonly stats_: LibpcapCaptureStats,
  ) {
    this.device = options.device;
  }
  async stop(): Promise<LibpcapCaptureStats> {
    this.stopped = true;
    return this.stats_;
  }
  close(): void {
    this.closed = true;
  }
  stats(): LibpcapCaptureStats | null {
    return this.stopped ? this.stats_ : null;
  }
}

const haveTshark = spawnSync('sh', ['-c', 'command -v tshark']).status === 0;

test('two sources become two interfaces (SLL2 with direction, Ethernet without) that tshark reads back', { skip: haveTshark ? false : 'tshark not installed' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-pcap-libpcap-'));
  try {
    const file = path.join(dir, 'live.pcapng');
    const fakes: FakeCapture[] = [];
    const run = startLibpcapRun(
      [
        { device: 'any', netnsPath: '/run/netns/x', snaplen: 262144, linkType: LINKTYPE_LINUX_SLL2, description: 'netns x' },
        { device: 'veth0', snaplen: 100, name: 'veth0 in x', bufferSize: 1 << 20 },
      ],
      {
        sink: fileSink(file),
        userAppl: 'proctap test',
        open: (options, onBatch) => {
          assert.equal('name' in options || 'description' in options, false, 'IDB fields are not capture options');
          const isAny = options.device === 'any';
          assert.equal(options.bufferSize, isAny ? DEFAULT_LIBPCAP_BUFFER_BYTES : 1 << 20, 'default ring size unless the source sets one');
          const fake = new FakeCapture(options, onBatch, isAny ? LINKTYPE_LINUX_SLL2 : LINKTYPE_ETHERNET, {
            received: isAny ? 3 : 2, dropped: isAny ? 1 : 0, ifDropped: 0, delivered: isAny ? 3 : 2,
          });
          fakes.push(fake);
          return fake;
        },
      },
    );
    assert.deepEqual(run.interfaces, [{ device: 'any', linkType: 276 }, { device: 'veth0', linkType: 1 }]);
    const t0 = 1_700_000_000_000_000_000n;
    fakes[0].onBatch(encodeBatch([{ tsNs: t0, data: sll2(4, 2, udp4(10)) }, { tsNs: t0 + 1n, data: sll2(0, 2, udp4(20)) }]));
    fakes[1].onBatch(encodeBatch([{ tsNs: t0 + 2n, data: ethernet(udp4(300)).subarray(0, 100), origLen: 14 + 28 + 300 }]));
    fakes[0].onBatch(encodeBatch([{ tsNs: t0 + 3n, data: sll2(1, 3, udp4(0)) }]));
    fakes[1].onBatch(encodeBatch([{ tsNs: t0 + 4n, data: ethernet(udp4(5)) }]));
    const result = await run.stop();
    assert.deepEqual(result.map((r) => r.written), [3, 2]);
    assert.ok(fakes.every((f) => f.stopped));

    const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_id', '-e', 'frame.encap_type', '-e', 'frame.packet_flags_direction', '-e', 'frame.len', '-e', 'frame.cap_len', '-e', 'udp.length'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const rows = r.stdout.trim().split('\n').map((l) => l.split('|'));
    // interface, direction (0x1 inbound, 0x2 outbound, empty: unknown), wire length, captured length, UDP length
    assert.deepEqual(rows.map((x) => [x[0], x[2], x[3], x[4], x[5]]), [
      ['0', '0x00000002', '58', '58', '18'],
      ['0', '0x00000001', '68', '68', '28'],
      ['1', '', '342', '100', '308'],
      ['0', '0x00000001', '48', '48', '8'],
      ['1', '', '47', '47', '13'],
    ]);
    const stats = spawnSync('tshark', ['-r', file, '-q', '-z', 'io,stat,0'], { encoding: 'utf8' });
    assert.equal(stats.status, 0);
    const capinfos = spawnSync('capinfos', ['-I', file], { encoding: 'utf8' });
    if (capinfos.status === 0) {
      assert.match(capinfos.stdout, /Encapsulation = Linux cooked-mode capture v2/);
      assert.match(capinfos.stdout, /Encapsulation = Ethernet/);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a source that fails to open closes the ones already open and rethrows', () => {
  const opened: FakeCapture[] = [];
  assert.throws(
    () =>
      startLibpcapRun([{ device: 'a', snaplen: 100 }, { device: 'b', snaplen: 100 }], {
        sink: { write() {}, close() {} },
        userAppl: 't',
        open: (options, onBatch) => {
          if (options.device === 'b') throw Object.assign(new Error('pcap_activate b: No such device exists'), { code: 'ENODEV' });
          const f = new FakeCapture(options, onBatch, 1, { received: 0, dropped: 0, ifDropped: 0, delivered: 0 });
          opened.push(f);
          return f;
        },
      }),
    /No such device/,
  );
  assert.equal(opened.length, 1);
  assert.equal(opened[0].closed, true);
});

test('options are checked before anything is opened', () => {
  const open = (): never => assert.fail('must not open');
  const base = { sink: { write() {}, close() {} }, userAppl: 't', open };
  assert.throws(() => startLibpcapRun([], base), RangeError);
  assert.throws(() => startLibpcapRun([{ device: '', snaplen: 100 }], base), TypeError);
  assert.throws(() => startLibpcapRun([{ device: 'x', snaplen: 0 }], base), RangeError);
  assert.throws(() => startLibpcapRun([{ device: 'x', snaplen: 300000 }], base), RangeError);
  assert.throws(() => startLibpcapRun([{ device: 'x', snaplen: 10 }, { device: 'y', snaplen: 10 }], { ...base, format: 'pcap' }), /one interface/);
});

test('holdMs: batches wait, annotate() names each packet when written, stop() writes what is held', { skip: haveTshark ? false : 'tshark not installed' }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-pcap-libpcap-'));
  try {
    const file = path.join(dir, 'held.pcapng');
    let fake: FakeCapture | undefined;
    let known = false; // what annotate() knows changes while the batches are held
    const seen: Array<[number, string | undefined]> = [];
    const run = startLibpcapRun([{ device: 'veth0', snaplen: 262144 }], {
      sink: fileSink(file),
      userAppl: 'proctap test',
      holdMs: 60_000,
      annotate: (p, linkType, direction) => {
        seen.push([linkType, direction]);
        return known ? `pid 7 (${p.data.length} bytes)` : 'owner unknown';
      },
      open: (options, onBatch) => (fake = new FakeCapture(options, onBatch, LINKTYPE_ETHERNET, { received: 2, dropped: 0, ifDropped: 0, delivered: 2 })),
    });
    const t0 = 1_700_000_000_000_000_000n;
    fake!.onBatch(encodeBatch([{ tsNs: t0, data: ethernet(udp4(10)) }]));
    fake!.onBatch(encodeBatch([{ tsNs: t0 + 1n, data: ethernet(udp4(20)) }]));
    assert.deepEqual(seen, [], 'nothing written while held');
    known = true;
    const result = await run.stop();
    assert.deepEqual(result.map((r) => r.written), [2]);
    assert.deepEqual(seen, [[1, undefined], [1, undefined]], 'Ethernet: direction unknown to the capture');
    const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.comment'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n'), ['pid 7 (52 bytes)', 'pid 7 (62 bytes)'], 'in arrival order, named when written');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
