// SPDX-License-Identifier: MIT
// DNS as a real client sends it: dig 9.18's queries (AD bit set, EDNS OPT with a cookie) and dnsmasq's
// answers, bytes as proctap copied them in test/e2e/l7-dns.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run, type Call } from './l7wire';

const hex = (s: string) => new Uint8Array(Buffer.from(s, 'hex'));
const QUERY = '7f3701200001000000000001046e616d650474657374000001000100002904d000000000000c000a000867658dd395abac63';
const ANSWER = '7f3785800001000100000001046e616d6504746573740000010001c00c000100010000000000040a01020300002904d0000000000000';
const TCP_QUERY = '0032424401200001000000000001046e616d650474657374000001000100002904d000000000000c000a000852bd9ebd15ad4772';
const TCP_ANSWER = '0036424485800001000100000001046e616d6504746573740000010001c00c000100010000000000040a01020300002904d0000000000000';

test('dig\'s queries (AD bit set) are DNS, over UDP and over TCP', () => {
  for (const [transport, q, a] of [['udp', QUERY, ANSWER], ['tcp', TCP_QUERY, TCP_ANSWER]] as const) {
    const calls: Call[] = [
      { dir: 'tx', bytes: hex(q), tsNs: 1000 },
      { dir: 'rx', bytes: hex(a), tsNs: 2000 },
    ];
    const { exchanges, decoder } = run(calls, { transport });
    assert.equal(decoder.status.protocol, 'dns', `${transport}: ${decoder.status.reason}`);
    assert.deepEqual(exchanges.map((x) => `${x.role} ${x.operation} ${x.status} ${x.latencyFirstNs}`), ['client A name.test NOERROR 1000'], transport);
  }
});

test('a query with the Z bit set is not taken for DNS', () => {
  const z = hex(QUERY);
  z[3] |= 0x40;
  assert.notEqual(run([{ dir: 'tx', bytes: z, tsNs: 1000 }], { transport: 'udp' }).decoder.status.protocol, 'dns');
});
