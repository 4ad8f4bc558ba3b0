// SPDX-License-Identifier: MIT
// NAT mapping from a conntrack dump: for a connection as the traced process saw it (its own address and
// port, the remote's), the address and port it had on the host side after SNAT/masquerade (the reply
// tuple's destination) and, where DNAT applied, the real remote (the reply tuple's source). Pure.
import { isIP } from 'node:net';
import type { ConntrackEntry, ConntrackTuple } from '../native';
import { IPPROTO_TCP, IPPROTO_UDP } from '../util/net';

export interface ConnectionKey {
  protocol: 'tcp' | 'udp' | number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}

export interface NatMapping {
  /** Source as seen on the host side (equal to the connection's own when not translated). */
  translatedSrc: string;
  translatedSrcPort: number;
  /** Destination the reply came from (differs from the connection's dst only under DNAT). */
  translatedDst: string;
  translatedDstPort: number;
  sourceTranslated: boolean;
  destinationTranslated: boolean;
  conntrackId?: number;
}

/** Canonical text of an address so "::ffff:10.0.0.1", "10.0.0.1" and "fe80:0::1"/"fe80::1" compare equal. */
export function canonicalAddress(address: string): string {
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (isIP(a) === 4) return a;
  if (isIP(a) !== 6) return a;
  const url = new URL(`http://[${a}]/`).hostname.slice(1, -1); // WHATWG URL serialises IPv6 per RFC 5952
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(url);
  if (mapped) {
    const hi = parseInt(mapped[1], 16);
    const lo = parseInt(mapped[2], 16);
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return url;
}

function protocolNumber(p: ConnectionKey['protocol']): number {
  if (p === 'tcp') return IPPROTO_TCP;
  if (p === 'udp') return IPPROTO_UDP;
  return p;
}

function key(protocol: number, src: string, srcPort: number | undefined, dst: string, dstPort: number | undefined): string {
  return `${protocol}|${canonicalAddress(src)}|${srcPort ?? ''}|${canonicalAddress(dst)}|${dstPort ?? ''}`;
}

function tupleKey(t: ConntrackTuple): string {
  return key(t.protocol, t.src, t.srcPort, t.dst, t.dstPort);
}

/** For each connection, its mapping, or undefined when conntrack has no entry for it (gone, or never
 *  routed through this namespace's conntrack). */
export function mapConnections(entries: readonly ConntrackEntry[], connections: readonly ConnectionKey[]): Array<NatMapping | undefined> {
  const byOriginal = new Map<string, ConntrackEntry>();
  for (const e of entries) byOriginal.set(tupleKey(e.original), e);
  return connections.map((c) => {
    const e = byOriginal.get(key(protocolNumber(c.protocol), c.src, c.srcPort, c.dst, c.dstPort));
    if (e === undefined) return undefined;
    const translatedSrc = canonicalAddress(e.reply.dst);
    const translatedSrcPort = e.reply.dstPort ?? c.srcPort;
    const translatedDst = canonicalAddress(e.reply.src);
    const translatedDstPort = e.reply.srcPort ?? c.dstPort;
    return {
      translatedSrc,
      translatedSrcPort,
      translatedDst,
      translatedDstPort,
      sourceTranslated: translatedSrc !== canonicalAddress(c.src) || translatedSrcPort !== c.srcPort,
      destinationTranslated: translatedDst !== canonicalAddress(c.dst) || translatedDstPort !== c.dstPort,
      conntrackId: e.id,
    };
  });
}
