// SPDX-License-Identifier: MIT
// Decoding of ring-buffer batches into typed records. Pure: bytes in, objects out.
// Batch framing (from the addon): [u32 length][u32 0][record bytes][zero padding to 8] ...
import * as L from '../native/layout.generated';
import type { Traffic } from '../schema/report';
import { formatAddress } from '../util/net';

export interface FlowKey {
  /** Stable identity of the flow: cookie, tgid, start time, proto, remote. */
  id: string;
  cookie: bigint;
  tgid: number;
  /** The process's task start time (CLOCK_MONOTONIC ns): with tgid, its identity across PID reuse; 0n unknown. */
  startTime: bigint;
  family: number;
  proto: number;
  remoteAddr: string;
  remotePort: number;
  /** The key as the kernel map holds it (struct flow_key), for lookups. */
  raw: Uint8Array;
}

/** Bytes and calls of a flow: the report's Traffic shape, as the kernel counts them (struct flow_counters). */
export type FlowCounters = Traffic;

/** Every record names a process instance: tgid plus its task start time (0n when the kernel did not know it). */
export type TraceRecord = { startTime: bigint } & (
  | { type: 'fork'; tgid: number; tsNs: number; ppid: number; nspid: number; comm: string }
  | {
      type: 'exec';
      tgid: number;
      tsNs: number;
      ppid: number;
      /** The process was not traced before: it started matching attach --comm/--cgroup with this exec. */
      matched: boolean;
      comm: string;
      filename: string;
      argv: string[];
      argsTruncated: boolean;
    }
  | { type: 'exit'; tgid: number; tsNs: number; waitStatus: number }
  | {
      type: 'flow';
      isNew: boolean;
      tgid: number;
      tsNs: number;
      key: FlowKey;
      counters: FlowCounters;
      firstNs: number;
      localAddr: string;
      localPort: number;
    }
  | {
      type: 'sockState';
      tgid: number;
      tsNs: number;
      cookie: bigint;
      family: number;
      oldState: number;
      newState: number;
      error: number;
      flags: number;
      localAddr: string;
      localPort: number;
      remoteAddr: string;
      remotePort: number;
    }
  | { type: 'sockRelease'; tgid: number; tsNs: number; cookie: bigint }
  | { type: 'call'; tgid: number; tsNs: number; key: FlowKey; tid: number; bytes: number; direction: 'tx' | 'rx' }
  | PacketRecord
  | DnsResponseRecord
  | DataRecord
);

/** RECORD_DATA flags: why a call's bytes are missing (`bytes` is then empty). */
export const DATA_FLAGS = { notCopied: L.DATA_F_NOT_COPIED, copyFailed: L.DATA_F_COPY_FAILED, noBuffer: L.DATA_F_NO_BUFFER } as const;
export type DataFlag = keyof typeof DATA_FLAGS;
/** The flags of the (usual) record with its bytes: one shared, frozen array, not one per record. */
const NO_DATA_FLAGS: DataFlag[] = Object.freeze([]) as unknown as DataFlag[];

const L7_CLASSES: Record<number, string> = {
  [L.L7_UNKNOWN]: 'unknown', [L.L7_HTTP1]: 'http1', [L.L7_HTTP2]: 'http2', [L.L7_TLS]: 'tls',
  [L.L7_DNS]: 'dns', [L.L7_REDIS]: 'redis', [L.L7_POSTGRES]: 'postgres', [L.L7_OTHER]: 'other',
};

/**
 * The head of what one call moved (L7 view), or TLS plaintext. `bytes` views the batch: valid only during
 * the callback (copy to keep it). The next record of the same flow and direction starts at
 * `offset + length`; a later offset is a gap (a lost record, or bytes never seen).
 */
