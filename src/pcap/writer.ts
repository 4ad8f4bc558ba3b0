// SPDX-License-Identifier: MIT
// Packet writers for pcapng and classic pcap behind one interface, and byte sinks that write
// through to a file descriptor. Packets are batched in JS only briefly (a few packets / KiB), so
// a file is readable up to the last flush even if the process is killed.

import * as fs from 'fs';
import { pcapGlobalHeader, pcapRecord } from './pcap';
import {
  decryptionSecretsBlock,
  enhancedPacketBlock,
  interfaceDescriptionBlock,
  interfaceStatisticsBlock,
  nameResolutionBlock,
  sectionHeaderBlock,
  type NameResolutionEntry,
  type PacketDirection,
} from './pcapng';

export interface CapturedPacket {
  timestampNs: bigint;
  /** Packet bytes from the start of the link-layer header (for LINKTYPE_RAW: the IP header). */
  data: Uint8Array;
  /** Length on the wire (>= data.length; a smaller value is raised to data.length). */
  originalLength: number;
  direction?: PacketDirection;
  /** pcapng only: index into the writer's interfaces (default 0). */
  interfaceId?: number;
  /** pcapng only: per-packet comment (opt_comment). */
  comment?: string;
}

export interface PacketWriter {
  /** false: not written (a rotating capture that reached its -W limit). */
  writePacket(p: CapturedPacket): void | false;
  /** Bytes of the file so far, buffered ones included (rotation checks -C against it). */
  bytes?(): number;
  /** Hand all buffered bytes to the sink and ask it to flush. */
  flush(): void;
  /** Flush and close the sink. Idempotent. */
  close(): void;
}

export interface ByteSink {
  write(buf: Buffer): void;
  flush?(): void;
  close(): void;
}

export interface BatchOptions {
  /** Write to the sink after this many packets are buffered (1 = every packet). Default 16. */
  batchPackets?: number;
  /** ...or once this many bytes are buffered. Default 64 KiB. */
  batchBytes?: number;
}

/** Thrown when the sink's file descriptor rejects a write (ENOSPC, EPIPE, EBADF, ...). */
export class PcapWriteError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code: string | undefined, cause: unknown) {
    super(message, { cause });
    this.name = 'PcapWriteError';
    this.code = code;
  }
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
function sleepMs(ms: number): void {
  Atomics.wait(sleepCell, 0, 0, ms);
}

function describeErrno(code: string | undefined): string {
  switch (code) {
    case 'ENOSPC': return 'no space left on device';
    case 'EDQUOT': return 'disk quota exceeded';
    case 'EPIPE': return 'the reading end of the pipe was closed';
    case 'EBADF': return 'bad file descriptor';
    case 'EFBIG': return 'file too large';
    case 'EIO': return 'I/O error';
    default: return 'write failed';
  }
}

export interface FdSinkOptions {
  /** Used in error messages, e.g. the file name or "stdout". */
  label?: string;
  /** Close the descriptor in close(). Default: only if fd > 2. */
  closeFd?: boolean;
}

/** A sink writing synchronously to `fd`, retrying partial writes and EAGAIN (a non-blocking pipe
 *  such as stdout under a slow reader), and throwing PcapWriteError on real errors. Each write() is
 *  whole blocks: when one fails part-way (ENOSPC), a regular file is cut back to the end of the last
 *  complete write, so it stays readable up to there. */
export function fdSink(fd: number, opts: FdSinkOptions = {}): ByteSink {
  const label = opts.label ?? `fd ${fd}`;
  const closeFd = opts.closeFd ?? fd > 2;
  let closed = false;
  // regular files are written at explicit positions: a failed write is cut back and nothing lands past it
  let committed = fileOffset(fd);
  let failure: PcapWriteError | null = null;
  return {
    write(buf: Buffer): void {
      if (closed) throw new PcapWriteError(`cannot write capture to ${label}: sink is closed`, undefined, undefined);
      if (failure) throw failure;
      let offset = 0;
      let backoff = 1;
      while (offset < buf.length) {
        try {
          offset += fs.writeSync(fd, buf, offset, buf.length - offset, committed === null ? null : committed + offset);
          backoff = 1;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') {
            sleepMs(backoff);
            backoff = Math.min(backoff * 2, 50);
            continue;
          }
          if (committed !== null) cutBack(fd, committed);
          failure = new PcapWriteError(`cannot write capture to ${label}: ${describeErrno(code)} (${code ?? String(err)})`, code, err);
          throw failure;
        }
      }
      if (committed !== null) committed += buf.length;
    },
    flush(): void {
      // writeSync already handed the bytes to the kernel; nothing is held in user space.
    },
    close(): void {
      if (closed) return;
      closed = true;
      if (closeFd) fs.closeSync(fd);
    },
  };
}

/** Where writes to a regular file land (its size: output files are written from the start, in order);
 *  null for pipes, terminals and devices. */
function fileOffset(fd: number): number | null {
  try {
    const st = fs.fstatSync(fd);
    return st.isFile() ? st.size : null;
  } catch {
    return null;
  }
}

/** Drops the partial tail of a failed write (truncating frees space, so it works on a full disk). */
function cutBack(fd: number, length: number): void {
  try {
    fs.ftruncateSync(fd, length);
  } catch {
    /* the error being reported is the write's */
  }
}

