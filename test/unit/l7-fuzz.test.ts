// SPDX-License-Identifier: MIT
// Seeded fuzzing of the L7 decoders: random bytes, random chunking, mutated well-formed streams.
// Nothing may throw, figures stay sane, memory stays bounded, and a well-formed stream after junk
// is counted exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionDecoder } from '../../src/l7/connection';
import type { Exchange } from '../../src/l7/types';
import { briefs, bytes, chunksOf, conversation, prng, randomBytes, run, type Call } from './l7wire';

const STATES = new Set(['detecting', 'decoding', 'unknown', 'undecodable', 'opaque']);

function sane(xs: Exchange[]): void {
  for (const x of xs) {
    for (const v of [x.requestBytes, x.responseBytes]) assert.ok(Number.isFinite(v) && v >= 0, `bytes ${v}`);
    for (const v of [x.latencyFirstNs, x.latencyLastNs]) assert.ok(v === null || (Number.isFinite(v) && v >= 0), `latency ${v}`);
    assert.equal(typeof x.operation, 'string');
    assert.ok(!/[\x00-\x1f]/.test(x.operation), `control bytes in ${JSON.stringify(x.operation)}`);
  }
}

/** Random calls: random direction, random sizes, sometimes an uncopied tail or an offset jump. */
function randomCalls(rand: () => number, n: number, alphabet?: Uint8Array): Call[] {
  const calls: Call[] = [];
  for (let i = 0; i < n; i++) {
    const len = 1 + Math.floor(rand() * 300);
    let b = randomBytes(rand, len);
    if (alphabet) b = b.map((v) => alphabet[v % alphabet.length]);
    const c: Call = { dir: rand() < 0.5 ? 'tx' : 'rx', bytes: b, tsNs: i * 1000 };
    if (rand() < 0.1) c.length = len + Math.floor(rand() * 10000);
    calls.push(c);
  }
  return calls;
}

test('fuzz: random bytes in random calls never throw, on TCP and UDP, from the start or mid-stream', () => {
  const rand = prng(0x15);
  // An alphabet of protocol-looking bytes makes deeper paths likely (CRLF, digits, RESP and TLS type bytes).
  const alphabet = bytes('*$+-:\r\n0123456789GET /HTTP1.PRI\x16\x03\x01\x00QZCEP');
  let exchanges = 0;
  for (let round = 0; round < 400; round++) {
    const calls = randomCalls(rand, 1 + Math.floor(rand() * 20), round % 2 ? alphabet : undefined);
    const d = new ConnectionDecoder({ transport: round % 5 === 0 ? 'udp' : 'tcp', fromStart: round % 3 !== 0, bufferCap: 4096 });
    const out: Exchange[] = [];
    for (const c of chunksOf(calls)) {
      if (rand() < 0.05) c.offset += Math.floor(rand() * 100); // a lost record
      out.push(...d.push(c));
      assert.ok(d.bufferedBytes <= 4096 + 300, `buffered ${d.bufferedBytes}`);
    }
    out.push(...d.close());
    sane(out);
    assert.ok(STATES.has(d.status.state));
    assert.ok(!d.status.reason?.startsWith('internal error'), d.status.reason ?? '');
    exchanges += out.length;
  }
  assert.ok(exchanges >= 0);
});

const get = (p: string) => `GET ${p} HTTP/1.1\r\nHost: a.test\r\n\r\n`;
const ok = (body: string) => `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`;

test('fuzz: junk calls before a well-formed HTTP stream (attached mid-stream) do not change how it is counted', () => {
  const rand = prng(0xbeef);
  const good = conversation([['tx', get('/1')], ['rx', ok('one')], ['tx', get('/2')], ['rx', ok('two')]], 1_000_000_000);
  const want = briefs(run(good).exchanges).map((s) => `${s} [mid-stream]`);
  for (let round = 0; round < 200; round++) {
    const junk = randomCalls(rand, 1 + Math.floor(rand() * 4)).map((c) => ({ ...c, length: undefined }));
    // The junk ends with whole calls in each direction; the good stream then starts at call starts.
    const got = briefs(run([...junk, ...good], { transport: 'tcp', fromStart: false }).exchanges);
    assert.deepEqual(got.slice(-2), want, `round ${round}`);
  }
});

test('fuzz: mutated well-formed streams (flipped bytes, cut calls) never throw', () => {
  const rand = prng(7);
  const streams: Call[][] = [
    conversation([['tx', get('/x')], ['rx', ok('hello')], ['tx', 'POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'], ['rx', ok('')]]),
    conversation([['tx', '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'], ['rx', '$3\r\nabc\r\n'], ['tx', 'PING\r\n'], ['rx', '+PONG\r\n']]),
    conversation([['tx', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00'], ['rx', '\x00\x00\x00\x04\x01\x00\x00\x00\x00'], ['tx', '\x00\x00\x03\x01\x05\x00\x00\x00\x01\x82\x84\x86'], ['rx', '\x00\x00\x01\x01\x05\x00\x00\x00\x01\x88']]),
    conversation([['tx', '\x00\x00\x00\x08\x04\xd2\x16\x2f'], ['rx', 'N'], ['tx', '\x00\x00\x00\x0d\x00\x03\x00\x00u\x00x\x00\x00'], ['rx', 'Z\x00\x00\x00\x05I']]),
  ];
  for (let round = 0; round < 600; round++) {
    const base = streams[round % streams.length];
    const calls = base.map((c) => {
      const b = c.bytes.slice();
      const flips = Math.floor(rand() * 3);
      for (let i = 0; i < flips; i++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      const cut = rand() < 0.2 ? Math.floor(rand() * b.length) : b.length;
      return { ...c, bytes: b.subarray(0, cut), length: cut < b.length ? b.length : undefined };
    });
    const { exchanges, decoder } = run(calls, { transport: 'tcp', fromStart: rand() < 0.7 });
    sane(exchanges);
    assert.ok(!decoder.status.reason?.startsWith('internal error'), decoder.status.reason ?? '');
    assert.ok(exchanges.length <= 4, `${exchanges.length} exchanges from a stream of 2 requests`);
  }
});

test('memory: a megabyte of unknown bytes is dropped, not held', () => {
  const d = new ConnectionDecoder({ transport: 'tcp' });
  let off = 0;
  for (let i = 0; i < 256; i++) {
    const b = new Uint8Array(4096).fill(0x41 + (i % 3));
    d.push({ direction: 'tx', tsNs: i, offset: off, length: b.length, bytes: b });
    off += b.length;
  }
  assert.equal(d.status.state, 'unknown');
  assert.equal(d.bufferedBytes, 0);
});
