// SPDX-License-Identifier: MIT
// The `flow_slots` array (bpf/proctap.h, struct flow_slot): where the tracing backends count most calls of
// a flow, beside its `flows` entry; a flow's counters are the sum of both. Pure: bytes in, flows out.
import * as L from '../native/layout.generated';
import { decodeFlowValue, type FinalFlow, type MapEntries } from './maps';
import { decodeFlowKey, type FlowKey } from './records';

const MASK64 = (1n << 64n) - 1n;

/** The slot a flow's cookie maps to, as flow_slot_of() computes it in the kernel. */
export function flowSlotIndex(cookie: bigint): number {
  return Number(((cookie * 0x9e3779b97f4a7c15n) & MASK64) >> BigInt(64 - L.PROCTAP_FLOW_SLOTS_LOG2));
}

/** One slot's flow (counters, sizes, last_ns), or null when the slot holds no flow. */
export function decodeFlowSlot(slot: Buffer): FinalFlow | null {
  if (slot.readBigUInt64LE(L.flow_slot.state) !== BigInt(L.FLOW_SLOT_READY)) return null;
  const view = new DataView(slot.buffer, slot.byteOffset, slot.byteLength);
  const bytes = new Uint8Array(slot.buffer, slot.byteOffset, slot.byteLength);
  const key = decodeFlowKey(view, bytes, L.flow_slot.key);
  if (key.cookie === 0n) return null;
  return decodeFlowValue(key, slot.subarray(L.flow_slot.value, L.flow_slot.value + L.flow_value.size));
}

/** The slot's flow if it is `key`'s. */
export function slotFlowOf(key: FlowKey, slot: Buffer | null): FinalFlow | null {
  const flow = slot ? decodeFlowSlot(slot) : null;
  return flow && Buffer.compare(Buffer.from(flow.key.raw), Buffer.from(key.raw)) === 0 ? flow : null;
}

/** A flow's `flows` entry with the calls its slot counted added (the entry keeps start and local address). */
export function withSlot(flow: FinalFlow, slot: FinalFlow | null): FinalFlow {
  if (!slot) return flow;
  const c = flow.counters, s = slot.counters;
  return {
    ...flow,
    counters: { txBytes: c.txBytes + s.txBytes, rxBytes: c.rxBytes + s.rxBytes, txCalls: c.txCalls + s.txCalls, rxCalls: c.rxCalls + s.rxCalls },
    sizes: { tx: flow.sizes.tx.map((n, i) => n + slot.sizes.tx[i]), rx: flow.sizes.rx.map((n, i) => n + slot.sizes.rx[i]) },
    lastNs: Math.max(flow.lastNs, slot.lastNs),
  };
}

/** Every `flows` entry with its slot's calls: slots of flows without an entry were taken already. */
export function mergeFlowSlots(flows: FinalFlow[], slots: MapEntries): FinalFlow[] {
  const bySlotKey = new Map<string, FinalFlow>();
  for (let i = 0; i < slots.count; i++) {
    const flow = decodeFlowSlot(slots.values.subarray(i * slots.valueSize, (i + 1) * slots.valueSize));
    if (flow) bySlotKey.set(flow.key.id, flow);
  }
  return flows.map((f) => withSlot(f, bySlotKey.get(f.key.id) ?? null));
}
