// SPDX-License-Identifier: MIT
// What every protocol decoder shares: the two streams of its connection, where exchanges go, and
// how it says it gave up. A decoder is pumped after every chunk and decodes what the streams hold.
import type { ByteStream } from './stream';
import type { Direction, Exchange, ExchangeDetail, ExchangeProtocol, L7Protocol, Role } from './types';

export interface DecoderSettings {
  bufferCap: number;
  keepQueryValues: boolean;
  maxPending: number;
}

export interface ProtocolContext {
  streams: Record<Direction, ByteStream>;
  settings: DecoderSettings;
  /** Plaintext from a TLS library. */
  tls: boolean;
  /** Either stream was seen mid-stream. */
  midStream: boolean;
  emit(x: Exchange): void;
  /** Stop decoding: the stream cannot be followed. */
  fail(reason: string): void;
  /** Stop decoding on purpose: nothing more to decode. */
  opaque(reason: string): void;
}

export interface ProtocolDecoder {
  readonly protocol: L7Protocol;
  readonly role: Role | null;
  /** Decode what the streams hold. */
  pump(): void;
  /** The connection closed (or the trace ended): give the exchanges in flight what they have. */
  close(tsNs: number): void;
}

export const other = (d: Direction): Direction => (d === 'tx' ? 'rx' : 'tx');
/** The direction the traced process sends requests in, given its role. */
export const requestDirection = (role: Role): Direction => (role === 'client' ? 'tx' : 'rx');

/** The part of an exchange a decoder fills in as the messages go by. */
export interface ExchangeDraft {
  requestBytes: number;
  responseBytes: number;
  requestStartNs: number | null;
  requestEndNs: number | null;
  responseStartNs: number | null;
  responseEndNs: number | null;
  partial: boolean;
  notes: string[];
}

export function newDraft(): ExchangeDraft {
  return { requestBytes: 0, responseBytes: 0, requestStartNs: null, requestEndNs: null, responseStartNs: null, responseEndNs: null, partial: false, notes: [] };
}

export function note(d: ExchangeDraft, why: string, partial = true): void {
  if (!d.notes.includes(why)) d.notes.push(why);
  if (partial) d.partial = true;
}

export function finish(
  ctx: ProtocolContext,
  d: ExchangeDraft,
  x: { protocol: ExchangeProtocol; role: Role; operation: string; status: string; error: boolean; host: string | null; detail: ExchangeDetail },
): Exchange {
  const first = d.requestStartNs !== null && d.responseStartNs !== null ? Math.max(0, d.responseStartNs - d.requestStartNs) : null;
  const last = d.requestStartNs !== null && d.responseEndNs !== null ? Math.max(0, d.responseEndNs - d.requestStartNs) : null;
  if (ctx.midStream && !d.notes.includes('mid-stream')) d.notes.push('mid-stream');
  return {
    protocol: x.protocol,
    role: x.role,
    operation: x.operation,
    status: x.status,
    error: x.error,
    host: x.host,
    requestBytes: d.requestBytes,
    responseBytes: d.responseBytes,
    requestStartNs: d.requestStartNs,
    requestEndNs: d.requestEndNs,
    responseStartNs: d.responseStartNs,
    responseEndNs: d.responseEndNs,
    latencyFirstNs: first,
    latencyLastNs: last,
    tls: ctx.tls,
    partial: d.partial,
    notes: d.notes,
    detail: x.detail,
  };
}

/** Printable ASCII as is, other bytes as \xHH: names and paths from the wire never carry control bytes out. */
const PRINTABLE = /^[\x20-\x7e]*$/;

export function printable(s: string, max = 1000): string {
  if (s.length <= max && PRINTABLE.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length && out.length < max; i++) {
    const c = s.charCodeAt(i);
    out += c >= 0x20 && c < 0x7f ? s[i] : `\\x${c.toString(16).padStart(2, '0')}`;
  }
  return out.length > max ? out.slice(0, max) : out;
}
