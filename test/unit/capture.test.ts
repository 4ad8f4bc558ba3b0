// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PacketCapture, packetComment } from '../../src/pcap/capture';

test('every captured packet names its owner, its netns when it is a container\'s, or says it has none', () => {
  assert.equal(packetComment(42, { comm: 'curl' }), 'pid 42 (curl)');
  assert.equal(packetComment(42, { comm: 'nginx', netns: 4026532177 }), 'pid 42 (nginx) netns 4026532177');
  assert.equal(packetComment(42, undefined), 'pid 42 (?)');
  assert.equal(packetComment(0, { comm: 'x' }), 'owner unknown');
});

test('PacketCapture: each packet names its current owner (a new pid, a comm changed by exec, an owner known only later)', () => {
  const written: Array<string | undefined> = [];
  const writer = { writePacket: (p: { comment?: string }) => void written.push(p.comment), flush: () => {}, close: () => {} };
  const nodes = new Map<number, { comm: string; netns?: number }>([[10, { comm: 'sh' }]]);
  let lookups = 0;
  const capture = new PacketCapture(writer, (pid) => {
    lookups++;
    return nodes.get(pid);
  });
  const packet = (tgid: number, startTime = 1n) =>
    ({ type: 'packet', tgid, tsNs: 1, startTime, cookie: 1n, originalLength: 1, ifindex: 1, direction: 'tx', data: new Uint8Array(1) }) as const;
  capture.onPacket(packet(10));
  capture.onPacket(packet(10));
  nodes.get(10)!.comm = 'curl'; // exec: the same node, a new comm
  capture.onPacket(packet(10));
  capture.onPacket(packet(11)); // not known yet
  nodes.set(11, { comm: 'wget', netns: 4026532000 });
  capture.onPacket(packet(11));
  capture.onPacket(packet(10, 2n)); // pid 10 again, another process (reuse): looked up again
  capture.onPacket(packet(0));
  assert.deepEqual(written, ['pid 10 (sh)', 'pid 10 (sh)', 'pid 10 (curl)', 'pid 11 (?)', 'pid 11 (wget) netns 4026532000', 'pid 10 (curl)', 'owner unknown']);
  assert.equal(lookups, 4, 'one lookup per change of owner, plus retries while unknown');
  assert.equal(capture.stats.written, 7);
  assert.equal(capture.stats.unowned, 1);
});