/** Create (truncate) `path` and return a sink for it. */
export function fileSink(path: string): ByteSink {
  let fd: number;
  try {
    fd = fs.openSync(path, 'w', 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PcapWriteError(`cannot create capture file ${path}: ${(err as Error).message}`, code, err);
  }
  return fdSink(fd, { label: path, closeFd: true });
}

/** Shared batching and lifecycle; `encode` turns one packet into its bytes. */
function batchingWriter(sink: ByteSink, header: Buffer, encode: (p: CapturedPacket) => Buffer, batch: BatchOptions) {
  const batchPackets = Math.max(1, batch.batchPackets ?? 16);
  const batchBytes = Math.max(1, batch.batchBytes ?? 64 * 1024);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let total = header.length;
  let closed = false;

  const flushPending = (): void => {
    if (pending.length === 0) return;
    const out = pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    sink.write(out);
  };
  const push = (buf: Buffer): void => {
    if (closed) throw new Error('packet writer is closed');
    pending.push(buf);
    pendingBytes += buf.length;
    total += buf.length;
    if (pending.length >= batchPackets || pendingBytes >= batchBytes) flushPending();
  };

  // The header goes out at once, so even a capture with no packets is a valid file.
  sink.write(header);
  sink.flush?.();

  return {
    push,
    bytes: () => total,
    writePacket(p: CapturedPacket): void {
      push(encode(p));
    },
    flush(): void {
      flushPending();
      sink.flush?.();
    },
    close(): void {
      if (closed) return;
      try {
        flushPending();
        sink.flush?.();
      } finally {
        closed = true;
        sink.close();
      }
    },
  };
}

function truncate(p: CapturedPacket, snapLen: number): { data: Uint8Array; originalLength: number } {
  const originalLength = Math.max(p.originalLength, p.data.length);
  const data = snapLen > 0 && p.data.length > snapLen ? p.data.subarray(0, snapLen) : p.data;
  return { data, originalLength };
}

export interface PcapngInterface {
  name: string;
  linkType: number;
  /** Bytes kept per packet; 0 = unlimited. */
  snapLen: number;
  description?: string;
}

export interface PcapngWriterOptions extends BatchOptions {
  interfaces: PcapngInterface[];
  userAppl: string;
  hardware?: string;
  os?: string;
  /** Section comment (shown by capinfos as the capture comment). */
  comment?: string;
}

export interface PcapngWriter extends PacketWriter {
  /** ISB with isb_ifrecv / isb_ifdrop, e.g. ring-buffer loss at the end of a capture. */
  writeInterfaceStatistics(s: { interfaceId: number; timestampNs: bigint; received?: bigint | number; dropped?: bigint | number; osDropped?: bigint | number; comment?: string }): void;
  /** NRB mapping raw addresses to names. */
  writeNameResolution(entries: NameResolutionEntry[]): void;
  /** DSB, in order with the packets: it decrypts the packets written after it. */
  writeDecryptionSecrets(secretsType: number, data: Uint8Array): void;
}

export function createPcapngWriter(sink: ByteSink, opts: PcapngWriterOptions): PcapngWriter {
  if (opts.interfaces.length === 0) throw new RangeError('a pcapng writer needs at least one interface');
  const header = Buffer.concat([
    sectionHeaderBlock({ userAppl: opts.userAppl, hardware: opts.hardware, os: opts.os, comment: opts.comment }),
    ...opts.interfaces.map((i) =>
      interfaceDescriptionBlock({ linkType: i.linkType, snapLen: i.snapLen, name: i.name, description: i.description, tsResol: 9 }),
    ),
  ]);
  const checkInterface = (id: number): PcapngInterface => {
    const itf = opts.interfaces[id];
    if (itf === undefined) throw new RangeError(`interfaceId ${id} is not one of the ${opts.interfaces.length} interfaces`);
    return itf;
  };
  const w = batchingWriter(
    sink,
    header,
    (p) => {
      const interfaceId = p.interfaceId ?? 0;
      const { data, originalLength } = truncate(p, checkInterface(interfaceId).snapLen);
      return enhancedPacketBlock({ interfaceId, timestampNs: p.timestampNs, capturedData: data, originalLength, direction: p.direction, comment: p.comment });
    },
    opts,
  );
  return {
    writePacket: w.writePacket,
    bytes: w.bytes,
    flush: w.flush,
    close: w.close,
    writeInterfaceStatistics(s) {
      checkInterface(s.interfaceId);
      w.push(interfaceStatisticsBlock(s));
    },
    writeNameResolution(entries) {
      w.push(nameResolutionBlock(entries));
    },
    writeDecryptionSecrets(secretsType, data) {
      w.push(decryptionSecretsBlock(secretsType, data));
    },
  };
}

export interface PcapWriterOptions extends BatchOptions {
  linkType: number;
  snapLen: number;
}

/** Classic pcap (nanosecond magic). Direction, comment and interfaceId have no place in this
 *  format and are dropped. */
export function createPcapWriter(sink: ByteSink, opts: PcapWriterOptions): PacketWriter {
  const w = batchingWriter(
    sink,
    pcapGlobalHeader({ linkType: opts.linkType, snapLen: opts.snapLen }),
    (p) => pcapRecord({ timestampNs: p.timestampNs, ...truncate(p, opts.snapLen) }),
    opts,
  );
  return { writePacket: w.writePacket, bytes: w.bytes, flush: w.flush, close: w.close };
}
