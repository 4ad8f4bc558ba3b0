// SPDX-License-Identifier: MIT
// HTTP/1.x (RFC 9112): request and status lines, the headers that frame a body (Content-Length,
// Transfer-Encoding: chunked, none: read until close), keep-alive and pipelining (responses answer
// requests in order), bodies skipped by length so that uncopied bytes (sendfile) still count exactly.
// When the framing is lost (headers past the copy limit, a gap, junk) a direction resynchronises at
// the next request or status line that starts a call or a line; the bytes until then belong to the
// message in progress, which is marked partial.
import { finish, newDraft, note, other, printable, requestDirection, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import { latin1, latin1Interned, type ByteStream } from './stream';
import type { Direction, HttpDetail, Role } from './types';

const METHODS = new Set([
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK', 'REPORT', 'SEARCH', 'PURGE', 'MKCALENDAR',
]);
const MAX_METHOD = 11; // MKCALENDAR + 1
/** Longest start line or header block looked for (nginx's large_client_header_buffers is 8 KiB a line). */
const MAX_HEAD = 64 * 1024;
const MAX_CHUNK_LINE = 1024;
const LF = 0x0a;
/** TypedArray's own indexOf (a chunk's bytes may be a Buffer, whose indexOf wraps it in JS argument handling). */
const U8_INDEX_OF = Uint8Array.prototype.indexOf;
const CR = 0x0d;
const SP = 0x20;

export type Match = 'yes' | 'no' | 'more';

const isTokenUpper = (b: number) => b >= 0x41 && b <= 0x5a;
const isVisible = (b: number) => b > 0x20 && b < 0x7f;

/** Does `b[at..]` start a request line ("GET /x HTTP/1.1")? 'more': a prefix of one so far. `cut`:
 *  no more bytes will come on this line (copy limit), so a plausible method and target say yes. */
export function matchRequestLine(b: Uint8Array, at = 0, cut = false): Match {
  let i = at;
  while (i < b.length && i - at < MAX_METHOD && isTokenUpper(b[i])) i++;
  if (i === b.length) return i - at < MAX_METHOD && !cut ? 'more' : 'no';
  if (b[i] !== SP || !METHODS.has(latin1Interned(b, at, i))) return 'no';
  const targetStart = ++i;
  while (i < b.length && isVisible(b[i]) && i - at < MAX_HEAD) i++;
  if (i === targetStart) return i === b.length && !cut ? 'more' : 'no';
  const t = b[targetStart];
  if (t !== 0x2f && t !== 0x2a && !(t >= 0x61 && t <= 0x7a) && !(t >= 0x41 && t <= 0x5a) && !(t >= 0x30 && t <= 0x39) && t !== 0x5b) return 'no';
  if (i === b.length) return cut ? 'yes' : 'more';
  if (b[i] !== SP) return 'no';
  return matchVersion(b, i + 1, cut, true);
}

/** "HTTP/1.x" then, for a request line, the end of the line; for a status line, " DDD". */
function matchVersion(b: Uint8Array, at: number, cut: boolean, request: boolean): Match {
  const want = 'HTTP/1.';
  for (let k = 0; k < want.length; k++) {
    if (at + k >= b.length) return cut ? 'no' : 'more';
    if (b[at + k] !== want.charCodeAt(k)) return 'no';
  }
  const v = at + want.length;
  if (v >= b.length) return cut ? 'no' : 'more';
  if (b[v] !== 0x30 && b[v] !== 0x31) return 'no';
  if (request) {
    if (v + 1 >= b.length) return cut ? 'no' : 'more';
    if (b[v + 1] === LF) return 'yes';
    if (b[v + 1] !== CR) return 'no';
    if (v + 2 >= b.length) return cut ? 'no' : 'more';
    return b[v + 2] === LF ? 'yes' : 'no';
  }
  for (let k = 1; k <= 4; k++) {
    if (v + k >= b.length) return cut ? 'no' : 'more';
    const c = b[v + k];
    if (k === 1 ? c !== SP : c < 0x30 || c > 0x39) return 'no';
  }
  return 'yes';
}

/** Does `b[at..]` start a status line ("HTTP/1.1 200 OK")? */
export function matchStatusLine(b: Uint8Array, at = 0, cut = false): Match {
  return matchVersion(b, at, cut, false);
}

/** The path as the summaries show it: query values replaced by '?' (names kept), fragment dropped. */
export function normalizePath(target: string, keepQueryValues: boolean): string {
  const hash = target.indexOf('#');
  const t = hash >= 0 ? target.slice(0, hash) : target;
  const q = t.indexOf('?');
  if (q < 0 || keepQueryValues) return t;
  const params = t.slice(q + 1).split('&').filter((p) => p.length > 0).map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? p : `${p.slice(0, eq)}=?`;
  });
  return `${t.slice(0, q)}?${params.join('&')}`;
}

