// SPDX-License-Identifier: MIT
// The detail-mode fast paths (shared flow keys, per-call NDJSON lines) give what the general path gives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../../src/native/layout.generated';
import { frameRecords } from './batch';
import { forEachRecord, type TraceRecord } from '../../src/kernel/records';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EVENT_BUFFER_BYTES, eventLine, eventOf, openEventStream } from '../../src/render/events';

function callRecord(cookie: bigint, tgid: number, proto: number, raddr: number[], rport: number, bytes: number, direction: number, ts: bigint, startTime = 0n): Buffer {
  const b = Buffer.alloc(L.call_record.size);
  b.writeUInt16LE(L.RECORD_CALL, L.record_header.type);
  b.writeUInt32LE(tgid, L.record_header.tgid);
  b.writeBigUInt64LE(ts, L.record_header.ts_ns);
  b.writeBigUInt64LE(startTime, L.record_header.start_time_ns);
  const k = L.call_record.key;
  b.writeBigUInt64LE(cookie, k + L.flow_key.cookie);
  b.writeUInt32LE(tgid, k + L.flow_key.tgid);
  b.writeBigUInt64LE(startTime, k + L.flow_key.start_time_ns);
  b.writeUInt16LE(rport, k + L.flow_key.rport);
  b.writeUInt8(raddr.length === 4 ? 2 : 10, k + L.flow_key.family);
  b.writeUInt8(proto, k + L.flow_key.proto);
  b.set(raddr, k + L.flow_key.raddr);
  b.writeUInt32LE(tgid + 1, L.call_record.tid);
  b.writeInt32LE(bytes, L.call_record.bytes);
  b.writeUInt8(direction, L.call_record.direction);
  return b;
}

function decode(records: Buffer[]): TraceRecord[] {
  const out: TraceRecord[] = [];
  forEachRecord(frameRecords(records), (r) => out.push(r));
  return out;
}

test('call records of one flow share one key; any differing key byte (same cache slot) gives its own key', () => {
  const lo = [127, 0, 0, 1];
  const records = decode([
    callRecord(5n, 10, 17, lo, 53, 64, 0, 1000n),
    callRecord(5n, 10, 17, lo, 53, 32, 1, 2000n),
    callRecord(5n + 64n, 10, 17, lo, 53, 1, 0, 3000n), // same slot (low cookie bits), other socket
    callRecord(5n, 11, 17, lo, 53, 1, 0, 4000n), // other process
    callRecord(5n, 10, 17, [127, 0, 0, 2], 53, 1, 0, 5000n), // other remote address
    callRecord(5n, 10, 17, lo, 54, 1, 0, 6000n), // other remote port
    callRecord(5n, 10, 17, lo, 53, 7, 0, 7000n),
    callRecord(5n, 10, 17, lo, 53, 1, 0, 8000n, 99n), // the same pid, another process (PID reuse)
  ]);
  const keys = records.map((r) => (r.type === 'call' ? r.key : null));
  assert.equal(keys[0], keys[1]);
  assert.deepEqual(keys.map((k) => k?.id), [
    '5/10/0/17/127.0.0.1/53', '5/10/0/17/127.0.0.1/53', '69/10/0/17/127.0.0.1/53', '5/11/0/17/127.0.0.1/53',
    '5/10/0/17/127.0.0.2/53', '5/10/0/17/127.0.0.1/54', '5/10/0/17/127.0.0.1/53', '5/10/99/17/127.0.0.1/53',
  ]);
  assert.deepEqual(records.map((r) => (r.type === 'call' ? [r.bytes, r.direction, r.tsNs] : null)), [
    [64, 'tx', 1000], [32, 'rx', 2000], [1, 'tx', 3000], [1, 'tx', 4000], [1, 'tx', 5000], [1, 'tx', 6000], [7, 'tx', 7000], [1, 'tx', 8000],
  ]);
});

test('the NDJSON line of a call record is the JSON of its event object, field for field and in order', () => {
  const records = decode([
    callRecord(123456789012n, 42, 6, [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 443, 1448, 1, 1_234_567_891n),
    callRecord(7n, 43, 17, [127, 0, 0, 1], 5353, 0, 0, 1_000_000_000n),
    callRecord(8n, 44, 6, [127, 0, 0, 1], 80, 10, 0, 1_000_000_500n, 123_456_789n),
  ]);
  const originNs = 1_000_000_000;
  for (const r of [...records, ...records]) {
    const line = eventLine(r, originNs);
    assert.equal(line, JSON.stringify(eventOf(r, originNs)));
    assert.deepEqual(JSON.parse(line), eventOf(r, originNs));
  }
  assert.equal(eventLine(records[0], originNs),
    '{"type":"call","tMs":234.568,"pid":42,"socket":"123456789012","proto":"tcp","remoteAddr":"2001:db8::1","remotePort":443,"tid":43,"direction":"rx","bytes":1448}');
  assert.match(eventLine(records[2], originNs), /"pid":44,"startTimeNs":123456789,"socket":"8"/);
  const exit: TraceRecord = { type: 'exit', tgid: 9, tsNs: originNs + 5_000_000, startTime: 0n, waitStatus: 256 };
  assert.equal(eventLine(exit, originNs), JSON.stringify(eventOf(exit, originNs)));
});

test('the event stream writes, byte for byte, JSON.stringify(eventOf(record)) per line: random calls, other records, a line longer than its buffer', () => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const originNs = 5_000_000_000;
  const addrs = [[127, 0, 0, 1], [10, 242, 0, 1], [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]];
  const records: TraceRecord[] = [];
  for (let i = 0; i < 3000; i++) {
    // times before and after the origin, exact to the µs or not; pids, tids, sizes of every width
    const ts = BigInt(Math.max(0, Math.floor(originNs + (rand() - 0.1) * 1e12 * (rand() < 0.5 ? 1 : 1e-6))));
    const start = rand() < 0.3 ? 0n : BigInt(Math.floor(rand() * 2 ** 50));
    const bytes = [0, 1, 9, 10, 99, 100, 1448, 65536, 2 ** 31 - 1][Math.floor(rand() * 9)];
    records.push(...decode([callRecord(BigInt(Math.floor(rand() * 2 ** 53)), 1 + Math.floor(rand() * 4194303), rand() < 0.5 ? 6 : 17,
      addrs[Math.floor(rand() * addrs.length)], Math.floor(rand() * 65536), bytes, rand() < 0.5 ? 0 : 1, ts, start)]));
  }
  const big: TraceRecord = { type: 'exec', tgid: 3, tsNs: originNs + 1, startTime: 7n, ppid: 1, matched: false, comm: 'x', filename: '/bin/x', argv: ['x', 'é'.repeat(200_000)], argsTruncated: false };
  const exit: TraceRecord = { type: 'exit', tgid: 9, tsNs: originNs - 1500, startTime: 0n, waitStatus: 256 };
  records.splice(1000, 0, big, exit);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proctap-events-'));
  try {
    const file = path.join(dir, 'e.ndjson');
    const stream = openEventStream(fs.openSync(file, 'w'), () => originNs);
    for (const r of records) stream.write(r);
    stream.close();
    const expected = records.map((r) => `${JSON.stringify(eventOf(r, originNs))}\n`).join('');
    assert.ok(EVENT_BUFFER_BYTES < Buffer.byteLength(JSON.stringify(eventOf(big, originNs))), 'one line is longer than the buffer');
    assert.equal(fs.readFileSync(file, 'utf8'), expected);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
