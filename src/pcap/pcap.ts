// SPDX-License-Identifier: MIT
// Classic libpcap file format, nanosecond variant (magic 0xa1b23c4d), written little-endian.
// Layout: 24-byte global header, then per packet a 16-byte record header and the captured bytes.

export const PCAP_MAGIC_NANOSECONDS = 0xa1b23c4d;
export const PCAP_MAGIC_MICROSECONDS = 0xa1b2c3d4;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const PCAP_GLOBAL_HEADER_LENGTH = 24;
export const PCAP_RECORD_HEADER_LENGTH = 16;

const U32_MAX = 0xffffffff;
const NS_PER_SECOND = 1_000_000_000n;

export interface PcapGlobalHeaderOptions {
  linkType: number;
  snapLen: number;
}

/** magic, version 2.4, thiszone 0, sigfigs 0, snaplen, network (link type). */
export function pcapGlobalHeader(opts: PcapGlobalHeaderOptions): Buffer {
  if (!Number.isInteger(opts.linkType) || opts.linkType < 0 || opts.linkType > U32_MAX) {
    throw new RangeError(`linkType must be a 32-bit unsigned integer, got ${opts.linkType}`);
  }
  if (!Number.isInteger(opts.snapLen) || opts.snapLen <= 0 || opts.snapLen > U32_MAX) {
    throw new RangeError(`snapLen must be 1..2^32-1, got ${opts.snapLen}`);
  }
  const b = Buffer.alloc(PCAP_GLOBAL_HEADER_LENGTH);
  b.writeUInt32LE(PCAP_MAGIC_NANOSECONDS, 0);
  b.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
  b.writeUInt16LE(PCAP_VERSION_MINOR, 6);
  b.writeInt32LE(0, 8); // thiszone: timestamps are UTC
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(opts.snapLen, 16);
  b.writeUInt32LE(opts.linkType, 20);
  return b;
}

export interface PcapRecordOptions {
  timestampNs: bigint;
  data: Uint8Array;
  /** Length on the wire; at least data.length. */
  originalLength: number;
  /** If given, data beyond snapLen bytes is dropped (incl_len = min(len, snapLen)). */
  snapLen?: number;
}

/** Record header (ts_sec, ts_nsec, incl_len, orig_len) followed by the captured bytes. */
export function pcapRecord(opts: PcapRecordOptions): Buffer {
  const { timestampNs, originalLength } = opts;
  if (timestampNs < 0n) throw new RangeError(`timestamp must not be negative, got ${timestampNs}`);
  const seconds = timestampNs / NS_PER_SECOND;
  if (seconds > BigInt(U32_MAX)) throw new RangeError(`timestamp ${timestampNs} ns does not fit a 32-bit seconds field`);
  let data = opts.data;
  if (!Number.isInteger(originalLength) || originalLength < data.length || originalLength > U32_MAX) {
    throw new RangeError(`originalLength ${originalLength} must be an integer >= captured length ${data.length}`);
  }
  if (opts.snapLen !== undefined && data.length > opts.snapLen) data = data.subarray(0, opts.snapLen);
  const out = Buffer.alloc(PCAP_RECORD_HEADER_LENGTH + data.length);
  out.writeUInt32LE(Number(seconds), 0);
  out.writeUInt32LE(Number(timestampNs % NS_PER_SECOND), 4);
  out.writeUInt32LE(data.length, 8);
  out.writeUInt32LE(originalLength, 12);
  out.set(data, PCAP_RECORD_HEADER_LENGTH);
  return out;
}
