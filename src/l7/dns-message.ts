// SPDX-License-Identifier: MIT
// DNS responses as the packet hook copies them (an IP packet, UDP from port 53): just enough of RFC 1035
// for remote names: the questions, and the A, AAAA and CNAME answers. Pure: bytes in, data out; hostile
// input (pointer loops, lengths past the end) gives a DnsFormatError, never a hang or a wrong name.
import { AF_INET, AF_INET6, formatAddress, IPPROTO_UDP } from '../util/net';
import { parseIpHeader } from '../util/ip';

export const DNS_TYPE = { A: 1, CNAME: 5, AAAA: 28 } as const;
const CLASS_IN = 1;
const HEADER_SIZE = 12;
/** RFC 1035 2.3.4: a name is at most 255 bytes on the wire. */
const MAX_NAME_BYTES = 255;

export class DnsFormatError extends Error {}

export interface DnsQuestion {
  name: string;
  type: number;
}

export interface DnsAnswer {
  /** Owner name, lower case, without the trailing dot. */
  name: string;
  type: number;
  ttl: number;
  /** A/AAAA: the address as the reports print it; CNAME: the target name. Absent for other types. */
  data?: string;
}

export interface DnsMessage {
  id: number;
  response: boolean;
  /** RCODE: 0 = NOERROR, 3 = NXDOMAIN, ... */
  rcode: number;
  /** TC bit: the server cut the answer (the client retries over TCP). */
  truncated: boolean;
  questions: DnsQuestion[];
  /** The answer section's records that fit in the bytes given. */
  answers: DnsAnswer[];
  /** The bytes ended inside the answer section (the capture was cut): `answers` holds those before the cut. */
  incomplete: boolean;
}

/** One name the program asked for, the CNAMEs it went through, and the addresses it got. */
export interface DnsResolution {
  name: string;
  cnames: string[];
  addresses: string[];
  /** Smallest TTL (s) of the records that made it. */
  ttl: number;
}

/** Label bytes as text: printable ASCII as is, '.', '\' and the rest escaped as \DDD (as dig does). */
function labelText(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) {
    if (b > 0x20 && b < 0x7f && b !== 0x2e && b !== 0x5c) s += String.fromCharCode(b).toLowerCase();
    else s += `\\${String(b).padStart(3, '0')}`;
  }
  return s;
}

/**
 * Reads a (possibly compressed) name at `offset`; `next` is the offset after it in the message. A pointer
 * must point before the labels that led to it: every jump goes strictly backwards, so loops (a pointer to
 * itself, to a later name, or a cycle through earlier ones) are refused instead of followed.
 */
export function readName(msg: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let at = offset;
  let segmentStart = offset;
  let next = -1;
  let wireBytes = 1;
  for (;;) {
    if (at >= msg.length) throw new DnsFormatError('name runs past the end of the message');
    const length = msg[at];
    const kind = length & 0xc0;
    if (kind === 0xc0) {
      if (at + 1 >= msg.length) throw new DnsFormatError('compression pointer runs past the end of the message');
      const target = ((length & 0x3f) << 8) | msg[at + 1];
      if (target >= segmentStart) throw new DnsFormatError(`compression pointer at ${at} does not point backwards (to ${target}): a loop`);
      if (next < 0) next = at + 2;
      at = segmentStart = target;
      continue;
    }
    if (kind !== 0) throw new DnsFormatError(`unknown label type 0x${kind.toString(16)} at ${at}`);
    if (length === 0) {
      if (next < 0) next = at + 1;
      return { name: labels.join('.'), next };
    }
    if (at + 1 + length > msg.length) throw new DnsFormatError('label runs past the end of the message');
    wireBytes += 1 + length;
    if (wireBytes > MAX_NAME_BYTES) throw new DnsFormatError('name longer than 255 bytes');
    labels.push(labelText(msg.subarray(at + 1, at + 1 + length)));
    at += 1 + length;
  }
}

