// SPDX-License-Identifier: MIT
// The model's L7 view (model/l7.ts) through TraceModel.onRecord, as the session feeds it: data records
// split and merged any way give the same exchanges; each flow its decoder (UDP per remote); decoders
// closed at the socket's release and bounded by the cap; endpoints named by DNS, SNI or Host; what was
// not decoded counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DataRecord, FlowKey, TraceRecord } from '../../src/kernel/records';
import { TraceModel } from '../../src/model/model';
import { TCP_STATE } from '../../src/model/connections';
import { hostName, type L7Event } from '../../src/model/l7';
import { bytes, concat } from './l7wire';

const PID = 42;
const START = 7n;

function key(cookie: bigint, port: number, opts: { proto?: number; remoteAddr?: string } = {}): FlowKey {
  const proto = opts.proto ?? 6;
  const remoteAddr = opts.remoteAddr ?? '127.0.0.1';
  return { id: `${cookie}/${PID}/${START}/${proto}/${remoteAddr}/${port}`, cookie, tgid: PID, startTime: START, family: 2, proto, remoteAddr, remotePort: port, raw: new Uint8Array(40) };
}

/** The data records of one flow for `calls`, offsets running per direction. */
function records(k: FlowKey, calls: Array<['tx' | 'rx', Uint8Array]>, t0 = 1_000_000, source: 'socket' | 'tls' = 'socket'): DataRecord[] {
  const offset = { tx: 0, rx: 0 };
  return calls.map(([direction, b], i) => {
    const r: DataRecord = { type: 'data', tgid: PID, tsNs: t0 + i * 1000, startTime: START, key: k, offset: offset[direction], length: b.length, tid: PID, direction, source, flags: [], kernelClass: 'http1', bytes: b };
    offset[direction] += b.length;
    return r;
  });
}

function model(opts: { fromStart?: boolean; maxDecoders?: number } = {}): { m: TraceModel; events: L7Event[] } {
  const m = new TraceModel();
  const events: L7Event[] = [];
  m.enableL7({ fromStart: opts.fromStart ?? true, maxDecoders: opts.maxDecoders, onExchange: (e) => events.push(e) });
  return { m, events };
}

