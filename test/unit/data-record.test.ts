// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../../src/native/layout.generated';
import { frameRecords } from './batch';
import { forEachRecord, type DataRecord, type TraceRecord } from '../../src/kernel/records';
import { eventLine } from '../../src/render/events';

/** A RECORD_DATA as the kernel writes it: the struct, then cap_len bytes (the ring buffer's own length may be longer). */
function dataRecord(opts: { offset: bigint; len: number; bytes: Buffer; flags?: number; direction?: number; source?: number; l7Class?: number; slack?: number }): Buffer {
  const r = Buffer.alloc(L.data_record.size + opts.bytes.length + (opts.slack ?? 0));
  r.writeUInt16LE(L.RECORD_DATA, L.record_header.type);
  r.writeUInt32LE(4242, L.record_header.tgid);
  r.writeBigUInt64LE(2_000_000n, L.record_header.ts_ns);
  r.writeBigUInt64LE(99n, L.record_header.start_time_ns);
  const k = L.data_record.key;
  r.writeBigUInt64LE(77n, k + L.flow_key.cookie);
  r.writeUInt32LE(4242, k + L.flow_key.tgid);
  r.writeUInt16LE(8080, k + L.flow_key.rport);
  r.writeUInt8(2, k + L.flow_key.family);
  r.writeUInt8(6, k + L.flow_key.proto);
  r.set([127, 0, 0, 1], k + L.flow_key.raddr);
  r.writeBigUInt64LE(99n, k + L.flow_key.start_time_ns);
  r.writeBigUInt64LE(opts.offset, L.data_record.offset);
  r.writeUInt32LE(opts.len, L.data_record.len);
  r.writeUInt32LE(opts.bytes.length, L.data_record.cap_len);
  r.writeUInt32LE(4243, L.data_record.tid);
  r.writeUInt8(opts.direction ?? 0, L.data_record.direction);
  r.writeUInt8(opts.source ?? L.DATA_SOURCE_SOCKET, L.data_record.source);
  r.writeUInt8(opts.flags ?? 0, L.data_record.flags);
  r.writeUInt8(opts.l7Class ?? L.L7_HTTP1, L.data_record.l7_class);
  opts.bytes.copy(r, L.data_record.size);
  return r;
}

function decodeAll(ab: ArrayBuffer): TraceRecord[] {
  const out: TraceRecord[] = [];
  forEachRecord(ab, (r) => out.push(r));
  return out;
}

test('a data record decodes its flow, stream position, direction, class and the bytes that follow it', () => {
  const payload = Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
  const [rec] = decodeAll(frameRecords([dataRecord({ offset: 5_000_000_000n, len: 1000, bytes: payload, direction: 1 })]));
  assert.equal(rec.type, 'data');
  const d = rec as DataRecord;
  assert.equal(d.tgid, 4242);
  assert.equal(d.tid, 4243);
  assert.equal(d.startTime, 99n);
  assert.equal(d.key.cookie, 77n);
  assert.equal(d.key.remoteAddr, '127.0.0.1');
  assert.equal(d.key.remotePort, 8080);
  assert.equal(d.offset, 5_000_000_000);
  assert.equal(d.length, 1000);
  assert.equal(d.direction, 'rx');
  assert.equal(d.source, 'socket');
  assert.equal(d.kernelClass, 'http1');
  assert.deepEqual(d.flags, []);
  assert.ok(Buffer.from(d.bytes).equals(payload));
});

test('a data record\'s bytes stop at cap_len, never at the ring buffer record\'s padded end', () => {
  const [rec] = decodeAll(frameRecords([dataRecord({ offset: 0n, len: 3, bytes: Buffer.from('abc'), slack: 13 })]));
  assert.equal((rec as DataRecord).bytes.length, 3);
});

test('a truncated data record yields only the bytes it holds', () => {
  const full = dataRecord({ offset: 0n, len: 20, bytes: Buffer.alloc(20, 0x41) });
  const [rec] = decodeAll(frameRecords([full.subarray(0, L.data_record.size + 5)]));
  assert.equal((rec as DataRecord).bytes.length, 5);
});

test('flags name why bytes are missing; TLS plaintext records say so', () => {
  const records = decodeAll(frameRecords([
    dataRecord({ offset: 10n, len: 65536, bytes: Buffer.alloc(0), flags: L.DATA_F_NOT_COPIED }),
    dataRecord({ offset: 10n, len: 4, bytes: Buffer.alloc(0), flags: L.DATA_F_COPY_FAILED | L.DATA_F_NO_BUFFER }),
    dataRecord({ offset: 0n, len: 2, bytes: Buffer.from('hi'), source: L.DATA_SOURCE_TLS, l7Class: L.L7_UNKNOWN }),
  ])) as DataRecord[];
  assert.deepEqual(records.map((r) => r.flags), [['notCopied'], ['copyFailed', 'noBuffer'], []]);
  assert.deepEqual(records.map((r) => r.source), ['socket', 'socket', 'tls']);
  assert.equal(records[2].kernelClass, 'unknown');
});

test('the event stream writes a data record as one line with its bytes in base64', () => {
  const payload = Buffer.from([0, 1, 2, 250, 255, 0x0a]);
  const [rec] = decodeAll(frameRecords([dataRecord({ offset: 7n, len: 6, bytes: payload, l7Class: L.L7_DNS })]));
  const line = eventLine(rec, 1_000_000);
  assert.ok(!line.includes('\n'));
  const e = JSON.parse(line);
  assert.deepEqual(e, {
    type: 'data', tMs: 1, pid: 4242, startTimeNs: 99, socket: '77', proto: 'tcp', remoteAddr: '127.0.0.1', remotePort: 8080,
    tid: 4243, direction: 'tx', source: 'socket', offset: 7, length: 6, kernelClass: 'dns', flags: [], base64: payload.toString('base64'),
  });
});
