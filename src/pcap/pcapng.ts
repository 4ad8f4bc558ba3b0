// SPDX-License-Identifier: MIT
// pcapng block encoders (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html).
// Every function is pure and returns one complete block as a Buffer, written little-endian: the
// section header's byte-order magic tells readers which order the section uses.

export const BLOCK_TYPE_SECTION_HEADER = 0x0a0d0d0a;
export const BLOCK_TYPE_INTERFACE_DESCRIPTION = 0x00000001;
export const BLOCK_TYPE_NAME_RESOLUTION = 0x00000004;
export const BLOCK_TYPE_INTERFACE_STATISTICS = 0x00000005;
export const BLOCK_TYPE_ENHANCED_PACKET = 0x00000006;
export const BLOCK_TYPE_DECRYPTION_SECRETS = 0x0000000a;
/** Decryption Secrets Block secrets type: an NSS key log (SSLKEYLOGFILE lines), for TLS and DTLS. */
export const SECRETS_TYPE_TLS_KEYLOG = 0x544c534b;
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** LINKTYPE_RAW: each packet starts with an IPv4 or IPv6 header, no link-layer header. */
export const LINKTYPE_RAW = 101;
export const LINKTYPE_ETHERNET = 1;
/** Linux "cooked" captures of libpcap's "any" device: v1 (16-byte header) and v2 (20 bytes: protocol,
 *  interface index, ARPHRD type, packet type, address). */
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_LINUX_SLL2 = 276;

// Option codes (per block type; 0 and 1 are shared by all blocks).
export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const SHB_HARDWARE = 2;
export const SHB_OS = 3;
export const SHB_USERAPPL = 4;
export const IF_NAME = 2;
export const IF_DESCRIPTION = 3;
export const IF_TSRESOL = 9;
export const EPB_FLAGS = 2;
export const EPB_DROPCOUNT = 4;
export const EPB_PACKETID = 5;
export const ISB_IFRECV = 4;
export const ISB_IFDROP = 5;
export const ISB_OSDROP = 7;
export const NRB_RECORD_END = 0;
export const NRB_RECORD_IPV4 = 1;
export const NRB_RECORD_IPV6 = 2;

/** epb_flags bits 0-1. */
export const EPB_FLAG_INBOUND = 0b01;
export const EPB_FLAG_OUTBOUND = 0b10;

/** An option value may hold at most this many bytes (its length field is 16 bits). */
export const MAX_OPTION_LENGTH = 0xffff;

const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

export type PacketDirection = 'inbound' | 'outbound';

export interface BlockOption {
  code: number;
  value: Uint8Array;
}

/** Number of zero bytes that pad `length` to a 32-bit boundary. */
export function padding32(length: number): number {
  return (4 - (length % 4)) % 4;
}

function checkU32(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`${name} must be an integer in 0..2^32-1, got ${value}`);
  }
}

function checkU64(name: string, value: bigint): void {
  if (value < 0n || value > U64_MAX) throw new RangeError(`${name} must be in 0..2^64-1, got ${value}`);
}

export function u32Option(code: number, value: number): BlockOption {
  checkU32(`option ${code}`, value);
  const b = Buffer.alloc(4);
  b.writeUInt32LE(value, 0);
  return { code, value: b };
}

export function u64Option(code: number, value: bigint | number): BlockOption {
  const v = BigInt(value);
  checkU64(`option ${code}`, v);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v, 0);
  return { code, value: b };
}

/** UTF-8 string option (no terminating NUL, as the spec asks). Text longer than an option can
 *  hold is cut at a character boundary so the value stays valid UTF-8. */
export function stringOption(code: number, text: string): BlockOption {
  return { code, value: truncateUtf8(text, MAX_OPTION_LENGTH) };
}

/** UTF-8 bytes of `text`, at most `maxBytes`, never splitting a multibyte character. */
export function truncateUtf8(text: string, maxBytes: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return bytes;
  let end = maxBytes;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--; // back up to a lead byte
  return bytes.subarray(0, end);
}

/** Options area: each option as code(2) length(2) value padded to 32 bits, then opt_endofopt.
 *  No options → empty buffer (the end marker is optional then and we leave it out). */
