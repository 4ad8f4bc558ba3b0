// SPDX-License-Identifier: MIT
// One direction of a connection as a decoder reads it: the copied bytes at the head (contiguous, with
// the time of the call that moved each part), then what follows them, holes included. A hole is a
// run of stream bytes whose content is unknown but whose length is: a call's tail past the copy limit
// or not in user memory (sendfile), or a lost record (the next offset jumped). Decoders consume bytes
// they parsed and skip bytes they only need to count (bodies), through holes alike.
import type { DataChunk } from './types';

interface Hole {
  hole: true;
  length: number;
  tsNs: number;
  /** A lost record (offset jump), not an uncopied tail. */
  lost: boolean;
}
interface Piece {
  hole: false;
  bytes: Uint8Array;
  tsNs: number;
}

const INITIAL_CAPACITY = 1024;
/** Chunk-start marks a stream keeps room for once its head empties (more are dropped then: bounded memory). */
const MAX_KEPT_MARKS = 256;

export class ByteStream {
  /** Head: copied bytes buf[start, end), stream positions [position, position + end - start). */
  private buf: Uint8Array = new Uint8Array(0);
  /** The stream's own memory for the head: buf is it, unless borrowed. */
  private own = new Uint8Array(0);
  /** buf is a pushed chunk's bytes (a view of the caller's batch), read in place until settle(). */
  private borrowed = false;
  private start = 0;
  private end = 0;
  /** Chunk starts inside (or just before) the head: stream positions and call times, ascending. */
  private markPos: number[] = [];
  private markTs: number[] = [];
  /** Marks in use: markPos/markTs[0, marks). The arrays are reused, not emptied (a JS array set to
   *  length 0 drops its backing store, and the next push allocates one again: two per chunk). */
  private marks = 0;
  /** What follows the head once a hole came: holes and pieces, in stream order. */
  private queue: Array<Hole | Piece> = [];
  private expected: number | null = null;
  /** Stream position of the next unconsumed byte. */
  position = 0;
  /** Time of the call that moved the last consumed (or skipped) byte. */
  lastTsNs = 0;
  /** The first chunk started past offset 0. */
  midStream = false;
  /** Bytes known lost (offset jumps) and not copied (tails), so far. */
  lostBytes = 0;
  uncopiedBytes = 0;
  /** Chunks pushed. */
  chunks = 0;

  /** Appends one call's bytes. Chunks behind what was already seen are dropped or trimmed. */
  push(c: DataChunk): void {
    let offset = c.offset;
    let length = c.length;
    if (!Number.isFinite(offset) || !Number.isFinite(length) || length <= 0 || offset < 0) return;
    let bytes = c.bytes.length > length ? c.bytes.subarray(0, length) : c.bytes;
    if (this.expected === null) {
      this.expected = offset;
      this.position = offset;
      this.midStream = offset > 0;
    }
    if (offset + length <= this.expected) return;
    if (offset < this.expected) {
      const trim = this.expected - offset;
      bytes = bytes.subarray(Math.min(trim, bytes.length));
      length -= trim;
      offset = this.expected;
    }
    this.chunks++;
    if (offset > this.expected) {
      this.lostBytes += offset - this.expected;
      this.appendHole(offset - this.expected, c.tsNs, true);
    }
    if (bytes.length > 0) this.appendBytes(bytes, c.tsNs);
    if (length > bytes.length) {
      this.uncopiedBytes += length - bytes.length;
      this.appendHole(length - bytes.length, c.tsNs, false);
    }
    this.expected = offset + length;
  }

  /** The copied bytes at the head, up to the first hole (a view: valid until the next push or consume). */
  head(): Uint8Array {
    return this.buf.subarray(this.start, this.end);
  }

  get headLength(): number {
    return this.end - this.start;
  }

  /** The head cannot grow any more: a hole (or bytes after one) follows it. */
  get headFinal(): boolean {
    return this.queue.length > 0;
  }

  /** Length of the hole at the head (0 when the head holds bytes or nothing is known). */
  holeAtHead(): number {
    if (this.end > this.start || this.queue.length === 0) return 0;
    const q = this.queue[0];
    return q.hole ? q.length : 0;
  }

  /** The head is a lost record rather than an uncopied tail. */
  holeAtHeadLost(): boolean {
    const q = this.queue[0];
    return this.end === this.start && q !== undefined && q.hole && q.lost;
  }

  /** Bytes known after the position: copied, queued and holes. */
  get known(): number {
    let n = this.end - this.start;
    for (const q of this.queue) n += q.hole ? q.length : q.bytes.length;
    return n;
  }

