// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packetComment } from '../../src/pcap/capture';

test('every captured packet names its owner, its netns when it is a container\'s, or says it has none', () => {
  assert.equal(packetComment(42, { comm: 'curl' }), 'pid 42 (curl)');
  assert.equal(packetComment(42, { comm: 'nginx', netns: 4026532177 }), 'pid 42 (nginx) netns 4026532177');
  assert.equal(packetComment(42, undefined), 'pid 42 (?)');
  assert.equal(packetComment(0, { comm: 'x' }), 'owner unknown');
});
