// SPDX-License-Identifier: MIT
// Decoding of the kernel's maps and globals as user space reads them at the end of a flow or a trace:
// flow values, per-owner packet counters, retransmit totals, the .bss statistics. Pure: bytes in,
// typed values out (trace/probes.ts does the reading).
import * as L from '../native/layout.generated';
import type { Packets } from '../schema/report';
import { formatAddress } from '../util/net';
import { decodeFlowCounters, decodeFlowKey, type FlowCounters, type FlowKey } from './records';

/** A flow's counters as the kernel map holds them when it is read for the last time. */
export interface FinalFlow {
  key: FlowKey;
  counters: FlowCounters;
  /** log2 message-size histograms (calls per bucket), as counted in kernel. */
  sizes: { tx: number[]; rx: number[] };
  firstNs: number;
  lastNs: number;
  localAddr: string;
  localPort: number;
}

/** Packet counters of one socket owner (tgid 0: packets whose owner could not be told). */
export interface OwnerPackets {
  tgid: number;
  /** The owner's kernel start time (0n unknown). */
  startTime: bigint;
  packets: Packets;
}

export interface KernelStats {
  lostRecords: Record<string, number>;
  flowTableFull: number;
  flowTableFullBytes: number;
  tracedTableFull: number;
  retransmitTableFull: number;
}

/** A map's entries as the addon dumps them: count, then keys and values back to back. */
export interface MapEntries {
  count: number;
  keySize: number;
  valueSize: number;
  keys: Buffer;
  values: Buffer;
}

export const RECORD_NAMES: Record<number, string> = {
  [L.RECORD_FORK]: 'fork', [L.RECORD_EXEC]: 'exec', [L.RECORD_EXIT]: 'exit', [L.RECORD_FLOW_NEW]: 'flowNew',
  [L.RECORD_FLOW_UPDATE]: 'flowUpdate', [L.RECORD_SOCK_STATE]: 'sockState', [L.RECORD_SOCK_RELEASE]: 'sockRelease',
  [L.RECORD_CALL]: 'call', [L.RECORD_PACKET]: 'packet', [L.RECORD_DNS]: 'dns', [L.RECORD_DATA]: 'data',
};

function u64(buf: Buffer, at: number): number {
  return Number(buf.readBigUInt64LE(at));
}

function readBuckets(value: Buffer, at: number): number[] {
  const buckets: number[] = [];
  for (let i = 0; i < L.PROCTAP_SIZE_BUCKETS; i++) buckets.push(value.readUInt32LE(at + 4 * i));
  return buckets;
}

/** One `flows` map value (struct flow_value) of `key`. */
export function decodeFlowValue(key: FlowKey, value: Buffer): FinalFlow {
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  const laddr = value.subarray(L.flow_value.laddr, L.flow_value.laddr + 16);
  return {
    key,
    counters: decodeFlowCounters(view, L.flow_value.counters),
    firstNs: u64(value, L.flow_value.first_ns),
    lastNs: u64(value, L.flow_value.last_ns),
    localAddr: formatAddress(key.family, laddr),
    localPort: value.readUInt16LE(L.flow_value.lport),
    sizes: { tx: readBuckets(value, L.flow_value.tx_sizes), rx: readBuckets(value, L.flow_value.rx_sizes) },
  };
}

/** Every entry of the `flows` map. */
export function decodeFlows(dump: MapEntries): FinalFlow[] {
  const flows: FinalFlow[] = [];
  const keys = new DataView(dump.keys.buffer, dump.keys.byteOffset, dump.keys.byteLength);
  const keyBytes = new Uint8Array(dump.keys.buffer, dump.keys.byteOffset, dump.keys.byteLength);
  for (let i = 0; i < dump.count; i++) {
    const key = decodeFlowKey(keys, keyBytes, i * dump.keySize);
    flows.push(decodeFlowValue(key, dump.values.subarray(i * dump.valueSize, (i + 1) * dump.valueSize)));
  }
  return flows;
}

/** A `retransmits` value: the socket's tcp_sock.total_retrans when last seen. */
export function decodeRetransmits(value: Buffer): number {
  return u64(value, 0);
}

/** Every entry of the `retransmits` map, by socket cookie. */
export function decodeRetransmitMap(dump: MapEntries): Map<bigint, number> {
  const counts = new Map<bigint, number>();
  for (let i = 0; i < dump.count; i++) counts.set(dump.keys.readBigUInt64LE(i * dump.keySize), u64(dump.values, i * dump.valueSize));
  return counts;
}

/** One `packets` map value (struct packet_counters). */
export function decodePacketValue(v: Buffer): Packets {
  return {
    txPackets: u64(v, L.packet_counters.tx_packets),
    rxPackets: u64(v, L.packet_counters.rx_packets),
    txBytes: u64(v, L.packet_counters.tx_bytes),
    rxBytes: u64(v, L.packet_counters.rx_bytes),
  };
}

/** Every entry of the `packets` map (key struct process_id, value struct packet_counters). */
export function decodePacketCounters(dump: MapEntries): OwnerPackets[] {
  const owners: OwnerPackets[] = [];
  for (let i = 0; i < dump.count; i++) {
    const v = dump.values.subarray(i * dump.valueSize);
    const k = i * dump.keySize;
    owners.push({
      tgid: dump.keys.readUInt32LE(k + L.process_id.tgid),
      startTime: dump.keys.readBigUInt64LE(k + L.process_id.start_time_ns),
      packets: decodePacketValue(v),
    });
  }
  return owners;
}

/** The `stats` global (struct proctap_stats) in the object's .bss. */
export function decodeStats(bss: Buffer): KernelStats {
  const lostRecords: Record<string, number> = {};
  for (let type = 1; type < L.RECORD_TYPE_MAX; type++) {
    const n = u64(bss, L.proctap_stats.lost_records + 8 * type);
    if (n) lostRecords[RECORD_NAMES[type] ?? `type${type}`] = n;
  }
  return {
    lostRecords,
    flowTableFull: u64(bss, L.proctap_stats.flow_table_full),
    flowTableFullBytes: u64(bss, L.proctap_stats.flow_table_full_bytes),
    tracedTableFull: u64(bss, L.proctap_stats.traced_table_full),
    retransmitTableFull: u64(bss, L.proctap_stats.retransmit_table_full),
  };
}