export interface DataRecord {
  type: 'data';
  tgid: number;
  tsNs: number;
  startTime: bigint;
  key: FlowKey;
  /** Bytes of this flow and direction before this call (exact below 2^53). */
  offset: number;
  /** Bytes the call moved (its return value); `bytes.length` <= length. */
  length: number;
  tid: number;
  direction: 'tx' | 'rx';
  source: 'socket' | 'tls';
  /** Why bytes are missing, if they are. */
  flags: DataFlag[];
  /** The kernel's guess from the flow's first bytes (a filter, not a verdict): http1, http2, tls, dns, redis, postgres. */
  kernelClass: string;
  bytes: Uint8Array;
}

/** A DNS response (IP packet, UDP from port 53) received by a traced socket. `data` views the batch. */
export interface DnsResponseRecord {
  type: 'dns';
  /** Socket owner. */
  tgid: number;
  tsNs: number;
  cookie: bigint;
  originalLength: number;
  data: Uint8Array;
}

/** A captured packet. `data` views the batch: valid only during the callback (copy to keep it). */
export interface PacketRecord {
  type: 'packet';
  /** Socket owner, 0 when unknown. */
  tgid: number;
  tsNs: number;
  startTime: bigint;
  cookie: bigint;
  originalLength: number;
  ifindex: number;
  direction: 'tx' | 'rx';
  data: Uint8Array;
}

const decoder = new TextDecoder();

function cString(bytes: Uint8Array, offset: number, length: number): string {
  const slice = bytes.subarray(offset, offset + length);
  const end = slice.indexOf(0);
  return decoder.decode(end < 0 ? slice : slice.subarray(0, end));
}

function u64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** The packet bytes after a packet or DNS record: cap_len of them, never past the record's end. */
function capturedBytes(view: DataView, bytes: Uint8Array, at: number, length: number, layout: { size: number; cap_len: number }): Uint8Array {
  const capLength = view.getUint32(at + layout.cap_len, true);
  const dataAt = at + layout.size;
  return bytes.subarray(dataAt, dataAt + Math.max(0, Math.min(capLength, length - layout.size)));
}

/** The 16-byte address field at `at` (network byte order; IPv4 in its first 4 bytes). */
function address(bytes: Uint8Array, family: number, at: number): string {
  return formatAddress(family, bytes.subarray(at, at + 16));
}

export function decodeFlowKey(view: DataView, bytes: Uint8Array, at: number): FlowKey {
  const cookie = view.getBigUint64(at + L.flow_key.cookie, true);
  const tgid = view.getUint32(at + L.flow_key.tgid, true);
  const startTime = view.getBigUint64(at + L.flow_key.start_time_ns, true);
  const family = view.getUint8(at + L.flow_key.family);
  const proto = view.getUint8(at + L.flow_key.proto);
  const remotePort = view.getUint16(at + L.flow_key.rport, true);
  const remoteAddr = address(bytes, family, at + L.flow_key.raddr);
  const raw = bytes.slice(at, at + L.flow_key.size);
  const id = `${cookie}/${tgid}/${startTime}/${proto}/${remoteAddr}/${remotePort}`;
  return { id, cookie, tgid, startTime, family, proto, remoteAddr, remotePort, raw };
}

/**
 * Flow keys of the last records, by the low bits of their cookie: the records of one socket share one
 * FlowKey object (detail mode decodes hundreds of thousands of records a second, mostly of a few flows).
 * A hit compares every byte of the key, so a cached key is never returned for a different flow.
 */
const KEY_CACHE_SLOTS = 64;
const keyCache: Array<FlowKey | null> = new Array(KEY_CACHE_SLOTS).fill(null);
const keyCacheWords: Uint32Array = new Uint32Array(KEY_CACHE_SLOTS * (L.flow_key.size / 4));

