// SPDX-License-Identifier: MIT
// DNS queries and answers (RFC 1035) over UDP (one datagram, one message) and TCP (each message after
// a 2-byte length, 4.2.2), matched by id + question. Names are read with the packet hook's parser
// (src/aggregate/dns.ts readName: same escaping, same loop refusal).
import { readName } from './dns-message';
import { finish, newDraft, note, type ExchangeDraft, type ProtocolContext, type ProtocolDecoder } from './protocol';
import type { Direction, DnsDetail, Role } from './types';
import type { Match } from './http1';

const HEADER = 12;

const TYPE_NAMES: Record<number, string> = {
  1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 35: 'NAPTR',
  41: 'OPT', 43: 'DS', 46: 'RRSIG', 47: 'NSEC', 48: 'DNSKEY', 64: 'SVCB', 65: 'HTTPS', 99: 'SPF', 252: 'AXFR', 255: 'ANY', 257: 'CAA',
};
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED', 'YXDOMAIN', 'YXRRSET', 'NXRRSET', 'NOTAUTH', 'NOTZONE'];

export const dnsTypeName = (t: number): string => TYPE_NAMES[t] ?? `TYPE${t}`;
export const dnsRcodeName = (r: number): string => RCODE_NAMES[r] ?? `RCODE${r}`;

export interface DnsHead {
  id: number;
  response: boolean;
  opcode: number;
  rcode: number;
  truncated: boolean;
  qdcount: number;
  ancount: number;
  name: string | null;
  type: number | null;
}

/** Header and first question of a DNS message; null when it is not one (or the question is unreadable). */
export function parseDnsHead(msg: Uint8Array): DnsHead | null {
  if (msg.length < HEADER) return null;
  const flags = (msg[2] << 8) | msg[3];
  const head: DnsHead = {
    id: (msg[0] << 8) | msg[1],
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    rcode: flags & 0xf,
    truncated: (flags & 0x0200) !== 0,
    qdcount: (msg[4] << 8) | msg[5],
    ancount: (msg[6] << 8) | msg[7],
    name: null,
    type: null,
  };
  if (head.qdcount === 0) return head;
  try {
    const q = readName(msg, HEADER);
    if (q.next + 4 > msg.length) return null;
    head.name = q.name;
    head.type = (msg[q.next] << 8) | msg[q.next + 1];
  } catch {
    return null;
  }
  return head;
}

/**
 * Is this the start of a DNS message (a query, or for `responseOk` an answer)? Strict: opcode QUERY..UPDATE,
 * exactly one question that parses, a query with no answers and at most a few additional records (EDNS).
 */
export function looksLikeDns(msg: Uint8Array, responseOk: boolean): DnsHead | null {
  const h = parseDnsHead(msg);
  if (!h || h.qdcount !== 1 || h.name === null || h.opcode > 5 || h.opcode === 3) return null;
  const nscount = (msg[8] << 8) | msg[9];
  const arcount = (msg[10] << 8) | msg[11];
  // Z must be 0; AD and CD may be set in a query (RFC 6840 5.7, 5.9): dig sets AD by default.
  if (!h.response && (h.ancount !== 0 || nscount > 1 || arcount > 2 || (msg[3] & 0x40) !== 0)) return null;
  if (h.response && !responseOk) return null;
  return h;
}

/** Detection over TCP: a 2-byte length, then a DNS query (or answer, mid-stream) that fits it. */
export function detectDnsTcp(b: Uint8Array, cut: boolean, midStream: boolean): { match: Match; sender?: Role } {
  if (b.length < 2) return { match: cut ? 'no' : 'more' };
  const len = (b[0] << 8) | b[1];
  // A query is small; an answer first (mid-stream) may be up to the 2-byte limit.
  if (len < HEADER + 5 || (!midStream && len > 512)) return { match: 'no' };
  if (b.length >= 2 + HEADER) {
    const qd = (b[6] << 8) | b[7];
    const response = (b[4] & 0x80) !== 0;
    const opcode = (b[4] >> 3) & 0xf;
    if (qd !== 1 || opcode > 5 || opcode === 3 || (response && !midStream) || (!response && (b[8] | b[9]) !== 0)) return { match: 'no' };
  }
  if (b.length < 2 + len) return cut ? { match: 'no' } : { match: 'more' };
  const h = looksLikeDns(b.subarray(2, 2 + len), midStream);
  if (!h) return { match: 'no' };
  return { match: 'yes', sender: h.response ? 'server' : 'client' };
}

interface Pending {
  draft: ExchangeDraft;
  head: DnsHead;
}

