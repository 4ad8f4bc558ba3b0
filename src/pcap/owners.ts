// SPDX-License-Identifier: MIT
// Per-packet process metadata for libpcap captures (run --isolate, attach --netns-capture): libpcap sees
// frames, not sockets, so a packet is matched to its owner by its local (protocol, port), learned from
// the trace's own records (TCP state changes and flow records carry the local port). Pure.
import { parseIpHeader } from '../util/ip';
import { AF_INET } from '../util/net';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2, type PacketDirection } from './pcapng';
const ETH_P_IP = 0x0800;
const ETH_P_IPV6 = 0x86dd;
const ETH_P_8021Q = 0x8100;

export interface PacketPorts {
  proto: 6 | 17;
  /** Source and destination IP addresses, as formatAddress writes them. */
  srcAddr: string;
  dstAddr: string;
  srcPort: number;
  dstPort: number;
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
  if (etherType !== ETH_P_IP && etherType !== ETH_P_IPV6) return null;
  const ip = parseIpHeader(data, at);
  if (!ip || (etherType === ETH_P_IP) !== (ip.family === AF_INET) || ip.fragmentOffset !== 0) return null;
  const proto = ip.protocol;
  const l4 = ip.transportAt;
  if ((proto !== 6 && proto !== 17) || data.length < l4 + 4) return null;
  return { proto, srcAddr: ip.sourceAddr, dstAddr: ip.destinationAddr, srcPort: (data[l4] << 8) | data[l4 + 1], dstPort: (data[l4 + 2] << 8) | data[l4 + 3] };
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
