// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionDecoder } from '../../src/l7/connection';
import { normalizePath } from '../../src/l7/http1';
import { briefs, bytes, conversation, everySplit, merged, pieces, run, type Call } from './l7wire';

const get = (path: string, host = 'api.test', extra = '') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: t\r\n${extra}\r\n`;
const ok = (body: string, status = '200 OK', extra = '') => `HTTP/1.1 ${status}\r\nContent-Length: ${body.length}\r\n${extra}\r\n${body}`;

/** A keep-alive client: GET with Content-Length body, POST with a body, a chunked answer, HEAD, 204, 304. */
function keepAlive(): { calls: Call[]; sizes: Array<[number, number]> } {
  const post = 'POST /items?id=7&x=1 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 11\r\n\r\nhello world';
  const chunked = 'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n';
  const head = 'HEAD /big HTTP/1.1\r\nHost: api.test\r\n\r\n';
  const headAnswer = 'HTTP/1.1 200 OK\r\nContent-Length: 123456\r\n\r\n';
  const parts: Array<[('tx' | 'rx'), string]> = [
    ['tx', get('/a')], ['rx', ok('hello')],
    ['tx', post], ['rx', chunked],
    ['tx', head], ['rx', headAnswer],
    ['tx', get('/none')], ['rx', 'HTTP/1.1 204 No Content\r\n\r\n'],
    ['tx', get('/cached', 'api.test', 'If-None-Match: "x"\r\n')], ['rx', 'HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n'],
  ];
  const sizes: Array<[number, number]> = [];
  for (let i = 0; i < parts.length; i += 2) sizes.push([parts[i][1].length, parts[i + 1][1].length]);
  return { calls: conversation(parts), sizes };
}

test('HTTP/1.1 keep-alive: method, path without query values, Host, status and exact sizes for each framing', () => {
  const { calls, sizes } = keepAlive();
  const { exchanges, decoder } = run(calls);
  assert.equal(decoder.status.protocol, 'http1');
  assert.equal(decoder.status.role, 'client');
  assert.deepEqual(exchanges.map((x) => [x.operation, x.status, x.host]), [
    ['GET /a', '200', 'api.test'],
    ['POST /items?id=?&x=?', '201', 'api.test'],
    ['HEAD /big', '200', 'api.test'],
    ['GET /none', '204', 'api.test'],
    ['GET /cached', '304', 'api.test'],
  ]);
  assert.deepEqual(exchanges.map((x) => [x.requestBytes, x.responseBytes]), sizes);
  assert.ok(exchanges.every((x) => !x.partial && x.notes.length === 0), JSON.stringify(exchanges.map((x) => x.notes)));
});

test('HTTP/1.1 timing: latency to the first and the last byte of the response', () => {
  const calls: Call[] = [
    { dir: 'tx', bytes: bytes(get('/t')), tsNs: 1000 },
    { dir: 'rx', bytes: bytes('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234'), tsNs: 5000 },
    { dir: 'rx', bytes: bytes('56789'), tsNs: 9000 },
  ];
  const [x] = run(calls).exchanges;
  assert.equal(x.requestStartNs, 1000);
  assert.equal(x.responseStartNs, 5000);
  assert.equal(x.responseEndNs, 9000);
  assert.equal(x.latencyFirstNs, 4000);
  assert.equal(x.latencyLastNs, 8000);
});

test('HTTP/1.1: split at every byte boundary, in 1-byte pieces, and merged per direction, the exchanges are the same', () => {
  const { calls } = keepAlive();
  const want = briefs(run(calls).exchanges);
  assert.equal(want.length, 5);
  const r = everySplit(calls);
  assert.equal(r.mismatch, null);
  assert.ok(r.checked > 400);
  assert.deepEqual(briefs(run(pieces(calls, 1)).exchanges), want);
  assert.deepEqual(briefs(run(pieces(calls, 7)).exchanges), want);
});

test('HTTP/1.1 pipelining: requests in one call, responses in one call, answered in order', () => {
  const reqs = [get('/1'), get('/2'), get('/3')];
  const ress = [ok('a'), ok('bb', '404 Not Found'), ok('ccc', '503 Service Unavailable')];
  const calls = merged(conversation([['tx', reqs[0]], ['tx', reqs[1]], ['tx', reqs[2]], ['rx', ress[0]], ['rx', ress[1]], ['rx', ress[2]]]));
  assert.equal(calls.length, 2);
  const xs = run(calls).exchanges;
  assert.deepEqual(xs.map((x) => `${x.operation} ${x.status} ${x.error}`), ['GET /1 200 false', 'GET /2 404 false', 'GET /3 503 true']);
  assert.deepEqual(xs.map((x) => x.responseBytes), ress.map((r) => r.length));
});

test('HTTP/1.1 server side: requests received, responses sent; 100-continue interim answer', () => {
  const put = 'PUT /up HTTP/1.1\r\nHost: s.test\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n';
  const calls = conversation([
    ['rx', put], ['tx', 'HTTP/1.1 100 Continue\r\n\r\n'], ['rx', 'data'], ['tx', ok('done')],
  ]);
  const { exchanges, decoder } = run(calls);
  assert.equal(decoder.status.role, 'server');
  assert.equal(exchanges.length, 1);
  const [x] = exchanges;
  assert.equal(x.role, 'server');
  assert.equal(x.operation, 'PUT /up');
  assert.equal(x.status, '200');
  assert.equal(x.requestBytes, put.length + 4);
  assert.equal(x.responseBytes, 'HTTP/1.1 100 Continue\r\n\r\n'.length + ok('done').length);
});

test('HTTP/1.1 sendfile body (bytes not copied) and a body past the copy limit count exactly by length', () => {
  const headers = 'HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n';
  const calls: Call[] = [
    { dir: 'rx', bytes: bytes(get('/file')), tsNs: 1 },
    { dir: 'tx', bytes: bytes(headers), tsNs: 2 },
    { dir: 'tx', bytes: new Uint8Array(0), length: 600000, tsNs: 3 }, // sendfile: nothing copied
    { dir: 'tx', bytes: new Uint8Array(4096).fill(65), length: 400000, tsNs: 4 }, // copy limit
    { dir: 'rx', bytes: bytes(get('/next')), tsNs: 5 },
    { dir: 'tx', bytes: bytes(ok('x')), tsNs: 6 },
  ];
  const xs = run(calls).exchanges;
  assert.equal(xs.length, 2);
  assert.equal(xs[0].responseBytes, headers.length + 1_000_000);
  assert.equal(xs[0].responseEndNs, 4);
  assert.equal(xs[0].partial, false);
  assert.equal(xs[1].operation, 'GET /next');
  assert.equal(xs[1].partial, false);
});

test('HTTP/1.1 headers cut by the copy limit: marked partial, the next response found again', () => {
  const big = `HTTP/1.1 200 OK\r\nX-Big: ${'y'.repeat(5000)}\r\nContent-Length: 3\r\n\r\nabc`;
  const calls: Call[] = [
    { dir: 'tx', bytes: bytes(get('/1') + get('/2')), tsNs: 1 },
    { dir: 'rx', bytes: bytes(big).subarray(0, 4096), length: big.length, tsNs: 2 },
    { dir: 'rx', bytes: bytes(ok('zz')), tsNs: 3 },
  ];
  const xs = run(calls).exchanges;
  assert.deepEqual(xs.map((x) => `${x.operation} ${x.status}`), ['GET /1 200', 'GET /2 200']);
  assert.equal(xs[0].partial, true);
  assert.ok(xs[0].notes.includes('headers-cut'));
  assert.equal(xs[0].responseBytes, big.length, 'the cut response still counts every byte up to the next status line');
  assert.equal(xs[1].partial, false);
  assert.equal(xs[1].responseBytes, ok('zz').length);
});

test('HTTP/1.1 gap (a lost record) in the requests: decoding picks up at the next request line', () => {
  const calls = conversation([['tx', get('/1')], ['rx', ok('1')], ['tx', get('/lost')], ['rx', ok('2')], ['tx', get('/3')], ['rx', ok('3')]]);
  assert.equal(run(calls).exchanges.length, 3);
  const out = run(calls, { transport: 'tcp' }, {}, new Set([2])).exchanges;
  assert.deepEqual(out.map((x) => `${x.operation} ${x.status}`), ['GET /1 200', '? 200', 'GET /3 200']);
  assert.ok(out[1].notes.includes('no-request'));
  assert.equal(out[2].partial, true, 'the request after the gap is marked');
});

test('HTTP/1.1 seen mid-stream: the first call is inside a body; the next request starts decoding', () => {
  const calls = conversation([['rx', 'the tail of some earlier body'], ['tx', 'more body'], ['tx', get('/x')], ['rx', ok('y')]]);
  const { exchanges, decoder } = run(calls, { transport: 'tcp', fromStart: false });
  assert.equal(decoder.status.protocol, 'http1');
  assert.deepEqual(exchanges.map((x) => `${x.operation} ${x.status}`), ['GET /x 200']);
  assert.ok(exchanges[0].notes.includes('mid-stream'));
});

test('HTTP/1.1 read-until-close body, and a request left without response at close', () => {
  const calls = conversation([['tx', 'GET /old HTTP/1.0\r\n\r\n'], ['rx', 'HTTP/1.0 200 OK\r\n\r\nuntil'], ['rx', ' close']]);
  const [x] = run(calls).exchanges;
  assert.equal(x.responseBytes, 'HTTP/1.0 200 OK\r\n\r\nuntil close'.length);
  assert.equal(x.partial, false);
  const [y] = run(conversation([['tx', get('/hang')]])).exchanges;
  assert.equal(y.operation, 'GET /hang');
  assert.equal(y.status, '');
  assert.ok(y.notes.includes('no-response'));
});

test('HTTP/1.1 upgrade (101) ends decoding as opaque; query values kept on request', () => {
  const calls = conversation([['tx', get('/ws', 'a', 'Upgrade: websocket\r\nConnection: Upgrade\r\n')], ['rx', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n'], ['rx', '\x81\x05hello']]);
  const { exchanges, decoder } = run(calls);
  assert.deepEqual(exchanges.map((x) => x.status), ['101']);
  assert.equal(decoder.status.state, 'opaque');
  assert.match(decoder.status.reason!, /websocket/);
  assert.equal(normalizePath('/s?q=a%20b&page=2#frag', false), '/s?q=?&page=?');
  assert.equal(normalizePath('/s?q=a&flag', true), '/s?q=a&flag');
  const kept = run(conversation([['tx', get('/s?q=1')], ['rx', ok('')]]), { transport: 'tcp', keepQueryValues: true }).exchanges;
  assert.equal(kept[0].operation, 'GET /s?q=1');
});

test('HTTP/1.1 memory cap: a header that never ends stops decoding, the bytes held stay bounded', () => {
  const d = new ConnectionDecoder({ transport: 'tcp', bufferCap: 8192 });
  const first = bytes('GET / HTTP/1.1\r\nX: ');
  d.push({ direction: 'tx', tsNs: 1, offset: 0, length: first.length, bytes: first });
  let off = first.length;
  for (let i = 0; i < 100; i++) {
    const b = bytes('a'.repeat(1000));
    d.push({ direction: 'tx', tsNs: 2 + i, offset: off, length: b.length, bytes: b });
    off += b.length;
  }
  assert.equal(d.status.state, 'undecodable');
  assert.match(d.status.reason!, /buffer cap/);
});

test('HTTP/1.1 absolute-form target (proxy) names the host; non-HTTP first bytes are unknown, not guessed', () => {
  const [x] = run(conversation([['tx', 'GET http://Example.TEST:8080/p?a=1 HTTP/1.1\r\n\r\n'], ['rx', ok('')]])).exchanges;
  assert.equal(x.host, 'example.test:8080');
  assert.equal(x.operation, 'GET /p?a=?');
  const { exchanges, decoder } = run(conversation([['tx', 'HELO mail.test\r\n'], ['rx', '250 ok\r\n']]));
  assert.equal(exchanges.length, 0);
  assert.equal(decoder.status.state, 'unknown');
});

test('HTTP/1.1 header fields: names in any case, spaces around names and values, LF-only lines, repeated and listed Content-Length', () => {
  const parts: Array<['tx' | 'rx', string]> = [
    // the field names the decoder reads, each in another case and spacing; others (CONTENT-MD5, X-Host) are not theirs
    ['tx', 'PUT /up HTTP/1.1\r\nX-Host: wrong.test\r\nhOsT:   Api.Test  \r\nCONTENT-MD5: x\r\ncontent-length : 3\r\n\r\nabc'],
    ['rx', 'HTTP/1.1 200 OK\nContent-Type:text/plain\nContent-Length: 2\nContent-Length: 2\n\nok'],
    ['tx', get('/list')],
    ['rx', 'HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\nfour'],
    ['tx', get('/conflict')],
    // lengths that disagree: the framing is unknown, the next response is found again
    ['rx', 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nfour'],
    ['tx', get('/after')],
    ['rx', 'HTTP/1.1 404 Not Found\r\nTransfer-Encoding: gzip, CHUNKED\r\n\r\n0\r\n\r\n'],
  ];
  const { exchanges } = run(conversation(parts));
  assert.deepEqual(exchanges.map((x) => [x.operation, x.status, x.host, x.detail.kind === 'http' ? x.detail.contentType : null]), [
    ['PUT /up', '200', 'api.test', 'text/plain'],
    ['GET /list', '200', 'api.test', null],
    ['GET /conflict', '200', 'api.test', null],
    ['GET /after', '404', 'api.test', null],
  ]);
  assert.deepEqual(exchanges.map((x) => [x.requestBytes, x.responseBytes, x.partial]), [
    [parts[0][1].length, parts[1][1].length, false],
    [parts[2][1].length, parts[3][1].length, false],
    [parts[4][1].length, parts[5][1].length, true],
    [parts[6][1].length, parts[7][1].length, false],
  ]);
});
