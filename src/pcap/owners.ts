// SPDX-License-Identifier: MIT
// Per-packet process metadata for libpcap captures (run --isolate, attach --netns-capture): libpcap sees
// frames, not sockets, so a packet is matched to its owner by its local (protocol, port), learned from
// the trace's own records (TCP state changes and flow records carry the local port). Pure.
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, type PacketDirection } from './pcapng';
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;

export interface PacketPorts {
  proto: 6 | 17;
  /** Source and destination IP addresses, as formatAddress writes them (IPv4 dotted, IPv6 raw hex-free). */
  srcAddr: string;
  dstAddr: string;
  srcPort: number;
  dstPort: number;
}

function ipv4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

function ipv6(b: Uint8Array, at: number): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((b[at + i] << 8) | b[at + i + 1]).toString(16));
  // the shortest form, as inet_ntop: the longest run of two or more zero groups becomes "::"
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** TCP/UDP ports and addresses of an Ethernet, LINUX_SLL or LINUX_SLL2 frame; null for anything else (ARP, ICMP,
 *  fragments after the first, IPv6 with extension headers before the transport header, truncated). */
export function packetPorts(data: Uint8Array, linkType: number): PacketPorts | null {
  let at: number;
  let etherType: number;
  if (linkType === LINKTYPE_ETHERNET) {
    if (data.length < 14) return null;
    at = 14;
    etherType = (data[12] << 8) | data[13];
    if (etherType === ETH_P_8021Q && data.length >= 18) {
      etherType = (data[16] << 8) | data[17];
      at = 18;
    }
  } else if (linkType === LINKTYPE_LINUX_SLL) {
    if (data.length < 16) return null;
    etherType = (data[14] << 8) | data[15];
    at = 16;
  } else if (linkType === LINKTYPE_LINUX_SLL2) {
    if (data.length < 20) return null;
    etherType = (data[0] << 8) | data[1];
    at = 20;
  } else {
    return null;
  }
  let proto: number;
  let srcAddr: string;
  let dstAddr: string;
  if (etherType === ETH_P_IP) {
    if (data.length < at + 20 || data[at] >> 4 !== 4) return null;
    const ihl = (data[at] & 0x0f) * 4;
    const fragOffset = ((data[at + 6] & 0x1f) << 8) | data[at + 7];
    if (fragOffset !== 0 || ihl < 20) return null;
    proto = data[at + 9];
    srcAddr = ipv4(data, at + 12);
    dstAddr = ipv4(data, at + 16);
    at += ihl;
  } else if (etherType === ETH_P_IPV6) {
    if (data.length < at + 40 || data[at] >> 4 !== 6) return null;
    proto = data[at + 6];
    srcAddr = ipv6(data, at + 8);
    dstAddr = ipv6(data, at + 24);
    at += 40;
  } else {
    return null;
  }
  if ((proto !== 6 && proto !== 17) || data.length < at + 4) return null;
  return { proto, srcAddr, dstAddr, srcPort: (data[at] << 8) | data[at + 1], dstPort: (data[at + 2] << 8) | data[at + 3] };
}

export interface PortOwner {
  pid: number;
  startTime: bigint;
}

/** Owners of local (protocol, port) pairs, as the trace learns them; the latest owner of a port wins. */
export class PortOwners {
  private readonly owners = new Map<number, PortOwner>();

  private static key(proto: number, port: number): number {
    return proto * 65536 + port;
  }

  learn(proto: number, port: number, owner: PortOwner): void {
    if (port > 0 && (proto === 6 || proto === 17)) this.owners.set(PortOwners.key(proto, port), owner);
  }

  /**
   * The owner of a packet. Its local port is the source port when the packet is outbound (the direction
   * from LINUX_SLL2, or a source address that is one of `localAddrs`), the destination port when inbound;
   * with neither known, whichever of the two ports has an owner.
   */
  ownerOf(p: PacketPorts, direction: PacketDirection | undefined, localAddrs: ReadonlySet<string>): PortOwner | undefined {
    const outbound = direction === 'outbound' || (direction === undefined && localAddrs.has(p.srcAddr));
    const inbound = direction === 'inbound' || (direction === undefined && localAddrs.has(p.dstAddr));
    if (outbound) return this.owners.get(PortOwners.key(p.proto, p.srcPort));
    if (inbound) return this.owners.get(PortOwners.key(p.proto, p.dstPort));
    return this.owners.get(PortOwners.key(p.proto, p.srcPort)) ?? this.owners.get(PortOwners.key(p.proto, p.dstPort));
  }
}