/** The header fields the decoder reads (every value of each, in order); the others are skipped unread. */
interface HeadFields {
  host?: string[];
  'content-length'?: string[];
  'transfer-encoding'?: string[];
  'content-type'?: string[];
  upgrade?: string[];
}
type FieldName = keyof HeadFields;
const FIELD_NAMES: readonly FieldName[] = ['host', 'content-length', 'transfer-encoding', 'content-type', 'upgrade'];

interface Head {
  /** Request line: the method (before the first space) and the target (between the first and the last
   *  space, or after the first when there is one); status line: the status code. */
  method: string;
  target: string;
  status: number;
  fields: HeadFields;
  /** The head ended before its empty line (copy limit or gap): the fields are the ones seen. */
  cut: boolean;
  /** Bytes of the head: through its empty line, or all of them when cut. */
  size: number;
}

/** What String.prototype.trim() removes, among latin1 characters. */
const isTrimmed = (c: number) => (c >= 0x09 && c <= 0x0d) || c === SP || c === 0xa0;

/** The wanted field whose lower-cased name is b[start, end), or null. Only ASCII letters fold. */
function fieldName(b: Uint8Array, start: number, end: number): FieldName | null {
  const n = end - start;
  for (const name of FIELD_NAMES) {
    if (name.length !== n) continue;
    let k = 0;
    while (k < n) {
      const c = b[start + k];
      if ((c >= 0x41 && c <= 0x5a ? c | 0x20 : c) !== name.charCodeAt(k)) break;
      k++;
    }
    if (k === n) return name;
  }
  return null;
}

/** Method and target of a request line b[0, end), split at its first and last space. */
function requestLine(b: Uint8Array, end: number, head: Head): void {
  let sp1 = 0;
  while (sp1 < end && b[sp1] !== SP) sp1++;
  head.method = latin1Interned(b, 0, sp1);
  if (sp1 === end) return;
  let sp2 = end - 1;
  while (sp2 > sp1 && b[sp2] !== SP) sp2--;
  head.target = latin1Interned(b, sp1 + 1, sp2 > sp1 ? sp2 : end);
}

/**
 * A head at the start of b, read from the bytes in one pass: the start line, then lines up to the empty
 * one ("\r\n" or "\n" alone). null: the empty line is not there yet and more bytes may come (not
 * `final`); a final head without it is cut, its last line left out (it may be cut too). Per line: a
 * trailing CR is dropped, a line without a colon (or starting with one) is skipped, name and value are
 * trimmed; only the wanted fields become strings (interned: the same values come on every request).
 */
function parseHead(b: Uint8Array, response: boolean, final: boolean): Head | null {
  const head: Head = { method: '', target: '', status: 0, fields: {}, cut: false, size: 0 };
  const fields = head.fields;
  const n = b.length;
  let lf = U8_INDEX_OF.call(b, LF);
  if (lf < 0) {
    if (!final) return null;
    lf = n;
    head.cut = true;
  }
  const lineEnd = lf > 0 && b[lf - 1] === CR ? lf - 1 : lf;
  if (response) head.status = (b[9] - 0x30) * 100 + (b[10] - 0x30) * 10 + (b[11] - 0x30);
  else requestLine(b, lineEnd, head);
  let ls = lf + 1;
  while (!head.cut) {
    let le = ls < n ? U8_INDEX_OF.call(b, LF, ls) : -1;
    if (le < 0) {
      if (!final) return null;
      head.cut = true;
      break;
    }
    const next = le + 1;
    if (le > ls && b[le - 1] === CR) le--;
    if (le === ls) {
      head.size = next;
      return head;
    }
    // Only lines that may name a wanted field are looked into: host, content-*, transfer-encoding,
    // upgrade (or that start with what trim() drops).
    const c0 = b[ls] | 0x20;
    if (c0 !== 0x68 && c0 !== 0x63 && c0 !== 0x74 && c0 !== 0x75 && !isTrimmed(b[ls])) {
      ls = next;
      continue;
    }
    let colon = ls;
    while (colon < le && b[colon] !== 0x3a) colon++;
    if (colon > ls && colon < le) {
      let ns = ls;
      let ne = colon;
      while (ns < ne && isTrimmed(b[ns])) ns++;
      while (ne > ns && isTrimmed(b[ne - 1])) ne--;
      const name = fieldName(b, ns, ne);
      if (name !== null) {
        let vs = colon + 1;
        let ve = le;
        while (vs < ve && isTrimmed(b[vs])) vs++;
        while (ve > vs && isTrimmed(b[ve - 1])) ve--;
        const value = latin1Interned(b, vs, ve);
        const list = fields[name];
        if (list) list.push(value);
        else fields[name] = [value];
      }
    }
    ls = next;
  }
  head.size = n;
  return head;
}