/** Parses a DNS message (the UDP payload). Throws DnsFormatError when the header or questions are unusable. */
export function parseDnsMessage(msg: Uint8Array): DnsMessage {
  if (msg.length < HEADER_SIZE) throw new DnsFormatError(`${msg.length} bytes: shorter than a DNS header`);
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const flags = view.getUint16(2);
  const qdcount = view.getUint16(4);
  const ancount = view.getUint16(6);
  const message: DnsMessage = {
    id: view.getUint16(0),
    response: (flags & 0x8000) !== 0,
    rcode: flags & 0xf,
    truncated: (flags & 0x0200) !== 0,
    questions: [],
    answers: [],
    incomplete: false,
  };
  let at = HEADER_SIZE;
  for (let i = 0; i < qdcount; i++) {
    const { name, next } = readName(msg, at);
    if (next + 4 > msg.length) throw new DnsFormatError('question runs past the end of the message');
    message.questions.push({ name, type: view.getUint16(next) });
    at = next + 4;
  }
  for (let i = 0; i < ancount; i++) {
    let owner: { name: string; next: number };
    try {
      owner = readName(msg, at);
    } catch (err) {
      if (!(err instanceof DnsFormatError) || !/past the end/.test(err.message)) throw err;
      message.incomplete = true;
      break;
    }
    const fixed = owner.next;
    if (fixed + 10 > msg.length) {
      message.incomplete = true;
      break;
    }
    const type = view.getUint16(fixed);
    const klass = view.getUint16(fixed + 2);
    const ttl = view.getUint32(fixed + 4);
    const rdlength = view.getUint16(fixed + 8);
    const rdata = fixed + 10;
    if (rdata + rdlength > msg.length) {
      message.incomplete = true;
      break;
    }
    const answer: DnsAnswer = { name: owner.name, type, ttl };
    if (klass === CLASS_IN && type === DNS_TYPE.A) {
      if (rdlength !== 4) throw new DnsFormatError(`A record with ${rdlength} bytes of data`);
      answer.data = formatAddress(AF_INET, msg.subarray(rdata, rdata + 4));
    } else if (klass === CLASS_IN && type === DNS_TYPE.AAAA) {
      if (rdlength !== 16) throw new DnsFormatError(`AAAA record with ${rdlength} bytes of data`);
      answer.data = formatAddress(AF_INET6, msg.subarray(rdata, rdata + 16));
    } else if (klass === CLASS_IN && type === DNS_TYPE.CNAME) {
      const target = readName(msg, rdata);
      if (target.next > rdata + rdlength) throw new DnsFormatError('CNAME target runs past its record');
      answer.data = target.name;
    }
    message.answers.push(answer);
    at = rdata + rdlength;
  }
  return message;
}

/**
 * The names a response resolves: each address record is traced back through the CNAMEs that lead to it,
 * to the name the program asked for. A CNAME cycle stops the walk (no name is made up).
 */
export function resolutions(message: DnsMessage): DnsResolution[] {
  const aliasOf = new Map<string, DnsAnswer>(); // CNAME target -> the record pointing at it
  for (const a of message.answers) if (a.type === DNS_TYPE.CNAME && a.data !== undefined && !aliasOf.has(a.data)) aliasOf.set(a.data, a);
  const byName = new Map<string, DnsResolution>();
  for (const a of message.answers) {
    if ((a.type !== DNS_TYPE.A && a.type !== DNS_TYPE.AAAA) || a.data === undefined) continue;
    const chain: string[] = [a.name];
    let ttl = a.ttl;
    const seen = new Set(chain);
    for (let link = aliasOf.get(a.name); link && !seen.has(link.name); link = aliasOf.get(link.name)) {
      chain.unshift(link.name);
      seen.add(link.name);
      ttl = Math.min(ttl, link.ttl);
    }
    const name = chain[0];
    let r = byName.get(name);
    if (!r) byName.set(name, (r = { name, cnames: chain.slice(1), addresses: [], ttl }));
    if (chain.length - 1 > r.cnames.length) r.cnames = chain.slice(1);
    r.ttl = Math.min(r.ttl, ttl);
    if (!r.addresses.includes(a.data)) r.addresses.push(a.data);
  }
  return [...byName.values()];
}

export interface UdpDatagram {
  family: number;
  sourceAddr: string;
  sourcePort: number;
  payload: Uint8Array;
  /** The packet was captured only in part: the payload is cut. */
  cut: boolean;
}

/** The UDP datagram inside an IP packet (IPv4, or IPv6 without extension headers); null for anything else. */
export function udpDatagram(packet: Uint8Array): UdpDatagram | null {
  const ip = parseIpHeader(packet);
  if (!ip || ip.protocol !== IPPROTO_UDP) return null;
  const l4 = ip.transportAt;
  if (packet.length < l4 + 8) return null;
  const udpLength = (packet[l4 + 4] << 8) | packet[l4 + 5];
  if (udpLength < 8 || l4 + udpLength > ip.end) return null;
  const end = l4 + udpLength;
  return {
    family: ip.family,
    sourceAddr: ip.sourceAddr,
    sourcePort: (packet[l4] << 8) | packet[l4 + 1],
    payload: packet.subarray(l4 + 8, Math.min(end, packet.length)),
    cut: packet.length < end,
  };
}
