// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PortOwners, packetPorts } from '../../src/pcap/owners';
import { LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2 } from '../../src/pcap/pcapng';

function ipv4Tcp(src: number[], dst: number[], sport: number, dport: number, opts: { vlan?: boolean; fragOffset?: number; proto?: number } = {}): Uint8Array {
  const eth = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, ...(opts.vlan ? [0x81, 0x00, 0, 5] : []), 0x08, 0x00];
  const ip = [0x45, 0, 0, 40, 0, 0, (opts.fragOffset ?? 0) >> 8, (opts.fragOffset ?? 0) & 0xff, 64, opts.proto ?? 6, 0, 0, ...src, ...dst];
  const l4 = [sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 0, 0, 0];
  return Uint8Array.from([...eth, ...ip, ...l4]);
}

function sll2Ipv6Udp(packetType: number, sport: number, dport: number): Uint8Array {
  const sll2 = [0x86, 0xdd, 0, 0, 0, 0, 0, 2, 0, 1, packetType, 6, 0, 0, 0, 0, 0, 0, 0, 0];
  const src = [0xfd, 0x70, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
  const dst = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  const ip6 = [0x60, 0, 0, 0, 0, 8, 17, 64, ...src, ...dst];
  return Uint8Array.from([...sll2, ...ip6, sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8, 0, 0]);
}

test('packetPorts: TCP/UDP over IPv4 and IPv6, Ethernet (with VLAN) and LINUX_SLL2; others are null', () => {
  assert.deepEqual(packetPorts(ipv4Tcp([10, 242, 0, 2], [10, 242, 0, 1], 40000, 80), LINKTYPE_ETHERNET), {
    proto: 6, srcAddr: '10.242.0.2', dstAddr: '10.242.0.1', srcPort: 40000, dstPort: 80,
  });
  assert.equal(packetPorts(ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, { vlan: true }), LINKTYPE_ETHERNET)?.dstAddr, '5.6.7.8');
  assert.deepEqual(packetPorts(sll2Ipv6Udp(4, 5353, 53), LINKTYPE_LINUX_SLL2), {
    proto: 17, srcAddr: 'fd70::2', dstAddr: '2001:db8::1', srcPort: 5353, dstPort: 53,
  });
  const sll = Uint8Array.from([0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, ...ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 7, 9).subarray(12)]);
  assert.deepEqual(packetPorts(sll, LINKTYPE_LINUX_SLL), { proto: 6, srcAddr: '1.2.3.4', dstAddr: '5.6.7.8', srcPort: 7, dstPort: 9 });
  assert.equal(packetPorts(ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, { fragOffset: 8 }), LINKTYPE_ETHERNET), null, 'a later fragment has no ports');
  assert.equal(packetPorts(ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2, { proto: 1 }), LINKTYPE_ETHERNET), null, 'ICMP');
  const arp = Uint8Array.from([...new Array(12).fill(0), 0x08, 0x06, ...new Array(28).fill(0)]);
  assert.equal(packetPorts(arp, LINKTYPE_ETHERNET), null);
  assert.equal(packetPorts(ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2).subarray(0, 36), LINKTYPE_ETHERNET), null, 'truncated');
  assert.equal(packetPorts(ipv4Tcp([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), 101), null, 'other link types');
});

test('PortOwners: the local port is the source when outbound, the destination when inbound', () => {
  const owners = new PortOwners();
  owners.learn(6, 40000, { pid: 10, startTime: 1n });
  owners.learn(6, 80, { pid: 20, startTime: 2n }); // a traced server on 80
  const out = packetPorts(ipv4Tcp([10, 242, 0, 2], [10, 242, 0, 1], 40000, 80), LINKTYPE_ETHERNET)!;
  const back = packetPorts(ipv4Tcp([10, 242, 0, 1], [10, 242, 0, 2], 80, 40000), LINKTYPE_ETHERNET)!;
  const local = new Set(['10.242.0.2']);
  assert.equal(owners.ownerOf(out, undefined, local)?.pid, 10, 'by local address');
  assert.equal(owners.ownerOf(back, undefined, local)?.pid, 10);
  assert.equal(owners.ownerOf(back, 'outbound', new Set())?.pid, 20, 'by direction');
  assert.equal(owners.ownerOf(back, 'inbound', new Set())?.pid, 10);
  assert.equal(owners.ownerOf({ ...out, proto: 17 }, undefined, local), undefined, 'protocol matters');
  owners.learn(6, 40000, { pid: 11, startTime: 3n });
  assert.deepEqual(owners.ownerOf(out, undefined, local), { pid: 11, startTime: 3n }, 'the latest owner of a port wins');
  owners.learn(1, 7, { pid: 1, startTime: 0n });
  owners.learn(6, 0, { pid: 1, startTime: 0n });
  assert.equal(owners.ownerOf({ ...out, srcPort: 0 }, 'outbound', new Set()), undefined, 'port 0 is never learned');
});
