// SPDX-License-Identifier: MIT
// NAT mapping from conntrack entries: the translated source is the reply tuple's destination.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalAddress, mapConnections } from '../../src/isolate/natmap';
import type { ConntrackEntry } from '../../src/native';

const masqueraded: ConntrackEntry = {
  family: 'ipv4',
  original: { src: '10.213.78.2', dst: '10.213.79.2', protocol: 6, srcPort: 42366, dstPort: 7777 },
  reply: { src: '10.213.79.2', dst: '10.213.79.1', protocol: 6, srcPort: 7777, dstPort: 61000 },
  id: 2401020886,
  status: 0x19e,
};
const untranslatedUdp: ConntrackEntry = {
  family: 'ipv6',
  original: { src: 'fd00::2', dst: 'fd00:1::5', protocol: 17, srcPort: 5353, dstPort: 53 },
  reply: { src: 'fd00:1::5', dst: 'fd00::2', protocol: 17, srcPort: 53, dstPort: 5353 },
};
const dnat: ConntrackEntry = {
  family: 'ipv4',
  original: { src: '10.1.0.2', dst: '10.9.9.9', protocol: 6, srcPort: 40000, dstPort: 80 },
  reply: { src: '10.2.0.7', dst: '10.1.0.2', protocol: 6, srcPort: 8080, dstPort: 40000 },
};
const icmp: ConntrackEntry = {
  family: 'ipv4',
  original: { src: '10.1.0.2', dst: '10.2.0.1', protocol: 1, icmpId: 7, icmpType: 8, icmpCode: 0 },
  reply: { src: '10.2.0.1', dst: '10.1.0.2', protocol: 1, icmpId: 7, icmpType: 0, icmpCode: 0 },
};
const entries = [icmp, masqueraded, untranslatedUdp, dnat];

test('a masqueraded TCP connection maps to the reply tuple destination (address and port)', () => {
  const [m] = mapConnections(entries, [{ protocol: 'tcp', src: '10.213.78.2', srcPort: 42366, dst: '10.213.79.2', dstPort: 7777 }]);
  assert.deepEqual(m, {
    translatedSrc: '10.213.79.1',
    translatedSrcPort: 61000,
    translatedDst: '10.213.79.2',
    translatedDstPort: 7777,
    sourceTranslated: true,
    destinationTranslated: false,
    conntrackId: 2401020886,
  });
});

test('an untranslated IPv6 UDP flow maps to itself, matched through other spellings of its addresses', () => {
  const [m] = mapConnections(entries, [{ protocol: 'udp', src: 'FD00:0::2', srcPort: 5353, dst: '[fd00:1:0::5]', dstPort: 53 }]);
  assert.equal(m?.translatedSrc, 'fd00::2');
  assert.equal(m?.translatedSrcPort, 5353);
  assert.equal(m?.sourceTranslated, false);
  assert.equal(m?.destinationTranslated, false);
});

test('DNAT shows the real remote; protocol numbers work like names', () => {
  const [m] = mapConnections(entries, [{ protocol: 6, src: '10.1.0.2', srcPort: 40000, dst: '10.9.9.9', dstPort: 80 }]);
  assert.equal(m?.destinationTranslated, true);
  assert.equal(`${m?.translatedDst}:${m?.translatedDstPort}`, '10.2.0.7:8080');
  assert.equal(m?.sourceTranslated, false);
});

test('connections conntrack does not know, or with another protocol or port, map to undefined', () => {
  const out = mapConnections(entries, [
    { protocol: 'udp', src: '10.213.78.2', srcPort: 42366, dst: '10.213.79.2', dstPort: 7777 },
    { protocol: 'tcp', src: '10.213.78.2', srcPort: 42367, dst: '10.213.79.2', dstPort: 7777 },
    { protocol: 'tcp', src: '10.213.79.2', srcPort: 7777, dst: '10.213.78.2', dstPort: 42366 },
  ]);
  assert.deepEqual(out, [undefined, undefined, undefined]);
  assert.deepEqual(mapConnections([], [{ protocol: 'tcp', src: '1.2.3.4', srcPort: 1, dst: '5.6.7.8', dstPort: 2 }]), [undefined]);
});

test('canonicalAddress: IPv4-mapped IPv6 is IPv4, IPv6 is RFC 5952, brackets go', () => {
  assert.equal(canonicalAddress('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(canonicalAddress('::FFFF:a00:1'), '10.0.0.1');
  assert.equal(canonicalAddress('[2001:DB8:0:0::1]'), '2001:db8::1');
  assert.equal(canonicalAddress('192.0.2.1'), '192.0.2.1');
  assert.equal(canonicalAddress('not an address'), 'not an address');
});
