// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as hpack from 'hpack.js';
import { PREFACE } from '../../src/l7/http2';
import { briefs, bytes, concat, everySplit, pieces, run, type Call } from './l7wire';

// ------------------------------------------------------------------ TLS (RFC 8446 4.1.2, 4.1.3)

const u16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];
const u24 = (v: number) => [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
const ext = (type: number, data: number[]) => [...u16(type), ...u16(data.length), ...data];
const record = (type: number, body: number[]) => [type, 3, 1, ...u16(body.length), ...body];
const handshake = (type: number, body: number[]) => [type, ...u24(body.length), ...body];

function clientHello(sni: string, alpn: string[]): number[] {
  const name = [...Buffer.from(sni)];
  const sniExt = ext(0, [...u16(name.length + 3), 0, ...u16(name.length), ...name]);
  const protos = alpn.flatMap((p) => [p.length, ...Buffer.from(p)]);
  const alpnExt = ext(16, [...u16(protos.length), ...protos]);
  const versions = ext(43, [6, 0x3a, 0x3a, 0x03, 0x04, 0x03, 0x03]); // GREASE, 1.3, 1.2
  const exts = [...ext(0x0a0a, []), ...sniExt, ...alpnExt, ...versions];
  const body = [0x03, 0x03, ...new Array(32).fill(7), 32, ...new Array(32).fill(1), ...u16(4), 0x13, 0x01, 0x13, 0x02, 1, 0, ...u16(exts.length), ...exts];
  return record(22, handshake(1, body));
}
function serverHello(version: number, alpn: string | null): number[] {
  const exts = [...ext(43, u16(version)), ...(alpn ? ext(16, [...u16(alpn.length + 1), alpn.length, ...Buffer.from(alpn)]) : [])];
  const body = [0x03, 0x03, ...new Array(32).fill(9), 0, 0x13, 0x01, 0, ...u16(exts.length), ...exts];
  return record(22, handshake(2, body));
}

function tls13(): Call[] {
  return [
    { dir: 'tx', bytes: new Uint8Array(clientHello('api.test', ['h2', 'http/1.1'])), tsNs: 1_000 },
    { dir: 'rx', bytes: new Uint8Array([...serverHello(0x0304, 'h2'), ...record(20, [1]), ...record(23, new Array(300).fill(0xaa))]), tsNs: 3_000 },
    { dir: 'tx', bytes: new Uint8Array([...record(20, [1]), ...record(23, new Array(53).fill(0xbb))]), tsNs: 7_000 },
    { dir: 'tx', bytes: new Uint8Array(record(23, new Array(100).fill(0xcc))), tsNs: 8_000 },
  ];
}

test('TLS: SNI, ALPN and versions from the ClientHello, the ServerHello\'s choice, the handshake time', () => {
  const { exchanges, decoder } = run(tls13());
  assert.equal(exchanges.length, 1);
  const [x] = exchanges;
  assert.equal(x.protocol, 'tls');
  assert.equal(x.role, 'client');
  assert.equal(x.host, 'api.test');
  assert.equal(x.status, 'TLS1.3');
  const d = x.detail;
  assert.ok(d.kind === 'tls');
  assert.deepEqual(d.alpnOffered, ['h2', 'http/1.1']);
  assert.equal(d.alpn, 'h2');
  assert.deepEqual(d.supportedVersions, ['TLS1.3', 'TLS1.2']);
  assert.equal(d.clientVersion, 'TLS1.2');
  assert.equal(d.handshakeNs, 6_000, 'ClientHello at 1 µs, the client\'s first application_data record at 7 µs');
  assert.equal(x.latencyFirstNs, 2_000);
  assert.equal(x.requestBytes, clientHello('api.test', ['h2', 'http/1.1']).length + 6, 'ClientHello + the client\'s ChangeCipherSpec');
  assert.equal(decoder.status.state, 'opaque');
  assert.equal(everySplit(tls13().slice(0, 3)).mismatch, null);
  assert.deepEqual(briefs(run(pieces(tls13(), 1)).exchanges), briefs(exchanges));
});

test('TLS 1.2 without supported_versions, a fatal alert, and a ClientHello cut by the copy limit', () => {
  const v12 = run([
    { dir: 'tx', bytes: new Uint8Array(clientHello('old.test', [])), tsNs: 1 },
    { dir: 'rx', bytes: new Uint8Array([...record(22, handshake(2, [0x03, 0x03, ...new Array(32).fill(1), 0, 0xc0, 0x2f, 0]))]), tsNs: 2 },
    { dir: 'rx', bytes: new Uint8Array(record(21, [2, 40])), tsNs: 3 },
  ]);
  assert.equal(v12.exchanges[0].status, 'alert');
  assert.equal(v12.exchanges[0].error, true);
  const d = v12.exchanges[0].detail;
  assert.ok(d.kind === 'tls' && d.version === 'TLS1.2' && d.alert === 'fatal/40');
  const hello = new Uint8Array(clientHello('cut.test', ['h2']));
  const cut = run([{ dir: 'tx', bytes: hello.subarray(0, 60), length: hello.length, tsNs: 1 }]);
  assert.equal(cut.exchanges.length, 1);
  assert.ok(cut.exchanges[0].partial && cut.exchanges[0].notes.includes('hello-cut'));
  assert.equal(cut.exchanges[0].requestBytes, hello.length);
});

test('TLS plaintext (tls chunks) is a layer of its own: HTTP inside is decoded and marked tls', () => {
  const calls: Call[] = [
    ...tls13(),
    { dir: 'tx', bytes: bytes('GET /secret HTTP/1.1\r\nHost: api.test\r\n\r\n'), tsNs: 7_500, tls: true },
    { dir: 'rx', bytes: bytes('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), tsNs: 9_000, tls: true },
  ];
  const { exchanges, decoder } = run(calls);
  assert.deepEqual(exchanges.map((x) => `${x.protocol} ${x.operation} ${x.status} tls=${x.tls}`), ['tls handshake TLS1.3 tls=false', 'http1 GET /secret 200 tls=true']);
  assert.equal(decoder.plaintextStatus?.protocol, 'http1');
});

// ------------------------------------------------------------------ HTTP/2 (RFC 9113) and gRPC

const frame = (type: number, flags: number, stream: number, payload: Uint8Array | number[]) =>
  new Uint8Array([...u24(payload.length), type, flags, (stream >>> 24) & 0x7f, (stream >> 16) & 0xff, (stream >> 8) & 0xff, stream & 0xff, ...payload]);
const SETTINGS = frame(4, 0, 0, [0, 3, 0, 0, 0, 100]);
const SETTINGS_ACK = frame(4, 1, 0, []);

function encoder(): (fields: Array<[string, string]>) => Uint8Array {
  const c = hpack.compressor.create({ table: { maxSize: 4096 } });
  return (fields) => {
    c.write(fields.map(([name, value]) => ({ name, value })));
    const out: Buffer[] = [];
    for (let b = c.read(); b !== null; b = c.read()) out.push(b);
    return new Uint8Array(Buffer.concat(out));
  };
}

/** A gRPC client: two unary calls on streams 1 and 3, interleaved; answers with trailers. */
function grpcSession(): { calls: Call[]; sizes: Array<[number, number]> } {
  const req = encoder();
  const res = encoder();
  const h1 = frame(1, 0x4, 1, req([[':method', 'POST'], [':scheme', 'http'], [':path', '/helloworld.Greeter/SayHello'], [':authority', 'grpc.test:50051'], ['content-type', 'application/grpc'], ['te', 'trailers']]));
  const d1 = frame(0, 0x1, 1, [0, 0, 0, 0, 3, 10, 1, 65]);
  const h3 = frame(1, 0x4 | 0x1, 3, req([[':method', 'GET'], [':scheme', 'http'], [':path', '/health?full=1'], [':authority', 'grpc.test:50051']]));
  const r3 = frame(1, 0x4, 3, res([[':status', '503'], ['content-type', 'text/plain']]));
  const r3d = frame(0, 0x1, 3, [...Buffer.from('down')]);
  const r1 = frame(1, 0x4, 1, res([[':status', '200'], ['content-type', 'application/grpc']]));
  const r1d = frame(0, 0, 1, [0, 0, 0, 0, 2, 10, 0]);
  const r1t = frame(1, 0x4 | 0x1, 1, res([['grpc-status', '5'], ['grpc-message', 'not%20found']]));
  const calls: Call[] = [
    { dir: 'tx', bytes: concat(PREFACE, SETTINGS), tsNs: 1 },
    { dir: 'rx', bytes: concat(SETTINGS, SETTINGS_ACK), tsNs: 2 },
    { dir: 'tx', bytes: concat(SETTINGS_ACK, h1, h3), tsNs: 3 },
    { dir: 'tx', bytes: d1, tsNs: 4 },
    { dir: 'rx', bytes: concat(r3, r3d), tsNs: 5 },
    { dir: 'rx', bytes: concat(r1, r1d, r1t), tsNs: 6 },
  ];
  return { calls, sizes: [[h3.length, r3.length + r3d.length], [h1.length + d1.length, r1.length + r1d.length + r1t.length]] };
}

test('HTTP/2 + gRPC: preface, streams interleaved, :method/:path/:status per stream, grpc-status from trailers', () => {
  const { calls, sizes } = grpcSession();
  const { exchanges, decoder } = run(calls);
  assert.equal(decoder.status.protocol, 'http2');
  assert.deepEqual(exchanges.map((x) => `${x.protocol} ${x.operation} ${x.status} ${x.error}`), [
    'http2 GET /health?full=? 503 true',
    'grpc POST /helloworld.Greeter/SayHello NOT_FOUND true',
  ]);
  assert.deepEqual(exchanges.map((x) => [x.requestBytes, x.responseBytes]), sizes);
  assert.equal(exchanges[1].host, 'grpc.test:50051');
  const d = exchanges[1].detail;
  assert.ok(d.kind === 'http' && d.grpcStatus === 5 && d.grpcMessage === 'not found' && d.streamId === 1);
  assert.equal(exchanges[1].latencyLastNs, 6 - 3);
});

test('HTTP/2: split at every byte boundary and in 1-byte pieces, the streams are the same', () => {
  const { calls } = grpcSession();
  const want = briefs(run(calls).exchanges);
  assert.equal(everySplit(calls).mismatch, null);
  assert.deepEqual(briefs(run(pieces(calls, 1)).exchanges), want);
});

test('HTTP/2 seen mid-stream: static-table headers decode, a dynamic entry from before the trace stops HPACK (marked, never wrong)', () => {
  const req = encoder();
  const res = encoder();
  // Before the trace: one request that filled both dynamic tables.
  req([[':method', 'GET'], [':path', '/warm'], ['x-app', 'one']]);
  res([[':status', '200'], ['x-served-by', 'node-1']]);
  const seen: Call[] = [
    { dir: 'tx', bytes: frame(1, 0x5, 5, req([[':method', 'GET'], [':path', '/cold'], ['x-app', 'one']])), tsNs: 10 }, // x-app: dynamic index
    { dir: 'rx', bytes: concat(frame(1, 0x4, 5, res([[':status', '200']])), frame(0, 1, 5, [1, 2, 3])), tsNs: 20 },
  ];
  const { exchanges, decoder } = run(seen, { transport: 'tcp', fromStart: false }, { tx: 5000, rx: 9000 });
  assert.equal(decoder.status.protocol, 'http2');
  assert.equal(exchanges.length, 1);
  const [x] = exchanges;
  assert.equal(x.status, '200', 'the answer used the static table only');
  assert.equal(x.operation, '?', 'the request referred to a dynamic entry: not guessed');
  assert.ok(x.notes.some((n) => n.startsWith('hpack-unavailable')), x.notes.join());
  assert.ok(x.notes.includes('mid-stream'));
});

test('HTTP/2: a header block past the copy limit stops HPACK for that direction; DATA past it is skipped by length', () => {
  const req = encoder();
  const res = encoder();
  const bigHeaders = frame(1, 0x5, 1, req([[':method', 'GET'], [':path', '/a'], ['cookie', 'x'.repeat(6000)]]));
  const calls: Call[] = [
    { dir: 'tx', bytes: concat(PREFACE, SETTINGS, bigHeaders).subarray(0, 4096), length: PREFACE.length + SETTINGS.length + bigHeaders.length, tsNs: 1 },
    { dir: 'rx', bytes: concat(SETTINGS, frame(1, 0x4, 1, res([[':status', '200']])), frame(0, 0, 1, new Uint8Array(20000))).subarray(0, 4096), length: SETTINGS.length + 9 + 1 + 9 + 20000, tsNs: 2 },
    { dir: 'rx', bytes: frame(0, 1, 1, [9]), tsNs: 3 },
    { dir: 'tx', bytes: frame(1, 0x5, 3, req([[':method', 'GET'], [':path', '/b']])), tsNs: 4 },
    { dir: 'rx', bytes: concat(frame(1, 0x5, 3, res([[':status', '404']]))), tsNs: 5 },
  ];
  const xs = run(calls).exchanges;
  assert.deepEqual(xs.map((x) => `${x.operation} ${x.status}`), ['? 200', '? 404']);
  assert.equal(xs[0].responseBytes, 9 + 1 + 9 + 20000 + 10);
  assert.ok(xs[1].notes.some((n) => n.startsWith('hpack-unavailable')));
});
