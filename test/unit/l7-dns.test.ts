// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { briefs, concat, everySplit, pieces, run, type Call } from './l7wire';

const u16 = (v: number) => [v >> 8, v & 0xff];
function qname(n: string): number[] {
  const out: number[] = [];
  for (const label of n.split('.')) out.push(label.length, ...Buffer.from(label));
  return [...out, 0];
}
/** RFC 1035 4.1: a query for one name, with an EDNS OPT record as resolvers send it. */
function query(id: number, name: string, type: number): Uint8Array {
  const opt = [0, ...u16(41), ...u16(1232), 0, 0, 0, 0, ...u16(0)];
  return new Uint8Array([...u16(id), 0x01, 0x00, ...u16(1), ...u16(0), ...u16(0), ...u16(1), ...qname(name), ...u16(type), ...u16(1), ...opt]);
}
/** The answer: the question again, then `answers` A records (pointer to the question name). */
function answer(id: number, name: string, type: number, rcode: number, answers: number): Uint8Array {
  const rrs: number[] = [];
  for (let i = 0; i < answers; i++) rrs.push(0xc0, 12, ...u16(1), ...u16(1), 0, 0, 0, 60, ...u16(4), 127, 0, 0, 1 + i);
  return new Uint8Array([...u16(id), 0x81, 0x80 | rcode, ...u16(1), ...u16(answers), ...u16(0), ...u16(0), ...qname(name), ...u16(type), ...u16(1), ...rrs]);
}
const tcp = (m: Uint8Array) => concat(u16(m.length), m);

test('DNS over UDP: name, type, rcode and answer count per query, matched by id and question', () => {
  const calls: Call[] = [
    { dir: 'tx', bytes: query(0x1111, 'Api.Test', 1), tsNs: 1000 },
    { dir: 'tx', bytes: query(0x2222, 'api.test', 28), tsNs: 1100 },
    { dir: 'rx', bytes: answer(0x2222, 'api.test', 28, 0, 0), tsNs: 3100 }, // answered out of order
    { dir: 'rx', bytes: answer(0x1111, 'api.test', 1, 0, 2), tsNs: 5000 },
    { dir: 'tx', bytes: query(0x3333, 'nope.test', 1), tsNs: 6000 },
    { dir: 'rx', bytes: answer(0x3333, 'nope.test', 1, 3, 0), tsNs: 6500 },
    { dir: 'tx', bytes: query(0x4444, 'slow.test', 1), tsNs: 7000 },
  ];
  const { exchanges, decoder } = run(calls, { transport: 'udp' });
  assert.equal(decoder.status.protocol, 'dns');
  assert.equal(decoder.status.role, 'client');
  assert.deepEqual(exchanges.map((x) => `${x.operation} ${x.status} ${x.error}`), [
    'AAAA api.test NOERROR false', 'A api.test NOERROR false', 'A nope.test NXDOMAIN true', 'A slow.test  false',
  ]);
  assert.deepEqual(exchanges.map((x) => x.latencyLastNs), [2000, 4000, 500, null]);
  assert.equal(exchanges[1].detail.kind === 'dns' && exchanges[1].detail.answers, 2);
  assert.equal(exchanges[1].responseBytes, answer(0x1111, 'api.test', 1, 0, 2).length);
  assert.ok(exchanges[3].notes.includes('no-response'));
});

test('DNS server side over UDP: queries received, answers sent; SERVFAIL is an error', () => {
  const calls: Call[] = [
    { dir: 'rx', bytes: query(7, 'x.test', 1), tsNs: 10 },
    { dir: 'tx', bytes: answer(7, 'x.test', 1, 2, 0), tsNs: 20 },
  ];
  const [x] = run(calls, { transport: 'udp' }).exchanges;
  assert.equal(x.role, 'server');
  assert.equal(x.status, 'SERVFAIL');
  assert.equal(x.error, true);
});

test('DNS over TCP: 2-byte length framing, several messages per call, split at every byte boundary', () => {
  const calls: Call[] = [
    { dir: 'tx', bytes: concat(tcp(query(1, 'a.test', 1)), tcp(query(2, 'b.test', 1))), tsNs: 1 },
    { dir: 'rx', bytes: concat(tcp(answer(2, 'b.test', 1, 0, 1)), tcp(answer(1, 'a.test', 1, 3, 0))), tsNs: 2 },
  ];
  const want = briefs(run(calls).exchanges);
  assert.deepEqual(want, [
    `dns client A b.test -> NOERROR req=${query(2, 'b.test', 1).length + 2} res=${answer(2, 'b.test', 1, 0, 1).length + 2}`,
    `dns client A a.test -> NXDOMAIN (error) req=${query(1, 'a.test', 1).length + 2} res=${answer(1, 'a.test', 1, 3, 0).length + 2}`,
  ]);
  assert.equal(everySplit(calls).mismatch, null);
  assert.deepEqual(briefs(run(pieces(calls, 1)).exchanges), want);
});

test('UDP that is not DNS is unknown from its first datagram; a cut answer is marked', () => {
  const { decoder, exchanges } = run([{ dir: 'tx', bytes: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]), tsNs: 1 }], { transport: 'udp' });
  assert.equal(decoder.status.state, 'unknown');
  assert.equal(exchanges.length, 0);
  const full = answer(9, 'big.test', 1, 0, 3);
  const cut: Call[] = [
    { dir: 'tx', bytes: query(9, 'big.test', 1), tsNs: 1 },
    { dir: 'rx', bytes: full.subarray(0, 40), length: full.length, tsNs: 2 },
  ];
  const [x] = run(cut, { transport: 'udp' }).exchanges;
  assert.equal(x.status, 'NOERROR');
  assert.equal(x.responseBytes, full.length);
  assert.ok(x.partial && x.notes.includes('answer-cut'));
});