const release = (cookie: bigint, tsNs = 9e9): TraceRecord => ({ type: 'sockRelease', tgid: PID, startTime: START, tsNs, cookie });
const get = (path: string, host = 'api.test') => bytes(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
const ok = (body: string, status = '200 OK') => bytes(`HTTP/1.1 ${status}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);

/** Cuts every call in pieces of `size` bytes (the same stream, more calls). */
function pieces(calls: Array<['tx' | 'rx', Uint8Array]>, size: number): Array<['tx' | 'rx', Uint8Array]> {
  return calls.flatMap(([d, b]) => Array.from({ length: Math.ceil(b.length / size) }, (_, i) => [d, b.subarray(i * size, (i + 1) * size)] as ['tx' | 'rx', Uint8Array]));
}

const conversation: Array<['tx' | 'rx', Uint8Array]> = [
  ['tx', get('/a')],
  ['rx', ok('hello')],
  ['tx', get('/b?x=1')],
  ['rx', ok('', '404 Not Found')],
];

test('split and merged calls through the record path give the same exchanges, named by the Host they asked for', () => {
  const shapes: Array<Array<['tx' | 'rx', Uint8Array]>> = [
    conversation,
    pieces(conversation, 1),
    pieces(conversation, 7),
    // both requests in one call (pipelined), both answers in one call
    [['tx', concat(get('/a'), get('/b?x=1'))], ['rx', concat(ok('hello'), ok('', '404 Not Found'))]],
  ];
  for (const [i, calls] of shapes.entries()) {
    const { m, events } = model();
    const k = key(BigInt(100 + i), 80);
    for (const r of records(k, calls)) m.onRecord(r);
    m.onRecord(release(k.cookie));
    assert.deepEqual(events.map((e) => `${e.exchange.operation} ${e.exchange.status} ${e.exchange.requestBytes}/${e.exchange.responseBytes}`), [
      `GET /a 200 ${get('/a').length}/${ok('hello').length}`,
      `GET /b?x=? 404 ${get('/b?x=1').length}/${ok('', '404 Not Found').length}`,
    ], `shape ${i}`);
    for (const e of events) {
      assert.equal(e.pid, PID);
      assert.equal(e.socket, k.cookie);
      assert.deepEqual([e.endpoint.label, e.endpoint.name, e.endpoint.nameSource], ['api.test:80', 'api.test', 'host']);
    }
    assert.equal(m.l7!.decoders, 0, 'closed at the release');
    assert.equal(m.l7!.counts.connections.decoded, 1);
  }
});

test('the release gives the request still waiting for its answer', () => {
  const { m, events } = model();
  const k = key(5n, 8080);
  for (const r of records(k, [['tx', get('/slow', '10.0.0.1:8080')]])) m.onRecord(r);
  assert.equal(events.length, 0);
  assert.equal(m.l7!.decoders, 1);
  m.onRecord(release(5n));
  assert.equal(events.length, 1);
  assert.equal(events[0].exchange.status, '');
  assert.ok(events[0].exchange.notes.includes('no-response'), events[0].exchange.notes.join());
  // a Host that is an address names nothing
  assert.deepEqual([events[0].endpoint.label, events[0].endpoint.nameSource], ['127.0.0.1:8080', undefined]);
  assert.equal(m.l7!.decoders, 0);
});

test('decoders alive are capped: the least recently fed is closed first, its exchanges given, and counted', () => {
  const { m, events } = model({ maxDecoders: 3 });
  for (let i = 0; i < 5; i++) for (const r of records(key(BigInt(10 + i), 80), [['tx', get(`/${i}`)]], 1e6 + i * 1e5)) m.onRecord(r);
  assert.equal(m.l7!.decoders, 3);
  assert.equal(m.l7!.counts.connections.evicted, 2);
  assert.deepEqual(events.map((e) => e.exchange.operation), ['GET /0', 'GET /1']);
  // feeding the oldest survivor makes it the newest: the next one evicted is /3's
  for (const r of records(key(12n, 80), [['rx', ok('x')]], 2e6)) m.onRecord(r);
  for (const r of records(key(20n, 80), [['tx', get('/new')]], 3e6)) m.onRecord(r);
  assert.deepEqual(events.map((e) => e.exchange.operation), ['GET /0', 'GET /1', 'GET /2', 'GET /3']);
  assert.equal(events[2].exchange.status, '200');
  m.l7!.finish(4e6);
  assert.equal(m.l7!.decoders, 0);
  assert.equal(events.length, 6);
  assert.equal(m.l7!.counts.connections.total, 6);
});

const u16 = (v: number) => [v >> 8, v & 0xff];
const qname = (n: string) => [...n.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]), 0];
const dnsQuery = (id: number, name: string) => new Uint8Array([...u16(id), 0x01, 0x00, ...u16(1), 0, 0, 0, 0, 0, 0, ...qname(name), ...u16(1), ...u16(1)]);
function dnsAnswer(id: number, name: string, address: number[], rcode = 0): Uint8Array {
  const rr = rcode === 0 ? [0xc0, 12, ...u16(1), ...u16(1), 0, 0, 0, 60, ...u16(4), ...address] : [];
  return new Uint8Array([...u16(id), 0x81, 0x80 | rcode, ...u16(1), ...u16(rr.length ? 1 : 0), 0, 0, 0, 0, ...qname(name), ...u16(1), ...u16(1), ...rr]);
}
/** The answer as the cgroup_skb hook hands it: IPv4 and UDP headers on. */
function dnsPacket(payload: Uint8Array, from: number[]): Uint8Array {
  const udp = [...u16(53), ...u16(40000), ...u16(8 + payload.length), 0, 0];
  const ip = [0x45, 0, ...u16(20 + udp.length + payload.length), 0, 0, 0, 0, 64, 17, 0, 0, ...from, 127, 0, 0, 1];
  return new Uint8Array([...ip, ...udp, ...payload]);
}

test('UDP: one decoder per remote of a socket; the release closes them all; DNS names the endpoints it answered', () => {
  const { m, events } = model();
  const a = key(7n, 53, { proto: 17, remoteAddr: '127.0.0.53' });
  const b = key(7n, 53, { proto: 17, remoteAddr: '127.0.0.54' });
  for (const r of records(a, [['tx', dnsQuery(1, 'db.test')], ['rx', dnsAnswer(1, 'db.test', [127, 0, 0, 9])]])) m.onRecord(r);
  for (const r of records(b, [['tx', dnsQuery(2, 'gone.test')], ['rx', dnsAnswer(2, 'gone.test', [], 3)]])) m.onRecord(r);
  assert.equal(m.l7!.decoders, 2);
  m.onRecord({ type: 'dns', tgid: PID, startTime: START, tsNs: 1_500_000, cookie: 7n, originalLength: 0, data: dnsPacket(dnsAnswer(1, 'db.test', [127, 0, 0, 9]), [127, 0, 0, 53]) });
  m.onRecord(release(7n));
  assert.equal(m.l7!.decoders, 0);
  assert.deepEqual(events.map((e) => `${e.endpoint.label} ${e.exchange.operation} ${e.exchange.status}`).sort(), ['127.0.0.53:53 A db.test NOERROR', '127.0.0.54:53 A gone.test NXDOMAIN']);
  // a redis connection to the address db.test resolved to: named by the answer, not by the bytes
  const k = key(8n, 6379, { remoteAddr: '127.0.0.9' });
  for (const r of records(k, [['tx', bytes('*1\r\n$4\r\nPING\r\n')], ['rx', bytes('+PONG\r\n')]], 2_000_000)) m.onRecord(r);
  assert.deepEqual([events[2].endpoint.label, events[2].endpoint.nameSource, events[2].exchange.operation], ['db.test:6379', 'dns', 'ping']);
});

test('an accepted connection is named by our port; the Host a client asked for does not name it', () => {
  const { m, events } = model();
  const k = key(9n, 41000);
  const state = (oldState: number, newState: number, tsNs: number): TraceRecord => ({ type: 'sockState', tgid: PID, startTime: START, tsNs, cookie: 9n, family: 2, oldState, newState, error: 0, flags: 0, localAddr: '127.0.0.1', localPort: 8080, remoteAddr: '127.0.0.1', remotePort: 41000 });
  m.onRecord(state(TCP_STATE.LISTEN, TCP_STATE.SYN_RECV, 1));
  m.onRecord(state(TCP_STATE.SYN_RECV, TCP_STATE.ESTABLISHED, 2));
  for (const r of records(k, [['rx', get('/x')], ['tx', ok('y')]])) m.onRecord(r);
  assert.equal(events.length, 1);
  assert.deepEqual([events[0].exchange.role, events[0].endpoint.label, events[0].endpoint.name], ['server', '127.0.0.1 → :8080', undefined]);
});

test('TLS plaintext: decoded on its socket (named by its Host); without a known socket counted, not decoded; junk counted unknown', () => {
  const { m, events } = model();
  const k = key(11n, 443);
  for (const r of records(k, [['tx', get('/secure', 'shop.test')], ['rx', ok('{}')]], 1e6, 'tls')) m.onRecord(r);
  assert.equal(events.length, 1);
  assert.equal(events[0].exchange.tls, true);
  assert.deepEqual([events[0].endpoint.label, events[0].endpoint.nameSource], ['shop.test:443', 'host']);
  const orphan = key(0n, 0);
  for (const r of records(orphan, [['tx', get('/lost')]], 1e6, 'tls')) m.onRecord(r);
  assert.equal(m.l7!.counts.tlsWithoutSocket, 1);
  const junk = key(12n, 9999);
  for (const r of records(junk, [['tx', bytes('\x00\x01binary junk that is no protocol at all\r\n')], ['rx', bytes('\xff\xfe more junk')]])) m.onRecord(r);
  m.l7!.finish(5e6);
  const c = m.l7!.counts;
  assert.equal(c.connections.unknown, 1);
  assert.equal(c.connections.decoded, 1);
  assert.equal(c.tlsRecords, 2);
  assert.ok([...c.reasons.keys()].some((r) => r.startsWith('unknown')), [...c.reasons.keys()].join());
});

// TLS 1.3 records (RFC 8446 4.1.2): the handshake on the socket, as the l7-tls-http2 tests build it
const u24 = (v: number) => [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
const ext = (type: number, data: number[]) => [...u16(type), ...u16(data.length), ...data];
const tlsRecord = (type: number, body: number[]) => [type, 3, 1, ...u16(body.length), ...body];
const handshake = (type: number, body: number[]) => [type, ...u24(body.length), ...body];
function clientHello(sni: string): Uint8Array {
  const name = [...Buffer.from(sni)];
  const exts = [...ext(0, [...u16(name.length + 3), 0, ...u16(name.length), ...name]), ...ext(43, [4, 0x03, 0x04, 0x03, 0x03])];
  const body = [0x03, 0x03, ...new Array(32).fill(7), 32, ...new Array(32).fill(1), ...u16(2), 0x13, 0x01, 1, 0, ...u16(exts.length), ...exts];
  return new Uint8Array(tlsRecord(22, handshake(1, body)));
}
function serverHello(): Uint8Array {
  const exts = ext(43, u16(0x0304));
  const body = [0x03, 0x03, ...new Array(32).fill(9), 0, 0x13, 0x01, 0, ...u16(exts.length), ...exts];
  return new Uint8Array([...tlsRecord(22, handshake(2, body)), ...tlsRecord(23, new Array(300).fill(0xaa))]);
}

test('HTTPS: the handshake on the socket, HTTP in the plaintext; the SNI names the endpoint before any Host', () => {
  const { m, events } = model();
  const k = key(14n, 443, { remoteAddr: '127.0.0.2' });
  const [ch, sh, fin] = records(k, [['tx', clientHello('api.test')], ['rx', serverHello()], ['tx', new Uint8Array([...tlsRecord(20, [1]), ...tlsRecord(23, new Array(53).fill(0xbb))])]]);
  const [req, resp] = records(k, [['tx', get('/v1', 'other.test')], ['rx', ok('{}')]], 1_001_500, 'tls');
  for (const r of [ch, sh, req, fin, resp]) m.onRecord(r);
  m.onRecord(release(14n));
  assert.deepEqual(events.map((e) => `${e.exchange.protocol} ${e.exchange.operation} ${e.exchange.status} tls=${e.exchange.tls}`), ['tls handshake TLS1.3 tls=false', 'http1 GET /v1 200 tls=true']);
  for (const e of events) assert.deepEqual([e.endpoint.label, e.endpoint.name, e.endpoint.nameSource], ['api.test:443', 'api.test', 'sni']);
  const c = m.l7!.counts.connections;
  assert.deepEqual([c.decoded, c.opaque, m.l7!.counts.plaintext], [1, 0, 1], 'the socket is opaque past its handshake, but its plaintext was decoded');
});

test('records whose bytes are missing or cut are counted', () => {
  const { m } = model();
  const k = key(13n, 80);
  const [req, resp] = records(k, [['tx', get('/f')], ['rx', ok('0123456789')]]);
  m.onRecord(req);
  m.onRecord({ ...resp, flags: ['notCopied'], bytes: new Uint8Array(0) });
  m.onRecord({ ...resp, offset: resp.length, length: 5000, bytes: resp.bytes });
  const c = m.l7!.counts;
  assert.deepEqual([c.records, c.missing.notCopied, c.cut], [3, 1, 1]);
});

test('hostName drops the port of a Host header', () => {
  assert.equal(hostName('API.test:8080'), 'api.test');
  assert.equal(hostName('[::1]:80'), '::1');
  assert.equal(hostName('plain'), 'plain');
});
