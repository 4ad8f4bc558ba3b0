// SPDX-License-Identifier: MIT
// Test side of the L7 decoders: conversations as a list of calls (direction, bytes, time), delivered
// to a ConnectionDecoder whole, split, merged or cut, and the exchanges reduced to what a test compares.
import { ConnectionDecoder } from '../../src/l7/connection';
import type { DataChunk, DecoderOptions, Direction, Exchange } from '../../src/l7/types';

export interface Call {
  dir: Direction;
  bytes: Uint8Array;
  /** Bytes the call moved when more than were copied (uncopied tail); default bytes.length. */
  length?: number;
  tsNs: number;
  tls?: boolean;
}

export const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));
export const concat = (...parts: Array<Uint8Array | number[]>): Uint8Array => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p as Uint8Array))));

/** A conversation with times 1 ms apart, from a list of [direction, bytes]. */
export function conversation(parts: Array<[Direction, Uint8Array | string]>, t0 = 1_000_000, step = 1_000_000): Call[] {
  return parts.map(([dir, b], i) => ({ dir, bytes: typeof b === 'string' ? bytes(b) : b, tsNs: t0 + i * step }));
}

/** Calls as chunks with stream offsets (each direction counted apart; tls plaintext apart too). */
export function chunksOf(calls: Call[], startOffset: Partial<Record<string, number>> = {}): DataChunk[] {
  const off: Record<string, number> = { tx: 0, rx: 0, 'tls-tx': 0, 'tls-rx': 0, ...startOffset };
  return calls.map((c) => {
    const k = c.tls ? `tls-${c.dir}` : c.dir;
    const length = c.length ?? c.bytes.length;
    const chunk: DataChunk = { direction: c.dir, tsNs: c.tsNs, offset: off[k], length, bytes: c.bytes, tls: c.tls };
    off[k] += length;
    return chunk;
  });
}

/** Each call split in two at `at` (when inside it), the second part 1 ns later. */
export function splitAt(calls: Call[], index: number, at: number): Call[] {
  const out: Call[] = [];
  calls.forEach((c, i) => {
    if (i !== index || at <= 0 || at >= c.bytes.length || c.length !== undefined) return void out.push(c);
    out.push({ ...c, bytes: c.bytes.subarray(0, at) }, { ...c, bytes: c.bytes.subarray(at), tsNs: c.tsNs });
  });
  return out;
}

/** Every call cut into pieces of `size` bytes. */
export function pieces(calls: Call[], size: number): Call[] {
  const out: Call[] = [];
  for (const c of calls) {
    if (c.length !== undefined) {
      out.push(c);
      continue;
    }
    for (let i = 0; i < c.bytes.length; i += size) out.push({ ...c, bytes: c.bytes.subarray(i, i + size) });
  }
  return out;
}

/** Consecutive calls in one direction merged into one (the first one's time). */
export function merged(calls: Call[]): Call[] {
  const out: Call[] = [];
  for (const c of calls) {
    const last = out[out.length - 1];
    if (last && last.dir === c.dir && last.tls === c.tls && last.length === undefined && c.length === undefined) {
      out[out.length - 1] = { ...last, bytes: concat(last.bytes, c.bytes) };
    } else out.push(c);
  }
  return out;
}

/** Feeds the calls (those in `lost` are left out, their offsets kept: a gap) and closes. */
export function run(
  calls: Call[],
  options: DecoderOptions = { transport: 'tcp' },
  startOffset?: Partial<Record<string, number>>,
  lost: Set<number> = new Set(),
): { exchanges: Exchange[]; decoder: ConnectionDecoder } {
  const decoder = new ConnectionDecoder(options);
  const exchanges: Exchange[] = [];
  chunksOf(calls, startOffset).forEach((c, i) => {
    if (!lost.has(i)) exchanges.push(...decoder.push(c));
  });
  exchanges.push(...decoder.close(calls.length ? calls[calls.length - 1].tsNs + 1 : 0));
  return { exchanges, decoder };
}

/** What a test compares of an exchange: no times (splitting moves them by 0 ns at most anyway). */
export function brief(x: Exchange): string {
  return `${x.protocol} ${x.role} ${x.operation} -> ${x.status}${x.error ? ' (error)' : ''} req=${x.requestBytes} res=${x.responseBytes}${x.partial ? ' partial' : ''}${x.notes.length ? ` [${x.notes.join(',')}]` : ''}`;
}

export const briefs = (xs: Exchange[]): string[] => xs.map(brief);

/** A seeded PRNG (mulberry32): the fuzz tests repeat exactly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(rand: () => number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Every way of splitting one call of the conversation in two gives the same exchanges as whole. */
export function everySplit(calls: Call[], options?: DecoderOptions): { checked: number; mismatch: string | null } {
  const want = briefs(run(calls, options).exchanges);
  let checked = 0;
  for (let i = 0; i < calls.length; i++) {
    for (let at = 1; at < calls[i].bytes.length; at++) {
      const got = briefs(run(splitAt(calls, i, at), options).exchanges);
      checked++;
      if (JSON.stringify(got) !== JSON.stringify(want)) return { checked, mismatch: `call ${i} split at ${at}: ${JSON.stringify(got)} != ${JSON.stringify(want)}` };
    }
  }
  return { checked, mismatch: null };
}