const DIGITS = /^\d{1,15}$/;

type BodyMode = 'none' | 'length' | 'chunked' | 'close' | 'unknown';
type ChunkState = 'size' | 'data' | 'crlf' | 'trailers';

/** How a message's body is framed, from its head. 'unknown': lengths disagree or the head was cut. */
function bodyFraming(head: Head, isResponse: boolean): { mode: BodyMode; length: number } {
  const te = head.fields['transfer-encoding'];
  if (te) {
    const codings = te.join(',').toLowerCase().split(',').map((s) => s.trim());
    if (codings[codings.length - 1] === 'chunked') return { mode: 'chunked', length: 0 };
    return isResponse ? { mode: 'close', length: 0 } : { mode: 'unknown', length: 0 };
  }
  const cl = head.fields['content-length'];
  if (cl) {
    if (cl.length === 1 && DIGITS.test(cl[0])) {
      const n = Number(cl[0]);
      return n === 0 ? { mode: 'none', length: 0 } : { mode: 'length', length: n };
    }
    const values = new Set(cl.join(',').split(',').map((s) => s.trim()));
    const [v] = values;
    if (values.size !== 1 || !DIGITS.test(v)) return { mode: 'unknown', length: 0 };
    const n = Number(v);
    return n === 0 ? { mode: 'none', length: 0 } : { mode: 'length', length: n };
  }
  if (head.cut) return { mode: 'unknown', length: 0 };
  return isResponse ? { mode: 'close', length: 0 } : { mode: 'none', length: 0 };
}

interface Message {
  draft: ExchangeDraft;
  method: string | null;
  path: string | null;
  host: string | null;
  status: number | null;
  contentType: string | null;
  requestDone: boolean;
  responseDone: boolean;
  /** A response head was seen (an interim 1xx does not count). */
  responded: boolean;
}

/** Where one direction stands. */
interface Reader {
  dir: Direction;
  stream: ByteStream;
  state: 'start' | 'body' | 'resync';
  mode: BodyMode;
  remaining: number;
  chunk: ChunkState;
  /** The message whose bytes this direction is reading (null while resynchronising with none). */
  current: Message | null;
  /** Resynchronising after junk: the next message is marked. */
  resynced: boolean;
  /** A message was read in this direction. */
  started: boolean;
}

export class Http1Decoder implements ProtocolDecoder {
  readonly protocol = 'http1' as const;
  private readonly messages: Message[] = [];
  private readonly req: Reader;
  private readonly res: Reader;
  private done = false;
  /** The response direction lost its framing since the last response head: whole responses may be gone. */
  private responseFramingLost = false;

  constructor(private readonly ctx: ProtocolContext, readonly role: Role) {
    const reqDir = requestDirection(role);
    const reader = (dir: Direction): Reader => ({ dir, stream: ctx.streams[dir], state: 'start', mode: 'none', remaining: 0, chunk: 'size', current: null, resynced: false, started: false });
    this.req = reader(reqDir);
    this.res = reader(other(reqDir));
  }

  pump(): void {
    for (let progress = true; progress && !this.done; ) {
      progress = this.step(this.req) || this.step(this.res);
      this.flush();
    }
    if (!this.done) this.checkCap();
  }