  /** Copied bytes held (the memory the stream uses for data). */
  get buffered(): number {
    let n = this.end - this.start;
    for (const q of this.queue) if (!q.hole) n += q.bytes.length;
    return n;
  }

  /** Nothing is known past the position. */
  get empty(): boolean {
    return this.end === this.start && this.queue.length === 0;
  }

  /** Call time of the byte `k` bytes into the head (the head's first byte by default). */
  tsAt(k = 0): number {
    if (this.end === this.start) {
      const q = this.queue[0];
      return q ? q.tsNs : this.lastTsNs;
    }
    const p = this.position + k;
    let i = this.marks - 1;
    while (i > 0 && this.markPos[i] > p) i--;
    return i >= 0 ? this.markTs[i] : this.lastTsNs;
  }

  /** The head's first byte starts a call's bytes (a likely message boundary). */
  atChunkStart(): boolean {
    if (this.end === this.start) return this.queue.length > 0 && !this.queue[0].hole;
    for (let i = 0; i < this.marks; i++) if (this.markPos[i] === this.position) return true;
    return false;
  }

  /** Offset in the head of the next call's first byte after the head's first byte, or -1. */
  nextChunkStart(): number {
    for (let i = 0; i < this.marks; i++) {
      const p = this.markPos[i];
      if (p > this.position && p < this.position + this.headLength) return p - this.position;
    }
    return -1;
  }

  /** Offsets in the head where a call's bytes start. */
  chunkStarts(): Set<number> {
    const out = new Set<number>();
    for (let i = 0; i < this.marks; i++) if (this.markPos[i] >= this.position) out.add(this.markPos[i] - this.position);
    return out;
  }

  /** Consumes n bytes of the head (n <= headLength). */
  consume(n: number): void {
    if (n <= 0) return;
    if (n > this.end - this.start) n = this.end - this.start;
    this.lastTsNs = this.tsAt(n - 1);
    this.start += n;
    this.position += n;
    this.pruneMarks();
    if (this.start === this.end) this.promote();
  }

  /** Consumes up to n bytes, head and holes and queued bytes alike; returns how many (less when the
   *  stream holds less so far). */
  skip(n: number): number {
    let done = 0;
    while (done < n) {
      const h = this.end - this.start;
      if (h > 0) {
        const k = Math.min(h, n - done);
        this.consume(k);
        done += k;
        continue;
      }
      const q = this.queue[0];
      if (!q) break;
      if (!q.hole) {
        this.promote();
        continue;
      }
      const k = Math.min(q.length, n - done);
      q.length -= k;
      done += k;
      this.position += k;
      this.lastTsNs = q.tsNs;
      if (q.length === 0) {
        this.queue.shift();
        this.promote();
      }
    }
    return done;
  }

  /** Drops everything known: the next bytes pushed start the head. Returns the bytes dropped. */
  skipAll(): number {
    return this.skip(this.known);
  }

  /** Drops bytes up to the next call's first byte (in the head, or after holes). Returns false when
   *  no call start is known yet (everything was dropped). */
  skipToNextChunk(): boolean {
    const k = this.nextChunkStart();
    if (k > 0) {
      this.consume(k);
      return true;
    }
    this.consume(this.headLength);
    while (this.end === this.start && this.queue.length > 0 && this.queue[0].hole) this.skip(this.holeAtHead());
    return this.headLength > 0;
  }

  private appendHole(length: number, tsNs: number, lost: boolean): void {
    const last = this.queue[this.queue.length - 1];
    if (last && last.hole && last.lost === lost) {
      last.length += length;
      last.tsNs = tsNs;
    } else this.queue.push({ hole: true, length, tsNs, lost });
  }

  /**
   * The pushed chunk's bytes are not copied when they start an empty head (the usual case: each call
   * holds whole messages): the decoder reads them where they are, and settle() copies what it left.
   */
  settle(): void {
    if (this.borrowed) this.adopt();
  }

  private appendBytes(bytes: Uint8Array, tsNs: number): void {
    if (this.queue.length > 0) {
      this.queue.push({ hole: false, bytes: bytes.slice(), tsNs });
      return;
    }
    if (this.start === this.end) {
      // an empty head has no marks (promote() cleared them)
      this.buf = bytes;
      this.start = 0;
      this.end = bytes.length;
      this.borrowed = true;
      this.mark(this.position, tsNs);
      return;
    }
    this.appendHead(bytes, tsNs);
  }