/** decodeFlowKey, reusing the FlowKey of an identical key seen before (keys are never mutated). */
export function decodeFlowKeyCached(view: DataView, bytes: Uint8Array, at: number): FlowKey {
  const words = L.flow_key.size / 4;
  const slot = view.getUint32(at + L.flow_key.cookie, true) & (KEY_CACHE_SLOTS - 1);
  const base = slot * words;
  const cached = keyCache[slot];
  if (cached !== null) {
    let same = true;
    for (let i = 0; i < words; i++) {
      if (keyCacheWords[base + i] !== view.getUint32(at + i * 4, true)) {
        same = false;
        break;
      }
    }
    if (same) return cached;
  }
  const key = decodeFlowKey(view, bytes, at);
  for (let i = 0; i < words; i++) keyCacheWords[base + i] = view.getUint32(at + i * 4, true);
  keyCache[slot] = key;
  return key;
}

export function decodeFlowCounters(view: DataView, at: number): FlowCounters {
  return {
    txBytes: u64(view, at + L.flow_counters.tx_bytes),
    rxBytes: u64(view, at + L.flow_counters.rx_bytes),
    txCalls: u64(view, at + L.flow_counters.tx_calls),
    rxCalls: u64(view, at + L.flow_counters.rx_calls),
  };
}

/** Splits NUL-separated argv as the kernel keeps it (mm->arg_start..arg_end). */
export function splitArgs(bytes: Uint8Array): string[] {
  const args: string[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0) {
      if (i > start || i < bytes.length) args.push(decoder.decode(bytes.subarray(start, i)));
      start = i + 1;
    }
  }
  while (args.length > 0 && args[args.length - 1] === '') args.pop();
  return args;
}