  close(tsNs: number): void {
    if (this.done) return;
    this.pump();
    const r = this.res.current;
    if (r && this.res.state === 'body' && (this.res.mode === 'close' || this.res.mode === 'unknown')) {
      r.responseDone = true;
      if (this.res.mode === 'unknown') note(r.draft, 'resync');
    }
    for (const m of this.messages) {
      if (!m.requestDone) note(m.draft, 'request-cut');
      if (!m.responded) note(m.draft, 'no-response', false);
      else if (!m.responseDone) note(m.draft, 'response-cut');
      m.requestDone = m.responseDone = true;
    }
    this.flush();
    void tsNs;
  }

  private stream(r: Reader): ByteStream {
    return r.stream;
  }

  private checkCap(): void {
    const cap = this.ctx.settings.bufferCap;
    for (let k = 0; k < 2; k++) {
      const r = k === 0 ? this.req : this.res;
      if (r.stream.headLength > cap || (r.stream.headFinal && r.stream.buffered > cap)) {
        this.ctx.fail(`${r === this.req ? 'request' : 'response'} head longer than the buffer cap (${cap} bytes)`);
        this.done = true;
        return;
      }
    }
  }

  /** Emits finished exchanges, in order. */
  private flush(): void {
    while (this.messages.length > 0 && this.messages[0].requestDone && this.messages[0].responseDone) {
      const m = this.messages.shift()!;
      const detail: HttpDetail = { kind: 'http', method: m.method, path: m.path, host: m.host, status: m.status, contentType: m.contentType };
      this.ctx.emit(finish(this.ctx, m.draft, {
        protocol: 'http1',
        role: this.role,
        operation: m.method === null ? '?' : `${m.method} ${m.path ?? '?'}`,
        status: m.status === null ? '' : String(m.status),
        error: m.status !== null && m.status >= 500,
        host: m.host,
        detail,
      }));
    }
  }

  /** Adds n consumed bytes to the reader's message. */
  private count(r: Reader, n: number, startTs?: number): void {
    const m = r.current;
    if (!m || n <= 0) return;
    const s = this.stream(r);
    if (r === this.req) {
      if (m.draft.requestStartNs === null) m.draft.requestStartNs = startTs ?? s.lastTsNs;
      m.draft.requestBytes += n;
      m.draft.requestEndNs = s.lastTsNs;
    } else {
      if (m.draft.responseStartNs === null) m.draft.responseStartNs = startTs ?? s.lastTsNs;
      m.draft.responseBytes += n;
      m.draft.responseEndNs = s.lastTsNs;
    }
  }

  private step(r: Reader): boolean {
    const s = this.stream(r);
    if (s.empty) return false;
    if (r.state === 'start') return this.readHead(r);
    if (r.state === 'body') return this.readBody(r);
    return this.resync(r);
  }

  private startResync(r: Reader, why: string): void {
    r.state = 'resync';
    // Bytes before the first message of a connection seen mid-stream are no resynchronisation.
    r.resynced = r.started;
    if (r === this.res) this.responseFramingLost = true;
    if (r.current) {
      note(r.current.draft, why);
      if (r === this.res) r.current.responded = true;
    }
  }

  private readHead(r: Reader): boolean {
    const s = this.stream(r);
    const isResponse = r === this.res;
    if (s.holeAtHead() > 0) {
      // A hole where a start line should be: resynchronise after it.
      this.startResync(r, 'gap');
      r.current = null;
      return true;
    }
    const b = s.head();
    const match = isResponse ? matchStatusLine(b, 0, s.headFinal) : matchRequestLine(b, 0, s.headFinal);
    if (match === 'more') return false;
    if (match === 'no') {
      r.current = null;
      this.startResync(r, 'resync');
      return true;
    }
    const head = parseHead(b, isResponse, s.headFinal || b.length >= MAX_HEAD);
    if (head === null) return false;
    const startTs = s.tsAt(0);
    return isResponse ? this.responseHead(r, head, head.size, startTs) : this.requestHead(r, head, head.size, startTs);
  }

