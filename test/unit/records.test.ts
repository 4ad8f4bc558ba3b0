// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../../src/native/layout.generated';
import { frameRecords } from './batch';
import { forEachRecord, splitArgs, type TraceRecord } from '../../src/kernel/records';


function header(size: number, type: number, tgid: number, ts: bigint): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt16LE(type, L.record_header.type);
  b.writeUInt32LE(tgid, L.record_header.tgid);
  b.writeBigUInt64LE(ts, L.record_header.ts_ns);
  return b;
}

function decodeAll(ab: ArrayBuffer): TraceRecord[] {
  const out: TraceRecord[] = [];
  forEachRecord(ab, (r) => out.push(r));
  return out;
}

test('a flow record decodes key, counters and addresses (IPv6 compressed, IPv4-mapped shown as IPv4)', () => {
  const r = header(L.flow_record.size, L.RECORD_FLOW_UPDATE, 4242, 123456789n);
  const k = L.flow_record.key;
  r.writeBigUInt64LE(77n, k + L.flow_key.cookie);
  r.writeUInt32LE(4242, k + L.flow_key.tgid);
  r.writeUInt16LE(8080, k + L.flow_key.rport);
  r.writeUInt8(10, k + L.flow_key.family);
  r.writeUInt8(6, k + L.flow_key.proto);
  r[k + L.flow_key.raddr + 15] = 1; // ::1
  const c = L.flow_record.counters;
  r.writeBigUInt64LE(5_000_000_000n, c + L.flow_counters.tx_bytes);
  r.writeBigUInt64LE(20n, c + L.flow_counters.rx_bytes);
  r.writeBigUInt64LE(3n, c + L.flow_counters.tx_calls);
  r.writeBigUInt64LE(2n, c + L.flow_counters.rx_calls);
  r.fill(0, L.flow_record.laddr, L.flow_record.laddr + 10);
  r[L.flow_record.laddr + 10] = 0xff;
  r[L.flow_record.laddr + 11] = 0xff;
  r.set([127, 0, 0, 1], L.flow_record.laddr + 12);
  r.writeUInt16LE(51000, L.flow_record.lport);
  const [rec] = decodeAll(frameRecords([r]));
  assert.equal(rec.type, 'flow');
  if (rec.type !== 'flow') return;
  assert.equal(rec.isNew, false);
  assert.equal(rec.tgid, 4242);
  assert.equal(rec.tsNs, 123456789);
  assert.equal(rec.key.remoteAddr, '::1');
  assert.equal(rec.key.remotePort, 8080);
  assert.equal(rec.key.proto, 6);
  assert.equal(rec.key.cookie, 77n);
  assert.equal(rec.key.raw.length, L.flow_key.size);
  assert.deepEqual(rec.counters, { txBytes: 5_000_000_000, rxBytes: 20, txCalls: 3, rxCalls: 2 });
  assert.equal(rec.localAddr, '127.0.0.1');
  assert.equal(rec.localPort, 51000);
});

test('fork, exec and exit records decode; several records in one batch keep their order', () => {
  const fork = header(L.fork_record.size, L.RECORD_FORK, 101, 1n);
  fork.writeUInt32LE(100, L.fork_record.ppid);
  fork.write('python3', L.fork_record.comm);
  const exec = header(L.exec_record.size, L.RECORD_EXEC, 101, 2n);
  exec.write('curl', L.exec_record.comm);
  exec.write('/usr/bin/curl', L.exec_record.filename);
  const args = Buffer.from('curl\0-s\0http://[::1]:8080/\0');
  args.copy(exec, L.exec_record.args);
  exec.writeUInt32LE(args.length, L.exec_record.args_len);
  const exit = header(L.exit_record.size, L.RECORD_EXIT, 101, 3n);
  exit.writeUInt32LE(3 << 8, L.exit_record.exit_code);
  const records = decodeAll(frameRecords([fork, exec, exit]));
  assert.deepEqual(records.map((r) => r.type), ['fork', 'exec', 'exit']);
  const [f, e, x] = records;
  assert.ok(f.type === 'fork' && f.ppid === 100 && f.comm === 'python3');
  assert.ok(e.type === 'exec');
  assert.deepEqual(e.type === 'exec' && e.argv, ['curl', '-s', 'http://[::1]:8080/']);
  assert.equal(e.type === 'exec' && e.filename, '/usr/bin/curl');
  assert.ok(x.type === 'exit' && x.waitStatus === 768);
});

test('a batch cut short is an error, not a silent partial read', () => {
  const r = header(L.exit_record.size, L.RECORD_EXIT, 1, 1n);
  const ab = frameRecords([r]);
  assert.throws(() => forEachRecord(ab.slice(0, ab.byteLength - 8), () => {}), RangeError);
});

test('unknown record types are skipped but counted', () => {
  const r = header(L.record_header.size, 200, 1, 1n);
  let n = 0;
  assert.equal(forEachRecord(frameRecords([r]), () => n++), 1);
  assert.equal(n, 0);
});

test('argv splitting keeps empty arguments in the middle', () => {
  assert.deepEqual(splitArgs(Buffer.from('a\0\0b\0')), ['a', '', 'b']);
  assert.deepEqual(splitArgs(Buffer.from('')), []);
  assert.deepEqual(splitArgs(Buffer.from('truncat')), ['truncat']);
});

test('a DNS record carries the packet bytes it says it captured, never the padding after them', () => {
  const packet = Buffer.from([0x45, 0, 0, 30, 1, 2, 3, 4, 5]);
  const r = header(L.dns_record.size + L.PROCTAP_DNS_SNAPLEN, L.RECORD_DNS, 77, 5n);
  r.writeBigUInt64LE(9n, L.dns_record.cookie);
  r.writeUInt32LE(300, L.dns_record.orig_len);
  r.writeUInt32LE(packet.length, L.dns_record.cap_len);
  packet.copy(r, L.dns_record.size);
  const [rec] = decodeAll(frameRecords([r]));
  assert.ok(rec.type === 'dns');
  if (rec.type !== 'dns') return;
  assert.deepEqual([rec.tgid, rec.tsNs, rec.cookie, rec.originalLength], [77, 5, 9n, 300]);
  assert.deepEqual(Buffer.from(rec.data), packet);
  // a cap_len larger than the record is bounded by the record
  r.writeUInt32LE(1 << 20, L.dns_record.cap_len);
  const [big] = decodeAll(frameRecords([r]));
  assert.equal(big.type === 'dns' && big.data.length, L.PROCTAP_DNS_SNAPLEN);
});