export class DnsDecoder implements ProtocolDecoder {
  readonly protocol = 'dns' as const;
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly ctx: ProtocolContext, readonly role: Role, private readonly udp: boolean) {}

  /** One UDP datagram (bytes: what was copied of its `length`). */
  datagram(dir: Direction, bytes: Uint8Array, length: number, tsNs: number): void {
    this.message(dir, bytes, length, tsNs, tsNs, bytes.length < length);
  }

  pump(): void {
    if (this.udp) return;
    for (const dir of ['tx', 'rx'] as const) this.pumpTcp(dir);
    if (this.ctx.streams.tx.buffered + this.ctx.streams.rx.buffered > 2 * this.ctx.settings.bufferCap) this.ctx.fail('buffer cap');
  }

  private pumpTcp(dir: Direction): void {
    const s = this.ctx.streams[dir];
    const m = this.tcp[dir];
    for (;;) {
      if (m.len < 0) {
        if (s.holeAtHead() > 0) {
          this.ctx.fail('a gap where a DNS length prefix should be');
          return;
        }
        const b = s.head();
        if (b.length < 2) {
          if (b.length === 1 && s.headFinal) this.ctx.fail('a DNS length prefix cut by a gap');
          return;
        }
        m.len = (b[0] << 8) | b[1];
        m.got = 0;
        m.parts = [];
        m.cut = false;
        m.startTs = s.tsAt(0);
        s.consume(2);
      }
      while (m.got < m.len) {
        const h = s.headLength;
        if (h > 0) {
          const k = Math.min(h, m.len - m.got);
          if (!m.cut) m.parts.push(s.head().slice(0, k));
          s.consume(k);
          m.got += k;
          continue;
        }
        const k = s.skip(m.len - m.got);
        if (k === 0) return;
        m.got += k;
        m.cut = true;
      }
      const msg = m.parts.length === 1 ? m.parts[0] : Buffer.concat(m.parts);
      this.message(dir, msg, m.len + 2, m.startTs, s.lastTsNs, m.cut);
      m.len = -1;
      m.parts = [];
    }
  }

  /** TCP: the message being read in each direction (len -1: waiting for a length prefix). */
  private readonly tcp: Record<Direction, { len: number; got: number; parts: Uint8Array[]; cut: boolean; startTs: number }> = {
    tx: { len: -1, got: 0, parts: [], cut: false, startTs: 0 },
    rx: { len: -1, got: 0, parts: [], cut: false, startTs: 0 },
  };

  private message(dir: Direction, bytes: Uint8Array, size: number, startTs: number, endTs: number, cut: boolean): void {
    const h = parseDnsHead(bytes);
    if (!h) {
      // Not a DNS message after all: counted nowhere, the connection stays DNS (classified once).
      return;
    }
    const queryDir: Direction = this.role === 'client' ? 'tx' : 'rx';
    const key = `${h.id}|${h.name}|${h.type}`;
    if (!h.response) {
      if (dir !== queryDir) return;
      const draft = newDraft();
      draft.requestBytes = size;
      draft.requestStartNs = startTs;
      draft.requestEndNs = endTs;
      if (cut) note(draft, 'query-cut');
      const old = this.pending.get(key);
      if (old) this.emit(old, null, 'retransmitted');
      if (this.pending.size >= this.ctx.settings.maxPending) {
        const [oldestKey, oldest] = this.pending.entries().next().value as [string, Pending];
        this.pending.delete(oldestKey);
        this.emit(oldest, null, 'no-response');
      }
      this.pending.set(key, { draft, head: h });
      return;
    }
    if (dir === queryDir) return;
    let p = this.pending.get(key);
    if (p) this.pending.delete(key);
    else {
      p = { draft: newDraft(), head: { ...h, response: false } };
      note(p.draft, 'no-request');
    }
    p.draft.responseBytes = size;
    p.draft.responseStartNs = startTs;
    p.draft.responseEndNs = endTs;
    if (cut) note(p.draft, 'answer-cut');
    this.emit(p, h, null);
  }

  private emit(p: Pending, answer: DnsHead | null, why: string | null): void {
    if (why) note(p.draft, why, false);
    const q = p.head;
    const detail: DnsDetail = {
      kind: 'dns', id: q.id, name: q.name, type: q.type, typeName: q.type === null ? null : dnsTypeName(q.type),
      rcode: answer ? answer.rcode : null, rcodeName: answer ? dnsRcodeName(answer.rcode) : null,
      answers: answer ? answer.ancount : null, truncated: answer ? answer.truncated : false,
    };
    this.ctx.emit(finish(this.ctx, p.draft, {
      protocol: 'dns',
      role: this.role,
      operation: `${detail.typeName ?? '?'} ${q.name ?? '?'}`,
      status: detail.rcodeName ?? '',
      error: answer !== null && answer.rcode !== 0,
      host: q.name,
      detail,
    }));
  }

  close(): void {
    for (const dir of ['tx', 'rx'] as const) {
      const m = this.tcp[dir];
      if (m.len >= 0 && m.parts.length > 0) this.message(dir, Buffer.concat(m.parts), m.got + 2, m.startTs, this.ctx.streams[dir].lastTsNs, true);
      m.len = -1;
    }
    for (const p of this.pending.values()) this.emit(p, null, 'no-response');
    this.pending.clear();
  }
}