export function encodeOptions(options: readonly BlockOption[]): Buffer {
  if (options.length === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [];
  for (const { code, value } of options) {
    if (value.length > MAX_OPTION_LENGTH) throw new RangeError(`option ${code} is ${value.length} bytes, max ${MAX_OPTION_LENGTH}`);
    const head = Buffer.alloc(4);
    head.writeUInt16LE(code, 0);
    head.writeUInt16LE(value.length, 2);
    parts.push(head, Buffer.from(value.buffer, value.byteOffset, value.length), Buffer.alloc(padding32(value.length)));
  }
  parts.push(Buffer.alloc(4)); // opt_endofopt: code 0, length 0
  return Buffer.concat(parts);
}

/** Frame a block: type, total length, body (padded), options, total length again. */
export function encodeBlock(blockType: number, body: Uint8Array, options: readonly BlockOption[] = []): Buffer {
  const opts = encodeOptions(options);
  const bodyPad = padding32(body.length);
  const total = 12 + body.length + bodyPad + opts.length;
  checkU32('block total length', total);
  const out = Buffer.alloc(total); // zero-filled, so padding bytes are zero
  out.writeUInt32LE(blockType, 0);
  out.writeUInt32LE(total, 4);
  out.set(body, 8);
  opts.copy(out, 8 + body.length + bodyPad);
  out.writeUInt32LE(total, total - 4);
  return out;
}

function splitTimestamp(timestamp: bigint): [number, number] {
  checkU64('timestamp', timestamp);
  return [Number(timestamp >> 32n), Number(timestamp & 0xffffffffn)];
}

/** Convert nanoseconds to units of 10^-tsResol seconds (tsResol 9 = ns, 6 = us). */
export function scaleTimestamp(timestampNs: bigint, tsResol = 9): bigint {
  if (!Number.isInteger(tsResol) || tsResol < 0 || tsResol > 19) throw new RangeError(`tsResol must be 0..19, got ${tsResol}`);
  return tsResol >= 9 ? timestampNs * 10n ** BigInt(tsResol - 9) : timestampNs / 10n ** BigInt(9 - tsResol);
}

export interface SectionHeaderOptions {
  hardware?: string;
  os?: string;
  userAppl?: string;
  comment?: string;
}

/** SHB: byte-order magic, version 1.0, section length -1 (unknown, we stream). */
export function sectionHeaderBlock(opts: SectionHeaderOptions = {}): Buffer {
  const body = Buffer.alloc(16);
  body.writeUInt32LE(BYTE_ORDER_MAGIC, 0);
  body.writeUInt16LE(1, 4); // major
  body.writeUInt16LE(0, 6); // minor
  body.writeBigInt64LE(-1n, 8);
  const options: BlockOption[] = [];
  if (opts.comment !== undefined) options.push(stringOption(OPT_COMMENT, opts.comment));
  if (opts.hardware !== undefined) options.push(stringOption(SHB_HARDWARE, opts.hardware));
  if (opts.os !== undefined) options.push(stringOption(SHB_OS, opts.os));
  if (opts.userAppl !== undefined) options.push(stringOption(SHB_USERAPPL, opts.userAppl));
  return encodeBlock(BLOCK_TYPE_SECTION_HEADER, body, options);
}

export interface InterfaceDescriptionOptions {
  linkType: number;
  /** 0 = no limit. */
  snapLen: number;
  name?: string;
  description?: string;
  /** Timestamp resolution as a power of ten: 9 = nanoseconds (our default), 6 = microseconds
   *  (the pcapng default; no option is written then). */
  tsResol?: number;
}

export function interfaceDescriptionBlock(opts: InterfaceDescriptionOptions): Buffer {
  if (!Number.isInteger(opts.linkType) || opts.linkType < 0 || opts.linkType > 0xffff) {
    throw new RangeError(`linkType must be 0..65535, got ${opts.linkType}`);
  }
  checkU32('snapLen', opts.snapLen);
  const tsResol = opts.tsResol ?? 9;
  if (!Number.isInteger(tsResol) || tsResol < 0 || tsResol > 127) throw new RangeError(`tsResol must be 0..127, got ${tsResol}`);
  const body = Buffer.alloc(8);
  body.writeUInt16LE(opts.linkType, 0);
  body.writeUInt32LE(opts.snapLen, 4); // bytes 2-3 reserved, zero
  const options: BlockOption[] = [];
  if (opts.name !== undefined) options.push(stringOption(IF_NAME, opts.name));
  if (opts.description !== undefined) options.push(stringOption(IF_DESCRIPTION, opts.description));
  if (tsResol !== 6) options.push({ code: IF_TSRESOL, value: Uint8Array.of(tsResol) });
  return encodeBlock(BLOCK_TYPE_INTERFACE_DESCRIPTION, body, options);
}

export interface EnhancedPacketOptions {
  interfaceId: number;
  timestampNs: bigint;
  capturedData: Uint8Array;
  originalLength: number;
  direction?: PacketDirection;
  comment?: string;
  dropCount?: bigint | number;
  packetId?: bigint | number;
  /** Resolution of the interface this packet belongs to (its if_tsresol); default 9. */
  tsResol?: number;
}

export function directionFlags(direction: PacketDirection | undefined): number {
  if (direction === 'inbound') return EPB_FLAG_INBOUND;
  if (direction === 'outbound') return EPB_FLAG_OUTBOUND;
  return 0;
}

/** UTF-8 option values of recent comments: a capture repeats a few ("pid 42 (curl)") per packet. */
const commentValues = new Map<string, Buffer>();

function commentValue(text: string): Buffer {
  let value = commentValues.get(text);
  if (value === undefined) {
    if (commentValues.size >= 1024) commentValues.clear();
    value = truncateUtf8(text, MAX_OPTION_LENGTH);
    commentValues.set(text, value);
  }
  return value;
}

export function enhancedPacketBlock(opts: EnhancedPacketOptions): Buffer {
  const data = opts.capturedData;
  checkU32('interfaceId', opts.interfaceId);
  checkU32('originalLength', opts.originalLength);
  if (opts.originalLength < data.length) {
    throw new RangeError(`originalLength ${opts.originalLength} < captured length ${data.length}`);
  }
  const [high, low] = splitTimestamp(scaleTimestamp(opts.timestampNs, opts.tsResol));
  if (opts.dropCount === undefined && opts.packetId === undefined) {
    // The capture's per-packet path: the same bytes as encodeBlock() below, in one allocation.
    const comment = opts.comment !== undefined ? commentValue(opts.comment) : null;
    const dataEnd = 28 + data.length + padding32(data.length);
    let optionsLength = comment !== null ? 4 + comment.length + padding32(comment.length) : 0;
    if (opts.direction !== undefined) optionsLength += 8;
    if (optionsLength > 0) optionsLength += 4; // opt_endofopt
    const total = dataEnd + optionsLength + 4;
    checkU32('block total length', total);
    const out = Buffer.allocUnsafe(total);
    out.writeUInt32LE(BLOCK_TYPE_ENHANCED_PACKET, 0);
    out.writeUInt32LE(total, 4);
    out.writeUInt32LE(opts.interfaceId, 8);
    out.writeUInt32LE(high, 12);
    out.writeUInt32LE(low, 16);
    out.writeUInt32LE(data.length, 20);
    out.writeUInt32LE(opts.originalLength, 24);
    out.set(data, 28);
    out.fill(0, 28 + data.length, dataEnd);
    let at = dataEnd;
    if (comment !== null) {
      out.writeUInt16LE(OPT_COMMENT, at);
      out.writeUInt16LE(comment.length, at + 2);
      comment.copy(out, at + 4);
      at += 4 + comment.length;
      const pad = padding32(comment.length);
      out.fill(0, at, at + pad);
      at += pad;
    }
    if (opts.direction !== undefined) {
      out.writeUInt16LE(EPB_FLAGS, at);
      out.writeUInt16LE(4, at + 2);
      out.writeUInt32LE(directionFlags(opts.direction), at + 4);
      at += 8;
    }
    if (optionsLength > 0) {
      out.writeUInt32LE(0, at); // opt_endofopt
      at += 4;
    }
    out.writeUInt32LE(total, at);
    return out;
  }
  const head = Buffer.alloc(20);
  head.writeUInt32LE(opts.interfaceId, 0);
  head.writeUInt32LE(high, 4);
  head.writeUInt32LE(low, 8);
  head.writeUInt32LE(data.length, 12);
  head.writeUInt32LE(opts.originalLength, 16);
  const body = Buffer.concat([head, data]);
  const options: BlockOption[] = [];
  if (opts.comment !== undefined) options.push(stringOption(OPT_COMMENT, opts.comment));
  if (opts.direction !== undefined) options.push(u32Option(EPB_FLAGS, directionFlags(opts.direction)));
  if (opts.dropCount !== undefined) options.push(u64Option(EPB_DROPCOUNT, opts.dropCount));
  if (opts.packetId !== undefined) options.push(u64Option(EPB_PACKETID, opts.packetId));
  return encodeBlock(BLOCK_TYPE_ENHANCED_PACKET, body, options);
}

export interface InterfaceStatisticsOptions {
  interfaceId: number;
  timestampNs: bigint;
  /** isb_ifrecv: packets seen by the capture source. */
  received?: bigint | number;
  /** isb_ifdrop: packets lost by the capture source (e.g. a full BPF ring buffer). */
  dropped?: bigint | number;
  /** isb_osdrop: packets the operating system dropped (e.g. libpcap's ps_drop: the capture ring was full). */
  osDropped?: bigint | number;
  comment?: string;
  tsResol?: number;
}

export function interfaceStatisticsBlock(opts: InterfaceStatisticsOptions): Buffer {
  checkU32('interfaceId', opts.interfaceId);
  const [high, low] = splitTimestamp(scaleTimestamp(opts.timestampNs, opts.tsResol));
  const body = Buffer.alloc(12);
  body.writeUInt32LE(opts.interfaceId, 0);
  body.writeUInt32LE(high, 4);
  body.writeUInt32LE(low, 8);
  const options: BlockOption[] = [];
  if (opts.comment !== undefined) options.push(stringOption(OPT_COMMENT, opts.comment));
  if (opts.received !== undefined) options.push(u64Option(ISB_IFRECV, opts.received));
  if (opts.dropped !== undefined) options.push(u64Option(ISB_IFDROP, opts.dropped));
  if (opts.osDropped !== undefined) options.push(u64Option(ISB_OSDROP, opts.osDropped));
  return encodeBlock(BLOCK_TYPE_INTERFACE_STATISTICS, body, options);
}

export interface NameResolutionEntry {
  /** Raw address in network byte order: 4 bytes (IPv4) or 16 bytes (IPv6). */
  address: Uint8Array;
  names: string[];
}

/** NRB: address → host name records, so readers show names (tshark -N n / -H). */
export function nameResolutionBlock(entries: readonly NameResolutionEntry[], comment?: string): Buffer {
  const parts: Buffer[] = [];
  for (const { address, names } of entries) {
    if (address.length !== 4 && address.length !== 16) throw new RangeError(`address must be 4 or 16 bytes, got ${address.length}`);
    if (names.length === 0) throw new RangeError('a name resolution record needs at least one name');
    const value = Buffer.concat([Buffer.from(address), ...names.map((n) => Buffer.from(`${n}\0`, 'utf8'))]);
    if (value.length > MAX_OPTION_LENGTH) throw new RangeError(`name resolution record too long (${value.length} bytes)`);
    const head = Buffer.alloc(4);
    head.writeUInt16LE(address.length === 4 ? NRB_RECORD_IPV4 : NRB_RECORD_IPV6, 0);
    head.writeUInt16LE(value.length, 2);
    parts.push(head, value, Buffer.alloc(padding32(value.length)));
  }
  parts.push(Buffer.alloc(4)); // nrb_record_end
  const options = comment !== undefined ? [stringOption(OPT_COMMENT, comment)] : [];
  return encodeBlock(BLOCK_TYPE_NAME_RESOLUTION, Buffer.concat(parts), options);
}

/**
 * DSB: secrets that decrypt the packets after it (readers apply them from here on: it must precede the
 * packets it decrypts). For SECRETS_TYPE_TLS_KEYLOG the data is key log lines, each ending in "\n".
 */
export function decryptionSecretsBlock(secretsType: number, data: Uint8Array, comment?: string): Buffer {
  checkU32('secretsType', secretsType);
  const head = Buffer.alloc(8);
  head.writeUInt32LE(secretsType, 0);
  head.writeUInt32LE(data.length, 4);
  const options = comment !== undefined ? [stringOption(OPT_COMMENT, comment)] : [];
  return encodeBlock(BLOCK_TYPE_DECRYPTION_SECRETS, Buffer.concat([head, data]), options);
}
