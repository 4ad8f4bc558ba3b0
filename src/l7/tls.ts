// SPDX-License-Identifier: MIT
// TLS handshakes at the socket (RFC 8446, RFC 5246): the ClientHello's SNI, ALPN and versions, the
// ServerHello's choice, and the handshake time. Records are followed by their lengths (bodies past
// the copy limit are skipped); only the first handshake message of each side is read. The handshake
// is over, as the client sees it, at the first application_data record the client sends (TLS 1.3: its
// encrypted Finished; TLS 1.2: its first data after Finished): then the exchange is given and the
// connection is opaque (its plaintext, if a TLS library was hooked, comes as tls chunks).
import { finish, newDraft, note, printable, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import type { Direction, Role, TlsDetail } from './types';
import type { Match } from './http1';

const CONTENT_CCS = 20;
const CONTENT_ALERT = 21;
const CONTENT_HANDSHAKE = 22;
const CONTENT_APPDATA = 23;
const MAX_RECORD = (1 << 14) + 2048;
const MAX_HELLO = 64 * 1024;
const HRR_RANDOM = 'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c';

export function tlsVersionName(v: number): string {
  if (v === 0x0300) return 'SSL3.0';
  if (v >= 0x0301 && v <= 0x0304) return `TLS1.${v - 0x0301}`;
  if ((v & 0xff00) === 0x7f00) return `TLS1.3-draft${v & 0xff}`;
  return `0x${v.toString(16).padStart(4, '0')}`;
}
const isGrease = (v: number) => (v & 0x0f0f) === 0x0a0a && v >> 8 === (v & 0xff);

/** First bytes of a TLS stream: a handshake record holding a ClientHello (client) or ServerHello
 *  (server); mid-stream, any record header. */
export function detectTls(b: Uint8Array, cut: boolean, midStream: boolean): { match: Match; sender?: Role } {
  if (b.length < 1) return { match: 'more' };
  const type = b[0];
  if (type < CONTENT_CCS || type > CONTENT_APPDATA) return { match: 'no' };
  if (!midStream && type !== CONTENT_HANDSHAKE) return { match: 'no' };
  if (b.length < 6) {
    if (cut) return { match: 'no' };
    if (b.length >= 2 && b[1] !== 3) return { match: 'no' };
    if (b.length >= 3 && b[2] > 4) return { match: 'no' };
    return { match: 'more' };
  }
  const length = (b[3] << 8) | b[4];
  if (b[1] !== 3 || b[2] > 4 || length === 0 || length > MAX_RECORD) return { match: 'no' };
  if (type !== CONTENT_HANDSHAKE) return { match: 'yes' };
  if (b[5] === 1) return { match: 'yes', sender: 'client' };
  if (b[5] === 2) return { match: 'yes', sender: 'server' };
  return midStream ? { match: 'yes' } : { match: 'no' };
}

interface ClientHello {
  sni: string | null;
  alpn: string[];
  legacyVersion: number;
  versions: number[];
}
interface ServerHello {
  version: number;
  alpn: string | null;
  retry: boolean;
}

/** A bounds-checked reader: any read past the end throws, and the caller keeps what it had. */
class Reader {
  constructor(private readonly b: Uint8Array, public at = 0, private readonly end = b.length) {}
  u8(): number {
    if (this.at + 1 > this.end) throw new RangeError('cut');
    return this.b[this.at++];
  }
  u16(): number {
    return (this.u8() << 8) | this.u8();
  }
  bytes(n: number): Uint8Array {
    if (this.at + n > this.end) throw new RangeError('cut');
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
  sub(n: number): Reader {
    if (this.at + n > this.end) throw new RangeError('cut');
    const r = new Reader(this.b, this.at, this.at + n);
    this.at += n;
    return r;
  }
  get left(): number {
    return this.end - this.at;
  }
}

const ascii = (b: Uint8Array) => printable(Buffer.from(b).toString('latin1'), 255);

/** Parses a ClientHello body (after the 4-byte handshake header) as far as the bytes go. */
export function parseClientHello(body: Uint8Array): { hello: ClientHello; cut: boolean } {
  const hello: ClientHello = { sni: null, alpn: [], legacyVersion: 0, versions: [] };
  try {
    const r = new Reader(body);
    hello.legacyVersion = r.u16();
    r.bytes(32);
    r.bytes(r.u8());
    r.bytes(r.u16());
    r.bytes(r.u8());
    if (r.left === 0) return { hello, cut: false };
    const exts = r.sub(Math.min(r.u16(), r.left));
    while (exts.left > 0) {
      const type = exts.u16();
      const e = exts.sub(exts.u16());
      if (type === 0) {
        const list = e.sub(e.u16());
        while (list.left > 0) {
          const kind = list.u8();
          const name = list.bytes(list.u16());
          if (kind === 0 && hello.sni === null) hello.sni = ascii(name).toLowerCase();
        }
      } else if (type === 16) {
        const list = e.sub(e.u16());
        while (list.left > 0) hello.alpn.push(ascii(list.bytes(list.u8())));
      } else if (type === 43) {
        const list = e.sub(e.u8());
        while (list.left >= 2) {
          const v = list.u16();
          if (!isGrease(v)) hello.versions.push(v);
        }
      }
    }
    return { hello, cut: false };
  } catch {
    return { hello, cut: true };
  }
}

export function parseServerHello(body: Uint8Array): { hello: ServerHello; cut: boolean } {
  const hello: ServerHello = { version: 0, alpn: null, retry: false };
  try {
    const r = new Reader(body);
    hello.version = r.u16();
    hello.retry = Buffer.from(r.bytes(32)).toString('hex') === HRR_RANDOM;
    r.bytes(r.u8());
    r.u16();
    r.u8();
    if (r.left === 0) return { hello, cut: false };
    const exts = r.sub(Math.min(r.u16(), r.left));
    while (exts.left > 0) {
      const type = exts.u16();
      const e = exts.sub(exts.u16());
      if (type === 43) hello.version = e.u16();
      else if (type === 16) {
        const list = e.sub(e.u16());
        if (list.left > 0) hello.alpn = ascii(list.bytes(list.u8()));
      }
    }
    return { hello, cut: false };
  } catch {
    return { hello, cut: true };
  }
}

interface Side {
  /** Bytes of the current record still to skip, and its content type. */
  skip: number;
  type: number;
  /** The first handshake message being collected (header included). */
  hs: Uint8Array[];
  hsLen: number;
  hsWant: number;
  hsCut: boolean;
  hsTs: number;
}

export class TlsDecoder implements ProtocolDecoder {
  readonly protocol = 'tls' as const;
  private readonly draft: ExchangeDraft = newDraft();
  private client: ClientHello | null = null;
  private server: ServerHello | null = null;
  private helloRetry = false;
  private alert: string | null = null;
  private handshakeNs: number | null = null;
  private done = false;
  private readonly sides: Record<Direction, Side>;
  private readonly clientDir: Direction;

  constructor(private readonly ctx: ProtocolContext, readonly role: Role) {
    const side = (): Side => ({ skip: 0, type: 0, hs: [], hsLen: 0, hsWant: -1, hsCut: false, hsTs: 0 });
    this.sides = { tx: side(), rx: side() };
    this.clientDir = role === 'client' ? 'tx' : 'rx';
  }

  pump(): void {
    for (const dir of [this.clientDir, this.clientDir === 'tx' ? 'rx' : 'tx'] as const) if (!this.done) this.read(dir);
  }

  close(): void {
    if (this.done) return;
    if (this.handshakeNs === null) note(this.draft, this.server ? 'handshake-unfinished' : 'no-response', this.server !== null);
    this.emit();
  }

  private count(dir: Direction, n: number, ts: number): void {
    const d = this.draft;
    if (dir === this.clientDir) {
      d.requestStartNs ??= ts;
      d.requestBytes += n;
      d.requestEndNs = this.ctx.streams[dir].lastTsNs;
    } else {
      d.responseStartNs ??= ts;
      d.responseBytes += n;
      d.responseEndNs = this.ctx.streams[dir].lastTsNs;
    }
  }

  private read(dir: Direction): void {
    const s = this.ctx.streams[dir];
    const side = this.sides[dir];
    while (!this.done) {
      if (side.skip > 0) {
        const ts = s.tsAt(0);
        const collecting = side.type === CONTENT_HANDSHAKE && side.hsWant >= 0 && side.hsLen < side.hsWant;
        let n: number;
        const hole = s.holeAtHead();
        if (hole > 0) {
          n = s.skip(Math.min(hole, side.skip));
          if (collecting) side.hsCut = true;
        } else {
          n = Math.min(s.headLength, side.skip);
          if (n === 0) return;
          if (collecting && !side.hsCut) {
            side.hs.push(s.head().slice(0, Math.min(n, side.hsWant - side.hsLen)));
            side.hsLen += Math.min(n, side.hsWant - side.hsLen);
          }
          s.consume(n);
        }
        side.skip -= n;
        this.count(dir, n, ts);
        if (side.skip === 0) this.recordDone(dir);
        continue;
      }
      if (s.holeAtHead() > 0) {
        note(this.draft, 'gap');
        this.finishHandshake();
        return;
      }
      const b = s.head();
      if (b.length < 5) {
        if (b.length > 0 && s.headFinal) {
          note(this.draft, 'gap');
          this.finishHandshake();
        }
        return;
      }
      const type = b[0];
      const length = (b[3] << 8) | b[4];
      if (type < CONTENT_CCS || type > 24 || b[1] !== 3 || length > MAX_RECORD) {
        note(this.draft, 'not-tls');
        this.finishHandshake();
        return;
      }
      const ts = s.tsAt(0);
      if (type === CONTENT_APPDATA && dir === this.clientDir && this.client) {
        // The client speaks in application data: the handshake is over as it sees it.
        this.handshakeNs = Math.max(0, ts - this.draft.requestStartNs!);
        this.finishHandshake();
        return;
      }
      if (type === CONTENT_ALERT && this.alert === null) {
        this.alert = b.length >= 7 && length === 2 && (b[5] === 1 || b[5] === 2) ? `${b[5] === 2 ? 'fatal' : 'warning'}/${b[6]}` : 'encrypted';
      }
      s.consume(5);
      this.count(dir, 5, ts);
      side.skip = length;
      side.type = type;
      if (type === CONTENT_HANDSHAKE && side.hsWant < 0 && this.needsHello(dir)) {
        side.hsWant = MAX_HELLO;
        side.hsTs = ts;
      }
      if (length === 0) this.recordDone(dir);
    }
  }

  private needsHello(dir: Direction): boolean {
    return dir === this.clientDir ? this.client === null : this.server === null || this.server.retry;
  }

  /** After each record: is the collected handshake message complete? */
  private recordDone(dir: Direction): void {
    const side = this.sides[dir];
    if (side.hsWant < 0 || side.type !== CONTENT_HANDSHAKE) return;
    const msg = side.hs.length === 1 ? side.hs[0] : Buffer.concat(side.hs);
    if (msg.length >= 4 && side.hsWant === MAX_HELLO) side.hsWant = Math.min(MAX_HELLO, 4 + ((msg[1] << 16) | (msg[2] << 8) | msg[3]));
    if (side.hsLen < side.hsWant && !side.hsCut) return;
    const cut = side.hsCut || msg.length < side.hsWant;
    const want = side.hsWant;
    side.hsWant = -1;
    side.hs = [];
    side.hsLen = 0;
    side.hsCut = false;
    const body = msg.subarray(4, want);
    if (dir === this.clientDir && msg[0] === 1) {
      const p = parseClientHello(body);
      if (this.client === null) this.client = p.hello;
      if (cut || p.cut) note(this.draft, 'hello-cut');
    } else if (dir !== this.clientDir && msg[0] === 2) {
      const p = parseServerHello(body);
      if (p.hello.retry) this.helloRetry = true;
      this.server = p.hello;
      if (cut || p.cut) note(this.draft, 'hello-cut');
    }
    if (this.alert !== null && this.alert !== 'encrypted') this.finishHandshake();
  }

  private finishHandshake(): void {
    if (this.done) return;
    this.emit();
    this.ctx.opaque(this.handshakeNs !== null ? 'TLS: encrypted after the handshake' : 'TLS: handshake not followed to its end');
  }

  private emit(): void {
    if (this.done) return;
    this.done = true;
    const c = this.client;
    const sv = this.server;
    if (!c) note(this.draft, 'no-request');
    const version = sv ? tlsVersionName(sv.version) : null;
    const detail: TlsDetail = {
      kind: 'tls',
      sni: c?.sni ?? null,
      alpnOffered: c?.alpn ?? [],
      alpn: sv?.alpn ?? null,
      clientVersion: c ? tlsVersionName(c.legacyVersion) : null,
      supportedVersions: c ? c.versions.map(tlsVersionName) : [],
      version,
      handshakeNs: this.handshakeNs,
      alert: this.alert,
      helloRetry: this.helloRetry,
    };
    const failed = this.alert !== null && this.handshakeNs === null;
    this.ctx.emit(finish(this.ctx, this.draft, {
      protocol: 'tls',
      role: this.role,
      operation: 'handshake',
      status: failed ? 'alert' : version ?? '',
      error: failed,
      host: detail.sni,
      detail,
    }));
  }
}