  private requestHead(r: Reader, head: Head, size: number, startTs: number): boolean {
    const s = this.stream(r);
    const method = head.method;
    let target = head.target;
    let host = head.fields.host?.[0]?.toLowerCase() ?? null;
    const absolute = target.length > 0 && (target.charCodeAt(0) | 0x20) === 0x68 ? /^https?:\/\/([^/?#]*)(.*)$/i.exec(target) : null;
    if (absolute) {
      host ??= absolute[1].toLowerCase();
      target = absolute[2] || '/';
    }
    const path = method === 'CONNECT' ? target : normalizePath(target, this.ctx.settings.keepQueryValues);
    if (method === 'CONNECT') host ??= target.toLowerCase();
    const m: Message = {
      draft: newDraft(), method, path: printable(path), host: host === null ? null : printable(host, 255),
      status: null, contentType: head.fields['content-type']?.[0] ?? null, requestDone: false, responseDone: false, responded: false,
    };
    if (r.resynced) {
      note(m.draft, 'resync');
      r.resynced = false;
    }
    if (head.cut) note(m.draft, 'headers-cut');
    let pending = 0;
    for (const x of this.messages) if (!x.responded) pending++;
    if (pending >= this.ctx.settings.maxPending) {
      this.ctx.fail(`more than ${this.ctx.settings.maxPending} requests without a response`);
      this.done = true;
      return false;
    }
    this.messages.push(m);
    r.current = m;
    r.started = true;
    s.consume(size);
    this.count(r, size, startTs);
    const framing = bodyFraming(head, false);
    this.enterBody(r, framing.mode, framing.length);
    return true;
  }

  private responseHead(r: Reader, head: Head, size: number, startTs: number): boolean {
    const s = this.stream(r);
    const status = head.status;
    let m = this.messages.find((x) => !x.responded) ?? null;
    if (this.responseFramingLost && m) m = this.afterLoss(startTs);
    this.responseFramingLost = false;
    if (!m) {
      m = { draft: newDraft(), method: null, path: null, host: null, status: null, contentType: null, requestDone: true, responseDone: false, responded: false };
      note(m.draft, 'no-request');
      this.messages.push(m);
    }
    if (r.resynced) {
      note(m.draft, 'resync');
      r.resynced = false;
    }
    if (head.cut) note(m.draft, 'headers-cut');
    r.current = m;
    r.started = true;
    s.consume(size);
    this.count(r, size, startTs);
    if (status >= 100 && status < 200 && status !== 101) {
      r.state = 'start'; // interim: the final response follows
      return true;
    }
    m.status = status;
    m.responded = true;
    m.contentType ??= head.fields['content-type']?.[0] ?? null;
    const method = m.method;
    if (status === 101 || (method === 'CONNECT' && status >= 200 && status < 300)) {
      m.responseDone = true;
      m.requestDone = true;
      this.flush();
      const upgrade = head.fields.upgrade?.[0];
      this.ctx.opaque(status === 101 ? `upgraded to ${printable(upgrade ?? 'another protocol', 64)}` : 'CONNECT tunnel');
      this.done = true;
      return false;
    }
    if (method === 'HEAD' || status === 204 || status === 304) {
      this.enterBody(r, 'none', 0);
      return true;
    }
    const framing = bodyFraming(head, true);
    this.enterBody(r, framing.mode, framing.length);
    return true;
  }

  /**
   * Bytes of the response direction were lost and several requests wait: the responses in the lost
   * part answered the older ones. The response just seen answers the newest request sent before it
   * (a client that does not pipeline sends a request only after the previous answer); the older ones
   * are given up as 'response-lost'.
   */
  private afterLoss(ts: number): Message | null {
    const waiting = this.messages.filter((x) => !x.responded && (x.draft.requestStartNs ?? 0) <= ts);
    const keep = waiting.pop() ?? null;
    for (const x of waiting) {
      note(x.draft, 'response-lost');
      x.responded = x.responseDone = true;
    }
    return keep;
  }

  private enterBody(r: Reader, mode: BodyMode, length: number): void {
    const m = r.current!;
    if (mode === 'none') {
      this.endMessage(r);
      return;
    }
    r.state = 'body';
    r.mode = mode;
    r.remaining = length;
    r.chunk = 'size';
    if (mode === 'unknown') {
      note(m.draft, 'framing-unknown');
      r.state = 'resync';
    }
  }

  private endMessage(r: Reader): void {
    const m = r.current;
    if (m) {
      if (r === this.req) m.requestDone = true;
      else m.responseDone = true;
    }
    r.state = 'start';
    r.current = null;
  }

  private readBody(r: Reader): boolean {
    const s = this.stream(r);
    if (r.mode === 'length') {
      const n = s.skip(r.remaining);
      this.count(r, n);
      r.remaining -= n;
      if (r.remaining === 0) this.endMessage(r);
      return n > 0;
    }
    if (r.mode === 'close') {
      const n = s.skipAll();
      this.count(r, n);
      return n > 0;
    }
    return this.readChunked(r);
  }

  private readChunked(r: Reader): boolean {
    const s = this.stream(r);
    const lost = (why: string) => {
      this.startResync(r, why);
      return true;
    };
    switch (r.chunk) {
      case 'size': {
        if (s.holeAtHead() > 0) return lost('chunk-size-cut');
        const b = s.head();
        const lf = b.indexOf(LF);
        if (lf < 0) return s.headFinal || b.length > MAX_CHUNK_LINE ? lost('chunk-size-cut') : false;
        const line = latin1(b, 0, lf).replace(/\r$/, '');
        const m = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
        if (!m) return lost('bad-chunk-size');
        s.consume(lf + 1);
        this.count(r, lf + 1);
        const size = parseInt(m[1], 16);
        if (size === 0) r.chunk = 'trailers';
        else {
          r.chunk = 'data';
          r.remaining = size;
        }
        return true;
      }
      case 'data': {
        const n = s.skip(r.remaining);
        this.count(r, n);
        r.remaining -= n;
        if (r.remaining === 0) r.chunk = 'crlf';
        return n > 0;
      }
      case 'crlf': {
        const hole = s.holeAtHead();
        if (hole > 0) {
          // The CRLF after the data fell past the copy limit: its length is known all the same.
          const n = s.skip(Math.min(2, hole));
          this.count(r, n);
          if (n === 2) r.chunk = 'size';
          else return lost('chunk-crlf-cut');
          return true;
        }
        const b = s.head();
        if (b.length < 2) return s.headFinal ? lost('chunk-crlf-cut') : false;
        if (b[0] !== CR || b[1] !== LF) return lost('bad-chunk-end');
        s.consume(2);
        this.count(r, 2);
        r.chunk = 'size';
        return true;
      }
      case 'trailers': {
        if (s.holeAtHead() > 0) return lost('trailers-cut');
        const b = s.head();
        let end: number;
        if (b.length >= 2 && b[0] === CR && b[1] === LF) end = 2;
        else if (b.length >= 1 && b[0] === LF) end = 1;
        else {
          const e = findHeadEnd(b);
          if (e < 0) return s.headFinal || b.length > MAX_HEAD ? lost('trailers-cut') : false;
          end = e;
        }
        s.consume(end);
        this.count(r, end);
        this.endMessage(r);
        return true;
      }
    }
  }

  /**
   * Looks for the next start line at a call's first byte or a line's first byte; the bytes before it
   * belong to the message being read (if any). A start line that may still be arriving is waited for.
   */
  private resync(r: Reader): boolean {
    const s = this.stream(r);
    const matcher = r === this.res ? matchStatusLine : matchRequestLine;
    let moved = false;
    for (;;) {
      const hole = s.holeAtHead();
      if (hole > 0) {
        this.count(r, s.skip(hole));
        moved = true;
        continue;
      }
      const b = s.head();
      if (b.length === 0) return moved;
      let found = -1;
      let wait = false;
      const starts = s.chunkStarts();
      for (let p = 0; p < b.length; p++) {
        if (!(b[p - 1] === LF || starts.has(p))) continue;
        if (b[p] !== 0x48 && !isTokenUpper(b[p])) continue;
        const m = matcher(b, p, s.headFinal);
        if (m === 'yes') {
          found = p;
          break;
        }
        if (m === 'more') {
          found = p;
          wait = true;
          break;
        }
      }
      if (found < 0) {
        const n = b.length;
        s.consume(n);
        this.count(r, n);
        moved = true;
        continue;
      }
      if (found > 0) {
        s.consume(found);
        this.count(r, found);
        moved = true;
      }
      if (wait) return moved;
      this.endResync(r);
      return true;
    }
  }

  private endResync(r: Reader): void {
    const m = r.current;
    if (m) {
      if (r === this.req) m.requestDone = true;
      else {
        m.responded = true;
        m.responseDone = true;
      }
    }
    r.current = null;
    r.state = 'start';
  }
}

/** End of a header block: the offset just past its empty line ("\r\n\r\n" or "\n\n"), or -1. */
export function findHeadEnd(b: Uint8Array): number {
  for (let i = b.indexOf(LF); i >= 0 && i < b.length; i = b.indexOf(LF, i + 1)) {
    if (i + 1 < b.length && b[i + 1] === LF) return i + 2;
    if (i + 2 < b.length && b[i + 1] === CR && b[i + 2] === LF) return i + 3;
  }
  return -1;
}
