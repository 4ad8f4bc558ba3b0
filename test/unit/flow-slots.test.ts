// SPDX-License-Identifier: MIT
// The flow_slots array beside the flows hash: a flow's counters are the sum of its entry and its slot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../../src/native/layout.generated';
import { decodeFlowValue, type MapEntries } from '../../src/kernel/maps';
import { decodeFlowKey } from '../../src/kernel/records';
import { decodeFlowSlot, flowSlotIndex, mergeFlowSlots, slotFlowOf, withSlot } from '../../src/kernel/slots';

function keyBytes(cookie: bigint, tgid: number): Buffer {
  const k = Buffer.alloc(L.flow_key.size);
  k.writeBigUInt64LE(cookie, L.flow_key.cookie);
  k.writeUInt32LE(tgid, L.flow_key.tgid);
  k.writeUInt16LE(5201, L.flow_key.rport);
  k.writeUInt8(2, L.flow_key.family);
  k.writeUInt8(6, L.flow_key.proto);
  k.set([127, 0, 0, 1], L.flow_key.raddr);
  k.writeBigUInt64LE(999n, L.flow_key.start_time_ns);
  return k;
}

function value(tx: number, txCalls: number, bucket: number, firstNs: number, lastNs: number): Buffer {
  const v = Buffer.alloc(L.flow_value.size);
  v.writeBigUInt64LE(BigInt(tx), L.flow_value.counters + L.flow_counters.tx_bytes);
  v.writeBigUInt64LE(BigInt(txCalls), L.flow_value.counters + L.flow_counters.tx_calls);
  v.writeUInt32LE(txCalls, L.flow_value.tx_sizes + 4 * bucket);
  v.writeBigUInt64LE(BigInt(firstNs), L.flow_value.first_ns);
  v.writeBigUInt64LE(BigInt(lastNs), L.flow_value.last_ns);
  v.set([127, 0, 0, 1], L.flow_value.laddr);
  v.writeUInt16LE(40000, L.flow_value.lport);
  return v;
}

function slot(key: Buffer, v: Buffer, state: number): Buffer {
  const s = Buffer.alloc(L.flow_slot.size);
  s.writeBigUInt64LE(BigInt(state), L.flow_slot.state);
  key.copy(s, L.flow_slot.key);
  v.copy(s, L.flow_slot.value);
  return s;
}

const keyOf = (b: Buffer) => decodeFlowKey(new DataView(b.buffer, b.byteOffset, b.byteLength), b, 0);

test('slot index: the kernel\'s Fibonacci hash of the cookie, within the array', () => {
  const seen = new Set<number>();
  for (let c = 1n; c <= 4096n; c++) {
    const i = flowSlotIndex(c);
    assert.ok(Number.isInteger(i) && i >= 0 && i < L.PROCTAP_FLOW_SLOTS);
    seen.add(i);
  }
  assert.ok(seen.size > 2000, `sequential cookies spread over the slots (${seen.size})`);
  // (cookie * 0x9E3779B97F4A7C15 mod 2^64) >> 52, worked by hand for cookie 1
  assert.equal(flowSlotIndex(1n), 0x9e3);
});

test('a flow is its entry plus its slot: counters, sizes, the later last_ns; start and local address from the entry', () => {
  const k = keyBytes(77n, 4242);
  const entry = decodeFlowValue(keyOf(k), value(640, 10, 7, 1000, 2000));
  const s = slotFlowOf(keyOf(k), slot(k, value(64000, 1000, 7, 0, 9000), L.FLOW_SLOT_READY));
  assert.ok(s);
  const sum = withSlot(entry, s);
  assert.deepEqual(sum.counters, { txBytes: 64640, rxBytes: 0, txCalls: 1010, rxCalls: 0 });
  assert.equal(sum.sizes.tx[7], 1010);
  assert.equal(sum.sizes.tx.reduce((a, b) => a + b, 0), 1010);
  assert.deepEqual([sum.firstNs, sum.lastNs, sum.localAddr, sum.localPort], [1000, 9000, '127.0.0.1', 40000]);
  assert.deepEqual(withSlot(entry, null), entry);
});

test('a slot counts only for its own key, and only once READY', () => {
  const k = keyBytes(77n, 4242);
  const other = keyBytes(77n, 4243); // same socket, another process (after fork)
  const v = value(64, 1, 7, 0, 5);
  assert.equal(slotFlowOf(keyOf(other), slot(k, v, L.FLOW_SLOT_READY)), null);
  assert.equal(slotFlowOf(keyOf(k), slot(k, v, 1)), null, 'being claimed');
  assert.equal(slotFlowOf(keyOf(k), slot(k, v, 0)), null, 'free');
  assert.equal(decodeFlowSlot(slot(Buffer.alloc(L.flow_key.size), v, L.FLOW_SLOT_READY)), null, 'no cookie');
  assert.equal(slotFlowOf(keyOf(k), null), null);
});

test('dump: every entry with its slot; a slot whose entry was taken already adds nothing', () => {
  const a = keyBytes(1n, 10), b = keyBytes(2n, 20), gone = keyBytes(3n, 30);
  const flows = [decodeFlowValue(keyOf(a), value(100, 1, 7, 1, 2)), decodeFlowValue(keyOf(b), value(200, 2, 7, 1, 2))];
  const slots = [slot(a, value(1000, 10, 7, 0, 50), L.FLOW_SLOT_READY), slot(gone, value(5, 5, 7, 0, 50), L.FLOW_SLOT_READY), Buffer.alloc(L.flow_slot.size)];
  const dump: MapEntries = { count: slots.length, keySize: 4, valueSize: L.flow_slot.size, keys: Buffer.alloc(4 * slots.length), values: Buffer.concat(slots) };
  const merged = mergeFlowSlots(flows, dump);
  assert.deepEqual(merged.map((f) => [f.key.tgid, f.counters.txBytes, f.counters.txCalls]), [[10, 1100, 11], [20, 200, 2]]);
});
