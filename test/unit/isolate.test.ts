// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SUBNET_POOL,
  checkInterfaceName,
  chooseSubnet,
  formatIpv4,
  instanceNames,
  iptablesNatRule,
  ipv6Subnet,
  loopbackNameservers,
  nftRuleset,
  onlyLoopbackNameservers,
  overlaps,
  ownerOfComment,
  ownerOfInterface,
  ownerOfNetns,
  ownerOfTable,
  parsePrefix4,
  subnetIndex,
} from '../../src/isolate/plan';

test('interface names: 1-15 safe characters, everything else refused with one line', () => {
  for (const ok of ['eth0', 'enp0s31f6', 'wlan0', 'br-1a2b3c4d5e6f', 'veth.10', 'a_b', 'x@y']) assert.equal(checkInterfaceName(ok), ok);
  for (const bad of ['', 'eth 0', 'eth0;rm', 'a'.repeat(16), 'eth0/1', '.', '..', 'eth0\n', 'é0', '$(x)', 'a"b']) {
    assert.throws(() => checkInterfaceName(bad), (err: Error) => /^invalid interface name '.*' \(1-15 characters/s.test(err.message) && !err.message.includes('\n', err.message.indexOf(')')));
  }
});

test('instance names carry the owner pid, fit IFNAMSIZ, and parse back', () => {
  const n = instanceNames(4194304);
  assert.ok(n.hostIf.length <= 15 && n.nsIf.length <= 15);
  assert.equal(ownerOfNetns(n.netns), 4194304);
  assert.equal(ownerOfInterface(n.hostIf), 4194304);
  assert.equal(ownerOfInterface(n.nsIf), 4194304);
  assert.equal(ownerOfTable(n.table), 4194304);
  assert.equal(ownerOfComment(n.comment), 4194304);
  // Someone else's names are never ours.
  for (const other of ['proctap', 'proctap-', 'proctap-12x', 'docker0', 'pt12', 'pt12hx', 'ptxh', 'proctap_1_2', 'nat']) {
    assert.equal(ownerOfNetns(other), null);
    assert.equal(ownerOfInterface(other), null);
    assert.equal(ownerOfTable(other), null);
  }
});

test('prefixes parse and overlap as routing does', () => {
  assert.deepEqual(parsePrefix4('10.1.2.3/24'), { addr: parsePrefix4('10.1.2.0')?.addr, len: 24 });
  assert.deepEqual(parsePrefix4('default'), { addr: 0, len: 0 });
  assert.equal(parsePrefix4('fd00::/8'), null);
  assert.equal(parsePrefix4('10.1.2.300'), null);
  assert.ok(overlaps(parsePrefix4('10.0.0.0/8')!, parsePrefix4('10.242.3.4/30')!));
  assert.ok(!overlaps(parsePrefix4('10.242.0.0/30')!, parsePrefix4('10.242.0.4/30')!));
});

test('the chosen /30 avoids every route and address in use, and the gateway is its first host', () => {
  const free = chooseSubnet([]);
  assert.deepEqual(free, { cidr: '10.242.0.0/30', hostAddr: '10.242.0.1', nsAddr: '10.242.0.2', prefixLen: 30 });
  // A route covering the start of the pool, another instance's /30, an address: all skipped.
  const inUse = ['10.242.0.0/25', '10.242.0.128/30', '10.242.0.133/32', 'default'].map((p) => parsePrefix4(p)!);
  assert.equal(chooseSubnet(inUse).cidr, '10.242.0.136/30');
  // The seed spreads instances; it wraps around the pool.
  assert.equal(chooseSubnet([], 16383).cidr, '10.242.255.252/30');
  assert.equal(chooseSubnet([parsePrefix4('10.242.255.252/30')!], 16383).cidr, '10.242.0.0/30');
  // A route over the whole pool leaves nothing: a clear error, never a clash.
  assert.throws(() => chooseSubnet([parsePrefix4('10.0.0.0/8')!]), /no free \/30 left in 10\.242\.0\.0\/16/);
  assert.equal(formatIpv4(SUBNET_POOL.addr), '10.242.0.0');
});

test('five instances picking one after another get five distinct subnets', () => {
  const taken: string[] = [];
  for (let owner = 1000; owner < 1005; owner++) {
    const s = chooseSubnet(taken.map((c) => parsePrefix4(c)!), 7); // same seed: worst case
    taken.push(s.cidr);
  }
  assert.equal(new Set(taken).size, 5);
});

test('IPv6 /64 follows the v4 subnet index', () => {
  const s = chooseSubnet([], 5);
  assert.equal(subnetIndex(s), 5);
  assert.deepEqual(ipv6Subnet(subnetIndex(s)), { cidr: 'fd70:7074:6170:5::/64', hostAddr: 'fd70:7074:6170:5::1', nsAddr: 'fd70:7074:6170:5::2', prefixLen: 64 });
});

test('NAT ruleset: one table of our own, masquerade from our subnet out of the device only', () => {
  const names = instanceNames(42);
  const v4 = chooseSubnet([]);
  const text = nftRuleset(names, 'eth0', v4, ipv6Subnet(0));
  assert.match(text, /^table inet proctap_42 \{/);
  assert.match(text, /ip saddr 10\.242\.0\.0\/30 oifname "eth0" masquerade/);
  assert.match(text, /ip6 saddr fd70:7074:6170:0::\/64 oifname "eth0" masquerade/);
  assert.doesNotMatch(nftRuleset(names, 'eth0', v4, null), /ip6/);
  assert.throws(() => nftRuleset(names, 'eth0"; flush ruleset', v4, null), /invalid interface name/);
  assert.deepEqual(iptablesNatRule('-D', names, 'eth0', v4), [
    '-w', '-t', 'nat', '-D', 'POSTROUTING', '-s', '10.242.0.0/30', '-o', 'eth0', '-m', 'comment', '--comment', 'proctap-42', '-j', 'MASQUERADE',
  ]);
});

test('loopback-only resolv.conf is detected (unreachable from a namespace)', () => {
  assert.ok(onlyLoopbackNameservers('nameserver 127.0.0.53\noptions edns0\n'));
  assert.deepEqual(loopbackNameservers('nameserver 127.0.0.53\nnameserver 10.0.0.1\n'), ['127.0.0.53']);
  assert.ok(!onlyLoopbackNameservers('nameserver 127.0.0.53\nnameserver 10.0.0.1\n'));
  assert.ok(!onlyLoopbackNameservers('# nothing\n'));
});