  /** Copies a borrowed head into the stream's own memory. */
  private adopt(): void {
    const len = this.end - this.start;
    if (this.own.length < len) {
      let cap = Math.max(INITIAL_CAPACITY, this.own.length);
      while (cap < len) cap *= 2;
      this.own = new Uint8Array(cap);
    }
    this.own.set(this.buf.subarray(this.start, this.end));
    this.buf = this.own;
    this.start = 0;
    this.end = len;
    this.borrowed = false;
  }

  private appendHead(bytes: Uint8Array, tsNs: number): void {
    if (this.borrowed) this.adopt();
    const len = this.end - this.start;
    if (this.end + bytes.length > this.buf.length) {
      if (len + bytes.length <= this.buf.length && this.start > 0) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let cap = Math.max(INITIAL_CAPACITY, this.buf.length);
        while (cap < len + bytes.length) cap *= 2;
        const next = new Uint8Array(cap);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = this.own = next;
      }
      this.start = 0;
      this.end = len;
    }
    this.buf.set(bytes, this.end);
    this.mark(this.position + len, tsNs);
    this.end += bytes.length;
  }

  /** Moves queued bytes into the empty head, up to the next hole. */
  private promote(): void {
    if (this.end !== this.start) return;
    this.start = this.end = 0;
    this.marks = 0;
    if (this.markPos.length > MAX_KEPT_MARKS) {
      this.markPos = [];
      this.markTs = [];
    }
    if (this.own.length > 64 * INITIAL_CAPACITY) this.own = new Uint8Array(0);
    this.buf = this.own;
    this.borrowed = false;
    while (this.queue.length > 0 && !this.queue[0].hole) {
      const p = this.queue.shift() as Piece;
      this.appendHead(p.bytes, p.tsNs);
    }
  }

  private pruneMarks(): void {
    let drop = 0;
    while (drop + 1 < this.marks && this.markPos[drop + 1] <= this.position) drop++;
    if (drop > 0) {
      this.markPos.copyWithin(0, drop, this.marks);
      this.markTs.copyWithin(0, drop, this.marks);
      this.marks -= drop;
    }
  }

  private mark(position: number, tsNs: number): void {
    this.markPos[this.marks] = position;
    this.markTs[this.marks] = tsNs;
    this.marks++;
  }
}

/** latin1 text of bytes (one char per byte: offsets stay byte offsets). */
export function latin1(bytes: Uint8Array, start = 0, end = bytes.length): string {
  // Buffer's native latin1 decoder over the same memory: String.fromCharCode(...spread) was a quarter
  // of proctap's CPU under --l7 on nginx (profile of bench step 8).
  const from = Math.max(0, Math.min(start, bytes.length));
  const to = Math.max(from, Math.min(end, bytes.length));
  if (bytes instanceof Buffer) return bytes.toString('latin1', from, to);
  return Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).toString('latin1');
}

/*
 * latin1() of short byte strings that recur (methods, paths, header values: the same on every request
 * of a connection), from a small direct-mapped table: a hash and a compare of the bytes in JS cost less
 * than a call into the native decoder and a new string. A hit compares every byte, never a guess.
 */
const INTERN_SLOTS = 1024;
const INTERN_MAX = 96;
const internBytes: Array<Uint8Array | null> = new Array(INTERN_SLOTS).fill(null);
const internText: string[] = new Array(INTERN_SLOTS).fill('');

export function latin1Interned(bytes: Uint8Array, start: number, end: number): string {
  const n = end - start;
  if (n <= 0) return '';
  if (n > INTERN_MAX || end > bytes.length) return latin1(bytes, start, end);
  let h = n;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  const slot = (h >>> 0) & (INTERN_SLOTS - 1);
  const known = internBytes[slot];
  if (known !== null && known.length === n) {
    let k = 0;
    while (k < n && known[k] === bytes[start + k]) k++;
    if (k === n) return internText[slot];
  }
  const text = latin1(bytes, start, end);
  internBytes[slot] = bytes.slice(start, end);
  internText[slot] = text;
  return text;
}

/** Index of `needle` in bytes from `from`, or -1. */
export function indexOf(bytes: Uint8Array, needle: number[], from = 0): number {
  const n = needle.length;
  const first = needle[0];
  for (let i = bytes.indexOf(first, from); i >= 0 && i + n <= bytes.length; i = bytes.indexOf(first, i + 1)) {
    let k = 1;
    while (k < n && bytes[i + k] === needle[k]) k++;
    if (k === n) return i;
  }
  return -1;
}
