// SPDX-License-Identifier: MIT
// HTTP/2 (RFC 9113) and gRPC over it: the client preface, frames, streams. Header blocks (HEADERS,
// CONTINUATION, PUSH_PROMISE) are decoded with hpack.js, one decompressor per direction, so that
// every stream has its :method, :path, :authority, :status and, in trailers, grpc-status.
// HPACK keeps a dynamic table per direction: a header block not seen whole (past the copy limit, in a
// gap) leaves the table behind the peer's, and every later block could decode wrong, so decoding of
// that direction's headers stops there (the streams are still counted and timed). Seen mid-stream,
// the table starts empty: blocks decode until one refers to an entry added before the trace
// (hpack.js refuses the index), then that direction stops too. Never a wrong header.
import type * as Hpack from 'hpack.js';
import { finish, newDraft, note, other, printable, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import type { Direction, ExchangeProtocol, HttpDetail, Role } from './types';
import type { Match } from './http1';
import { normalizePath } from './http1';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
const FRAME_HEADER = 9;
const T = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PUSH_PROMISE: 5, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
/** Largest header block gathered (HEADERS + CONTINUATION). */
const MAX_BLOCK = 64 * 1024;
/** hpack.js, loaded at the first HTTP/2 connection: with the readable-stream it brings it is ~25 ms of
 *  every proctap start otherwise (docs/performance.md, step 3). */
let hpackModule: typeof Hpack | null = null;
const hpack = (): typeof Hpack => (hpackModule ??= require('hpack.js') as typeof Hpack);

/** hpack.js refuses dynamic table size updates above its protocol maximum: be generous, start at
 *  the RFC's 4096. */
const HPACK_PROTOCOL_MAX = 256 * 1024;
const HPACK_INITIAL = 4096;
const DEFAULT_MAX_FRAME = 16384;
const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

export const grpcStatusName = (code: number): string => GRPC_CODES[code] ?? `CODE${code}`;

interface FrameHeader {
  length: number;
  type: number;
  flags: number;
  stream: number;
}

function frameHeader(b: Uint8Array, at = 0): FrameHeader {
  return {
    length: (b[at] << 16) | (b[at + 1] << 8) | b[at + 2],
    type: b[at + 3],
    flags: b[at + 4],
    stream: ((b[at + 5] & 0x7f) << 24) | (b[at + 6] << 16) | (b[at + 7] << 8) | b[at + 8],
  };
}

/** A frame header that could open a frame (resynchronisation, mid-stream detection). */
function plausible(h: FrameHeader, maxFrame: number, reservedBit: number): boolean {
  if (reservedBit !== 0 || h.type > T.CONTINUATION || h.length > maxFrame) return false;
  const connectionLevel = h.type === T.SETTINGS || h.type === T.PING || h.type === T.GOAWAY;
  if (connectionLevel !== (h.stream === 0) && h.type !== T.WINDOW_UPDATE) return false;
  if (h.type === T.SETTINGS && h.length % 6 !== 0) return false;
  if (h.type === T.PING && h.length !== 8) return false;
  if ((h.type === T.RST_STREAM || h.type === T.WINDOW_UPDATE) && h.length !== 4) return false;
  if (h.type === T.PRIORITY && h.length !== 5) return false;
  return true;
}

/** First bytes of an HTTP/2 connection: the client preface; mid-stream, whole frames filling the
 *  bytes, one of them a HEADERS frame whose first field tells the side (:status from a server,
 *  :method/:path/:scheme from a client, as static-table indexes). */
export function detectHttp2(b: Uint8Array, cut: boolean, midStream: boolean): { match: Match; sender?: Role } {
  const n = Math.min(b.length, PREFACE.length);
  let prefix = n > 0;
  for (let i = 0; i < n; i++) if (b[i] !== PREFACE[i]) prefix = false;
  if (prefix) return b.length >= PREFACE.length ? { match: 'yes', sender: 'client' } : cut ? { match: 'no' } : { match: 'more' };
  if (!midStream || b.length < FRAME_HEADER) return { match: 'no' };
  let at = 0;
  let sender: Role | undefined;
  while (at + FRAME_HEADER <= b.length) {
    const h = frameHeader(b, at);
    if (!plausible(h, DEFAULT_MAX_FRAME, b[at + 5] & 0x80)) return { match: 'no' };
    if (h.type === T.HEADERS && h.length > 0 && at + FRAME_HEADER + h.length <= b.length) {
      let p = at + FRAME_HEADER;
      if (h.flags & F.PADDED) p++;
      if (h.flags & F.PRIORITY) p += 5;
      const first = b[p];
      if (first >= 0x88 && first <= 0x8e) sender = 'server';
      else if (first >= 0x82 && first <= 0x87) sender = 'client';
    }
    at += FRAME_HEADER + h.length;
  }
  if (at !== b.length && !(cut && at > b.length)) return { match: 'no' };
  return sender ? { match: 'yes', sender } : { match: 'no' };
}

interface H2Stream {
  id: number;
  draft: ExchangeDraft;
  method: string | null;
  path: string | null;
  authority: string | null;
  status: number | null;
  contentType: string | null;
  grpcStatus: number | null;
  grpcMessage: string | null;
  requestHeaders: boolean;
  responseHeaders: boolean;
  requestEnded: boolean;
  responseEnded: boolean;
}

interface Side {
  prefaceLeft: number;
  frame: (FrameHeader & { left: number; keep: Uint8Array[]; kept: number; cut: boolean; startTs: number }) | null;
  /** Header block being gathered (HEADERS/PUSH_PROMISE then CONTINUATION). */
  block: { stream: number; parts: Uint8Array[]; size: number; cut: boolean; endStream: boolean; promised: number | null } | null;
  decoder: Hpack.Decompressor | null;
  /** The error hpack.js reported while decoding the last block. */
  error: Error | null;
  /** Why the decoder was given up. */
  hpackLost: string | null;
  maxFrame: number;
  resyncing: boolean;
}

export class Http2Decoder implements ProtocolDecoder {
  readonly protocol = 'http2' as const;
  private readonly clientDir: Direction;
  private readonly sides: Record<Direction, Side>;
  private readonly streams = new Map<number, H2Stream>();
  private stopped = false;

  constructor(private readonly ctx: ProtocolContext, readonly role: Role) {
    this.clientDir = role === 'client' ? 'tx' : 'rx';
    const side = (dir: Direction): Side => {
      const s = ctx.streams[dir];
      const fromStart = !ctx.midStream && s.position === 0;
      const decoder = hpack().decompressor.create({ table: { maxSize: HPACK_PROTOCOL_MAX } });
      decoder.updateTableSize(HPACK_INITIAL);
      const sd: Side = {
        prefaceLeft: dir === this.clientDir && fromStart ? PREFACE.length : 0,
        frame: null, block: null, decoder, error: null, hpackLost: null, maxFrame: DEFAULT_MAX_FRAME, resyncing: false,
      };
      decoder.on('error', (e) => (sd.error = e));
      return sd;
    };
    this.sides = { tx: side('tx'), rx: side('rx') };
    // The client's preface may be absent when the client side was seen mid-stream.
    const c = ctx.streams[this.clientDir];
    const h = c.head();
    if (this.sides[this.clientDir].prefaceLeft > 0 && h.length > 0 && h[0] !== PREFACE[0]) this.sides[this.clientDir].prefaceLeft = 0;
  }

  pump(): void {
    for (let progress = true; progress && !this.stopped; ) progress = this.read(this.clientDir) || this.read(other(this.clientDir));
  }

  close(): void {
    if (this.stopped) return;
    for (const st of [...this.streams.values()]) {
      if (!st.responseHeaders && st.draft.responseStartNs === null) note(st.draft, 'no-response', false);
      else if (!st.responseEnded) note(st.draft, 'response-cut');
      this.emit(st);
    }
  }

  private loseHpack(dir: Direction, why: string): void {
    const side = this.sides[dir];
    if (side.decoder === null) return;
    side.decoder = null;
    side.hpackLost = why;
  }

  private read(dir: Direction): boolean {
    const s = this.ctx.streams[dir];
    const side = this.sides[dir];
    let progress = false;
    while (!this.stopped) {
      if (side.prefaceLeft > 0) {
        if (s.holeAtHead() > 0) {
          side.prefaceLeft = 0;
          continue;
        }
        const b = s.head();
        const k = Math.min(b.length, side.prefaceLeft);
        if (k === 0) return progress;
        s.consume(k);
        side.prefaceLeft -= k;
        progress = true;
        continue;
      }
      if (!side.frame) {
        if (s.holeAtHead() > 0 || side.resyncing) {
          if (!this.resync(dir)) return progress;
          progress = true;
          continue;
        }
        const b = s.head();
        if (b.length < FRAME_HEADER) {
          if (b.length > 0 && s.headFinal) this.lostFraming(dir);
          return progress;
        }
        const h = frameHeader(b);
        side.frame = { ...h, left: h.length, keep: [], kept: 0, cut: false, startTs: s.tsAt(0) };
        s.consume(FRAME_HEADER);
        this.count(dir, side.frame, FRAME_HEADER);
        progress = true;
      }
      const f = side.frame;
      const keep = f.type === T.HEADERS || f.type === T.CONTINUATION || f.type === T.PUSH_PROMISE || f.type === T.SETTINGS || f.type === T.RST_STREAM;
      while (f.left > 0) {
        const hole = s.holeAtHead();
        let n: number;
        if (hole > 0) {
          n = s.skip(Math.min(hole, f.left));
          f.cut = true;
        } else {
          n = Math.min(s.headLength, f.left);
          if (n === 0) break;
          if (keep && !f.cut && f.kept + n <= MAX_BLOCK) {
            f.keep.push(s.head().slice(0, n));
            f.kept += n;
          } else if (keep) f.cut = true;
          s.consume(n);
        }
        f.left -= n;
        this.count(dir, f, n);
        progress = true;
      }
      if (f.left > 0) return progress;
      side.frame = null;
      this.frame(dir, f, f.keep.length === 1 ? f.keep[0] : Buffer.concat(f.keep));
    }
    return progress;
  }

  /** A frame header should be where a hole (or a cut) is: the framing of this direction is lost.
   *  Header blocks in the lost bytes would leave HPACK behind: its decoding stops. */
  private lostFraming(dir: Direction): void {
    const side = this.sides[dir];
    side.resyncing = true;
    side.block = null;
    this.loseHpack(dir, 'frames lost');
    for (const st of this.streams.values()) note(st.draft, 'gap');
  }

  /** Skips to the next call start that reads as a frame header. */
  private resync(dir: Direction): boolean {
    const s = this.ctx.streams[dir];
    const side = this.sides[dir];
    if (!side.resyncing) this.lostFraming(dir);
    for (;;) {
      if (s.holeAtHead() > 0 || !s.atChunkStart()) {
        if (!s.skipToNextChunk()) return false;
        continue;
      }
      const b = s.head();
      if (b.length < FRAME_HEADER) return false;
      if (plausible(frameHeader(b), side.maxFrame, b[5] & 0x80)) {
        side.resyncing = false;
        return true;
      }
      if (!s.skipToNextChunk()) return false;
    }
  }

  private stream(id: number, dir: Direction): H2Stream | null {
    let st = this.streams.get(id);
    if (!st) {
      if (this.streams.size >= this.ctx.settings.maxPending) {
        this.stopped = true;
        this.ctx.fail(`more than ${this.ctx.settings.maxPending} streams open`);
        return null;
      }
      st = {
        id, draft: newDraft(), method: null, path: null, authority: null, status: null, contentType: null, grpcStatus: null, grpcMessage: null,
        requestHeaders: false, responseHeaders: false, requestEnded: false, responseEnded: false,
      };
      // Server-initiated (pushed) streams have their request in a PUSH_PROMISE; others in the client's HEADERS.
      if (dir !== this.clientDir && id % 2 === 1) note(st.draft, 'no-request');
      this.streams.set(id, st);
    }
    return st;
  }

  /** Frame bytes (header + payload) of DATA / HEADERS / CONTINUATION count for their stream. */
  private count(dir: Direction, f: FrameHeader & { startTs: number }, n: number): void {
    if (f.stream === 0 || (f.type !== T.DATA && f.type !== T.HEADERS && f.type !== T.CONTINUATION)) return;
    const st = this.stream(f.stream, dir);
    if (!st) return;
    const d = st.draft;
    const end = this.ctx.streams[dir].lastTsNs;
    if (dir === this.clientDir) {
      d.requestStartNs ??= f.startTs;
      d.requestBytes += n;
      d.requestEndNs = end;
    } else {
      d.responseStartNs ??= f.startTs;
      d.responseBytes += n;
      d.responseEndNs = end;
    }
  }

  private frame(dir: Direction, f: FrameHeader & { cut: boolean }, payload: Uint8Array): void {
    const side = this.sides[dir];
    if (side.block && f.type !== T.CONTINUATION) {
      // A header block must be continued right away (RFC 9113 6.10): it was not.
      side.block = null;
      this.loseHpack(dir, 'header block interrupted');
    }
    switch (f.type) {
      case T.DATA: {
        const st = this.stream(f.stream, dir);
        if (st && f.flags & F.END_STREAM) this.ended(st, dir);
        return;
      }
      case T.HEADERS:
      case T.PUSH_PROMISE: {
        let at = 0;
        let pad = 0;
        if (f.flags & F.PADDED) {
          pad = payload[0] ?? 0;
          at = 1;
        }
        let promised: number | null = null;
        if (f.type === T.PUSH_PROMISE) {
          promised = ((payload[at] & 0x7f) << 24) | (payload[at + 1] << 16) | (payload[at + 2] << 8) | payload[at + 3];
          at += 4;
        } else if (f.flags & F.PRIORITY) at += 5;
        const end = f.cut ? payload.length : Math.max(at, payload.length - pad);
        side.block = { stream: f.stream, parts: [payload.subarray(at, end)], size: end - at, cut: f.cut, endStream: f.type === T.HEADERS && (f.flags & F.END_STREAM) !== 0, promised };
        if (f.flags & F.END_HEADERS) this.blockDone(dir);
        return;
      }
      case T.CONTINUATION: {
        const b = side.block;
        if (!b || b.stream !== f.stream) {
          side.block = null;
          this.loseHpack(dir, 'CONTINUATION without HEADERS');
          return;
        }
        b.parts.push(payload);
        b.size += payload.length;
        b.cut ||= f.cut;
        if (f.flags & F.END_HEADERS) this.blockDone(dir);
        return;
      }
      case T.RST_STREAM: {
        const st = this.streams.get(f.stream);
        if (!st) return;
        const code = payload.length >= 4 ? ((payload[0] << 24) | (payload[1] << 16) | (payload[2] << 8) | payload[3]) >>> 0 : null;
        note(st.draft, `reset${code === null ? '' : `:${code}`}`, !st.responseEnded);
        this.emit(st);
        return;
      }
      case T.SETTINGS: {
        if (f.flags & F.ACK || f.cut) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = (payload[i] << 8) | payload[i + 1];
          const value = ((payload[i + 2] << 24) | (payload[i + 3] << 16) | (payload[i + 4] << 8) | payload[i + 5]) >>> 0;
          // MAX_FRAME_SIZE bounds the frames sent to the one that said it.
          if (id === 5 && value >= DEFAULT_MAX_FRAME && value < 1 << 24) this.sides[other(dir)].maxFrame = value;
        }
        return;
      }
      default:
        return;
    }
  }

  private blockDone(dir: Direction): void {
    const side = this.sides[dir];
    const b = side.block!;
    side.block = null;
    const target = b.promised ?? b.stream;
    const st = this.stream(target, b.promised !== null ? this.clientDir : dir);
    if (!st) return;
    if (b.promised !== null) note(st.draft, 'pushed', false);
    let fields: Hpack.HeaderField[] | null = null;
    if (b.cut || b.size > MAX_BLOCK) this.loseHpack(dir, 'header block past the copy limit');
    else if (side.decoder) fields = this.decode(dir, b.parts.length === 1 ? b.parts[0] : Buffer.concat(b.parts));
    const requestSide = dir === this.clientDir || b.promised !== null;
    if (fields) this.apply(st, fields, requestSide);
    else note(st.draft, side.hpackLost === null ? 'hpack-unavailable' : `hpack-unavailable:${side.hpackLost}`);
    if (requestSide) st.requestHeaders = true;
    else if (fields === null || st.status === null || st.status >= 200) st.responseHeaders = true;
    if (b.endStream) this.ended(st, dir);
  }

  private decode(dir: Direction, block: Uint8Array): Hpack.HeaderField[] | null {
    const side = this.sides[dir];
    const d = side.decoder!;
    side.error = null;
    let error: Error | null = null;
    const out: Hpack.HeaderField[] = [];
    try {
      d.write(Buffer.from(block.buffer, block.byteOffset, block.byteLength));
      d.execute();
      for (let h = d.read(); h !== null; h = d.read()) out.push(h);
    } catch (e) {
      error = e as Error;
    }
    if (error !== null || side.error !== null) {
      this.loseHpack(dir, this.ctx.midStream ? 'dynamic table entry from before the trace' : 'HPACK error');
      return null;
    }
    return out;
  }

  private apply(st: H2Stream, fields: Hpack.HeaderField[], requestSide: boolean): void {
    for (const { name, value } of fields) {
      if (requestSide) {
        if (name === ':method') st.method = printable(value, 32);
        else if (name === ':path') st.path = printable(normalizePath(value, this.ctx.settings.keepQueryValues));
        else if (name === ':authority' || (name === 'host' && st.authority === null)) st.authority = printable(value.toLowerCase(), 255);
        else if (name === 'content-type') st.contentType ??= printable(value, 128);
        continue;
      }
      if (name === ':status') {
        const code = Number(value);
        if (Number.isInteger(code)) st.status = code >= 200 || st.status === null ? code : st.status;
      } else if (name === 'grpc-status') {
        const code = Number(value);
        if (Number.isInteger(code)) st.grpcStatus = code;
      } else if (name === 'grpc-message') st.grpcMessage = printable(decodeURIComponentSafe(value), 200);
      else if (name === 'content-type') st.contentType ??= printable(value, 128);
    }
  }

  private ended(st: H2Stream, dir: Direction): void {
    if (dir === this.clientDir && st.draft.notes.includes('pushed') === false) st.requestEnded = true;
    else st.responseEnded = true;
    if (st.responseEnded && (st.requestEnded || st.draft.notes.includes('no-request') || st.draft.notes.includes('pushed'))) this.emit(st);
  }

  private emit(st: H2Stream): void {
    if (!this.streams.delete(st.id)) return;
    const grpc = st.contentType !== null && st.contentType.startsWith('application/grpc');
    const protocol: ExchangeProtocol = grpc ? 'grpc' : 'http2';
    const detail: HttpDetail = {
      kind: 'http', method: st.method, path: st.path, host: st.authority, status: st.status, streamId: st.id, contentType: st.contentType,
    };
    if (grpc) {
      detail.grpcStatus = st.grpcStatus;
      if (st.grpcMessage !== null && st.grpcStatus !== 0) detail.grpcMessage = st.grpcMessage;
    }
    const status = grpc && st.grpcStatus !== null ? grpcStatusName(st.grpcStatus) : st.status === null ? '' : String(st.status);
    const error = (st.status !== null && st.status >= 500) || (grpc && st.grpcStatus !== null && st.grpcStatus !== 0);
    this.ctx.emit(finish(this.ctx, st.draft, {
      protocol,
      role: this.role,
      operation: st.method === null ? '?' : `${st.method} ${st.path ?? '?'}`,
      status,
      error,
      host: st.authority,
      detail,
    }));
  }
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