export function decodeRecord(view: DataView, bytes: Uint8Array, at: number, length: number): TraceRecord | null {
  if (length < L.record_header.size) return null;
  const type = view.getUint16(at + L.record_header.type, true);
  const tgid = view.getUint32(at + L.record_header.tgid, true);
  const tsNs = u64(view, at + L.record_header.ts_ns);
  const startTime = view.getBigUint64(at + L.record_header.start_time_ns, true);
  switch (type) {
    case L.RECORD_FORK:
      return {
        type: 'fork',
        tgid,
        tsNs,
        startTime,
        ppid: view.getUint32(at + L.fork_record.ppid, true),
        nspid: view.getUint32(at + L.fork_record.nspid, true),
        comm: cString(bytes, at + L.fork_record.comm, L.PROCTAP_COMM_LEN),
      };
    case L.RECORD_EXEC: {
      const argsLength = Math.min(view.getUint32(at + L.exec_record.args_len, true), L.PROCTAP_ARGS_LEN);
      const argsAt = at + L.exec_record.args;
      return {
        type: 'exec',
        tgid,
        tsNs,
        startTime,
        ppid: view.getUint32(at + L.exec_record.ppid, true),
        matched: view.getUint32(at + L.exec_record.matched, true) !== 0,
        comm: cString(bytes, at + L.exec_record.comm, L.PROCTAP_COMM_LEN),
        filename: cString(bytes, at + L.exec_record.filename, L.PROCTAP_FILENAME_LEN),
        argv: splitArgs(bytes.subarray(argsAt, argsAt + argsLength)),
        argsTruncated: view.getUint32(at + L.exec_record.args_truncated, true) !== 0,
      };
    }
    case L.RECORD_EXIT:
      return { type: 'exit', tgid, tsNs, startTime, waitStatus: view.getUint32(at + L.exit_record.exit_code, true) };
    case L.RECORD_FLOW_NEW:
    case L.RECORD_FLOW_UPDATE: {
      const key = decodeFlowKey(view, bytes, at + L.flow_record.key);
      return {
        type: 'flow',
        isNew: type === L.RECORD_FLOW_NEW,
        tgid,
        tsNs,
        startTime,
        key,
        counters: decodeFlowCounters(view, at + L.flow_record.counters),
        firstNs: u64(view, at + L.flow_record.first_ns),
        localAddr: address(bytes, key.family, at + L.flow_record.laddr),
        localPort: view.getUint16(at + L.flow_record.lport, true),
      };
    }
    case L.RECORD_SOCK_STATE: {
      const family = view.getUint8(at + L.sock_state_record.family);
      return {
        type: 'sockState',
        tgid,
        tsNs,
        startTime,
        cookie: view.getBigUint64(at + L.sock_state_record.cookie, true),
        family,
        oldState: view.getUint8(at + L.sock_state_record.old_state),
        newState: view.getUint8(at + L.sock_state_record.new_state),
        error: view.getUint32(at + L.sock_state_record.error, true),
        flags: view.getUint32(at + L.sock_state_record.flags, true),
        localAddr: address(bytes, family, at + L.sock_state_record.laddr),
        localPort: view.getUint16(at + L.sock_state_record.lport, true),
        remoteAddr: address(bytes, family, at + L.sock_state_record.raddr),
        remotePort: view.getUint16(at + L.sock_state_record.rport, true),
      };
    }
    case L.RECORD_SOCK_RELEASE:
      return { type: 'sockRelease', tgid, tsNs, startTime, cookie: view.getBigUint64(at + L.sock_release_record.cookie, true) };
    case L.RECORD_CALL:
      return {
        type: 'call',
        tgid,
        tsNs,
        startTime,
        key: decodeFlowKeyCached(view, bytes, at + L.call_record.key),
        tid: view.getUint32(at + L.call_record.tid, true),
        bytes: view.getInt32(at + L.call_record.bytes, true),
        direction: view.getUint8(at + L.call_record.direction) === 0 ? 'tx' : 'rx',
      };
    case L.RECORD_PACKET:
      return {
        type: 'packet',
        tgid,
        tsNs,
        startTime,
        cookie: view.getBigUint64(at + L.packet_record.cookie, true),
        originalLength: view.getUint32(at + L.packet_record.orig_len, true),
        ifindex: view.getUint32(at + L.packet_record.ifindex, true),
        direction: view.getUint8(at + L.packet_record.direction) === 0 ? 'tx' : 'rx',
        data: capturedBytes(view, bytes, at, length, L.packet_record),
      };
    case L.RECORD_DATA: {
      const bits = view.getUint8(at + L.data_record.flags);
      return {
        type: 'data',
        tgid,
        tsNs,
        startTime,
        key: decodeFlowKeyCached(view, bytes, at + L.data_record.key),
        offset: u64(view, at + L.data_record.offset),
        length: view.getUint32(at + L.data_record.len, true),
        tid: view.getUint32(at + L.data_record.tid, true),
        direction: view.getUint8(at + L.data_record.direction) === 0 ? 'tx' : 'rx',
        source: view.getUint8(at + L.data_record.source) === L.DATA_SOURCE_TLS ? 'tls' : 'socket',
        flags: bits === 0 ? NO_DATA_FLAGS : (Object.keys(DATA_FLAGS) as DataFlag[]).filter((f) => bits & DATA_FLAGS[f]),
        kernelClass: L7_CLASSES[view.getUint8(at + L.data_record.l7_class)] ?? 'unknown',
        bytes: capturedBytes(view, bytes, at, length, L.data_record),
      };
    }
    case L.RECORD_DNS:
      return {
        type: 'dns',
        tgid,
        tsNs,
        startTime,
        cookie: view.getBigUint64(at + L.dns_record.cookie, true),
        originalLength: view.getUint32(at + L.dns_record.orig_len, true),
        data: capturedBytes(view, bytes, at, length, L.dns_record),
      };
    default:
      return null;
  }
}

/** Calls onRecord for every record of a batch; returns how many records the batch held. */
export function forEachRecord(batch: ArrayBuffer, onRecord: (record: TraceRecord) => void): number {
  const view = new DataView(batch);
  const bytes = new Uint8Array(batch);
  let at = 0;
  let count = 0;
  while (at + 8 <= batch.byteLength) {
    const length = view.getUint32(at, true);
    const start = at + 8;
    if (start + length > batch.byteLength) throw new RangeError(`truncated ring-buffer batch at offset ${at}`);
    const record = decodeRecord(view, bytes, start, length);
    if (record) onRecord(record);
    count++;
    at = start + ((length + 7) & ~7);
  }
  return count;
}
