// SPDX-License-Identifier: MIT
// The IP header of a packet (IPv4, or IPv6 without extension headers before the transport header): one
// parser for the DNS answers the kernel copies and the frames libpcap captures. Pure.
import { AF_INET, AF_INET6, formatAddress } from './net';

export interface IpHeader {
  family: typeof AF_INET | typeof AF_INET6;
  /** The transport protocol (IPv6: the first next-header). */
  protocol: number;
  sourceAddr: string;
  destinationAddr: string;
  /** Offset of the transport header from the packet's start. */
  transportAt: number;
  /** Where the IP packet ends, from its own length field (past what was captured when cut). */
  end: number;
  /** IPv4 fragment offset (0 for the first fragment and for IPv6). */
  fragmentOffset: number;
}

/** Parses the IP header at `at`; null when it is neither IPv4 nor IPv6 or is truncated. */
export function parseIpHeader(packet: Uint8Array, at = 0): IpHeader | null {
  if (packet.length < at + 1) return null;
  const version = packet[at] >> 4;
  if (version === 4) {
    const ihl = (packet[at] & 0xf) * 4;
    if (ihl < 20 || packet.length < at + Math.max(ihl, 20)) return null;
    return {
      family: AF_INET,
      protocol: packet[at + 9],
      sourceAddr: formatAddress(AF_INET, packet.subarray(at + 12, at + 16)),
      destinationAddr: formatAddress(AF_INET, packet.subarray(at + 16, at + 20)),
      transportAt: at + ihl,
      end: at + ((packet[at + 2] << 8) | packet[at + 3]),
      fragmentOffset: ((packet[at + 6] & 0x1f) << 8) | packet[at + 7],
    };
  }
  if (version === 6) {
    if (packet.length < at + 40) return null;
    return {
      family: AF_INET6,
      protocol: packet[at + 6],
      sourceAddr: formatAddress(AF_INET6, packet.subarray(at + 8, at + 24)),
      destinationAddr: formatAddress(AF_INET6, packet.subarray(at + 24, at + 40)),
      transportAt: at + 40,
      end: at + 40 + ((packet[at + 4] << 8) | packet[at + 5]),
      fragmentOffset: 0,
    };
  }
  return null;
}
