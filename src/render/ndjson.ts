// SPDX-License-Identifier: MIT
// The bytes of detail mode's per-call NDJSON lines, written straight into a buffer: hundreds of thousands
// of lines a second, where building a string per line (number-to-string conversions, concatenation,
// then flattening and UTF-8 encoding the whole batch) was the largest cost of the tracer's main thread.
// The text is exactly eventLine()'s (a unit test compares them over many random records). Pure.

/** Writes the decimal digits of a non-negative integer (below 2^53) at `pos`; returns the new end. */
export function writeUint(buf: Uint8Array, pos: number, n: number): number {
  if (n < 10) {
    buf[pos] = 48 + n;
    return pos + 1;
  }
  let digits = 1;
  for (let t = n; t >= 10; t = Math.floor(t / 10)) digits++;
  let at = pos + digits;
  for (let t = n; at > pos; t = Math.floor(t / 10)) buf[--at] = 48 + (t % 10);
  return pos + digits;
}

/** An integer (below 2^53 in magnitude) as JSON writes it. */
export function writeInt(buf: Uint8Array, pos: number, n: number): number {
  if (n < 0) {
    buf[pos] = 45; /* - */
    return writeUint(buf, pos + 1, -n);
  }
  return writeUint(buf, pos, n);
}

/** `us / 1000` as JSON writes it (Number's shortest form): integer part, then up to three decimals
 *  without trailing zeros. `us` is an integer number of microseconds (below 2^53 in magnitude). */
export function writeMillis(buf: Uint8Array, pos: number, us: number): number {
  if (us < 0) {
    buf[pos++] = 45;
    us = -us;
  }
  const frac = us % 1000;
  pos = writeUint(buf, pos, (us - frac) / 1000);
  if (frac === 0) return pos;
  buf[pos++] = 46; /* . */
  const d1 = Math.floor(frac / 100);
  const d2 = Math.floor(frac / 10) % 10;
  const d3 = frac % 10;
  buf[pos++] = 48 + d1;
  if (d2 === 0 && d3 === 0) return pos;
  buf[pos++] = 48 + d2;
  if (d3 === 0) return pos;
  buf[pos++] = 48 + d3;
  return pos;
}

export function writeAscii(buf: Uint8Array, pos: number, bytes: Uint8Array): number {
  buf.set(bytes, pos);
  return pos + bytes.length;
}

const enc = (s: string) => Buffer.from(s, 'latin1');
export const CALL_PREFIX = enc('{"type":"call","tMs":');
export const PID = enc(',"pid":');
export const TID = enc(',"tid":');
export const DIRECTION_TX = enc(',"direction":"tx","bytes":');
export const DIRECTION_RX = enc(',"direction":"rx","bytes":');
export const LINE_END = enc('}\n');

/** Longest line writeCallLine() makes besides its key fragment: fixed parts plus five numbers. */
export const CALL_LINE_MAX_FIXED = CALL_PREFIX.length + PID.length + 1 + TID.length + DIRECTION_TX.length + LINE_END.length + 5 * 24;

/**
 * `{"type":"call","tMs":…,"pid":…,<fragment>,"tid":…,"direction":"tx|rx","bytes":…}\n` at `pos`;
 * `fragment` is the UTF-8 of the key's fields (startTimeNs included). The caller makes room for
 * CALL_LINE_MAX_FIXED + fragment.length bytes. Returns the new end.
 */
export function writeCallLine(
  buf: Uint8Array,
  pos: number,
  us: number,
  pid: number,
  fragment: Uint8Array,
  tid: number,
  direction: 'tx' | 'rx',
  bytes: number,
): number {
  pos = writeAscii(buf, pos, CALL_PREFIX);
  pos = writeMillis(buf, pos, us);
  pos = writeAscii(buf, pos, PID);
  pos = writeUint(buf, pos, pid);
  buf[pos++] = 44; /* , */
  pos = writeAscii(buf, pos, fragment);
  pos = writeAscii(buf, pos, TID);
  pos = writeUint(buf, pos, tid);
  pos = writeAscii(buf, pos, direction === 'tx' ? DIRECTION_TX : DIRECTION_RX);
  pos = writeInt(buf, pos, bytes);
  return writeAscii(buf, pos, LINE_END);
}
