// SPDX-License-Identifier: MIT
// The L7 view of TLS against a real server (issue 15): nginx on loopback with a certificate for api.test
// made here, one port speaking HTTP/1.1 and one HTTP/2 too; curl traced with `--l7`, told the address
// with --resolve (no DNS: the name can only come from the ClientHello). The report names the endpoint
// api.test from the SNI; one handshake row per connection nginx served, with its version, SNI and ALPN
// as nginx's own $ssl_protocol, $ssl_server_name and $ssl_alpn_protocol say; and the HTTP exchanges
// inside (TLS plaintext from libssl's uprobes) are the requests of nginx's access log, method, path and
// status, marked tls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { proctapRun, tempDir } from './harness';
import { alive, bump, l7Of, machineState, ndjson, startTlsNginx } from './l7-servers';

const NAME = 'api.test';
const POST_BODY = 'x=1';
/** nginx's $ssl_protocol as the decoder spells versions. */
const VERSION: Record<string, string> = { 'TLSv1.2': 'TLS1.2', 'TLSv1.3': 'TLS1.3' };

test('curl --resolve to nginx over TLS: endpoint named by SNI, handshakes and the HTTP inside equal nginx\'s access log', async (t) => {
  const before = machineState();
  const nginx = await startTlsNginx(NAME);
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  try {
    nginx.addFile('a.txt', 100);
    nginx.addFile('b.txt', 20_000); // longer than the bytes copied per call: skipped by its length
    const url = (port: number, p: string) => `https://${NAME}:${port}${p}`;
    const curl = (port: number, opts: string, paths: string[]) =>
      `curl -sk --resolve ${NAME}:${port}:127.0.0.1 ${opts} ${paths.map((p) => `-o /dev/null ${url(port, p)}`).join(' ')}`;
    const script = [
      curl(nginx.port, '--http1.1', ['/a.txt', '/missing', '/b.txt', '/a.txt']), // one keep-alive connection
      curl(nginx.port, '--http1.1 --tlsv1.2 --tls-max 1.2', ['/b.txt']),
      curl(nginx.port, `--http1.1 -X POST -d ${POST_BODY}`, ['/a.txt']), // 405: a static file takes no POST
      curl(nginx.h2Port, '--http2', ['/a.txt', '/missing', '/b.txt']),
    ].join(' && ');
    const events = path.join(dir, 'events.ndjson');
    const run = await proctapRun(['-q', '--l7', '--events', events, '--', 'sh', '-c', script]);
    assert.equal(run.code, 0, `proctap run failed: ${run.stderr}`);
    assert.ok(run.report, 'no JSON report');
    const { records, notes } = l7Of(run.report);
    t.diagnostic(`l7 records ${JSON.stringify(records)}; notes: ${notes.join(' | ')}`);
    assert.equal(records.lost, 0, 'no data record lost in the kernel');
    const log = nginx.accessLog();
    assert.equal(log.length, 9, `nginx logged every request: ${JSON.stringify(log)}`);
    const rows = l7Of(run.report).rows;
    const c = l7Of(run.report).connections;
    t.diagnostic(`l7 connections ${JSON.stringify(c)}`);
    assert.deepEqual([c.total, c.tlsPlaintext, c.unknown, c.undecodable], [4, 4, 0, 0], 'four TLS connections, the plaintext of each decoded');
    const endpoints = new Set([`${NAME}:${nginx.port}`, `${NAME}:${nginx.h2Port}`]);

    // handshakes: one per connection nginx logged, with its port and version
    const connections = new Map<number, (typeof log)[number]>();
    for (const l of log) connections.set(l.connection, l);
    assert.equal(connections.size, 4, 'four connections (curl reuses one for its URLs)');
    const serverHandshakes = new Map<string, number>();
    for (const c of connections.values()) bump(serverHandshakes, `${NAME}:${c.serverPort} ${VERSION[c.protocol] ?? c.protocol}`);
    const tlsRows = rows.filter((r) => r.protocol === 'tls');
    const decodedHandshakes = new Map<string, number>();
    for (const r of tlsRows) {
      assert.equal(r.operation, 'handshake');
      assert.equal(r.role, 'client');
      assert.equal(r.errors, 0, `TLS errors: ${JSON.stringify(r)}`);
      assert.equal(r.latencyFirst?.count, r.count, 'handshake times');
      assert.equal(r.remoteName, NAME, `the name of ${r.endpoint}`);
      assert.equal(r.nameSource, 'sni', `the name of ${r.endpoint} comes from the SNI`);
      bump(decodedHandshakes, `${r.endpoint} ${r.status}`, r.count);
    }
    t.diagnostic(`nginx connections: ${JSON.stringify([...serverHandshakes].sort())}; report: ${JSON.stringify([...decodedHandshakes].sort())}`);
    assert.deepEqual([...decodedHandshakes].sort(), [...serverHandshakes].sort(), 'handshakes per endpoint and version == connections nginx served');

    // SNI, version and ALPN of each handshake (the exchange events carry the detail): as nginx saw them.
    // The ALPN the server chose is in the clear in a TLS 1.2 ServerHello only (TLS 1.3 sends it in the
    // encrypted EncryptedExtensions): there the offer is what can be checked.
    const hello = ndjson(events).filter((e) => e.type === 'exchange' && e.protocol === 'tls');
    const seen = hello.map((e) => {
      const d = e.detail as { sni: string; alpn: string | null; alpnOffered: string[]; version: string };
      return `${e.remotePort as number} ${d.sni} ${d.version} chose ${d.alpn} offered ${d.alpnOffered.join(',')}`;
    });
    const offered = (port: number) => (port === nginx.h2Port ? 'h2,http/1.1' : 'http/1.1'); // curl --http2, --http1.1
    const logged = [...connections.values()].map((c) => {
      const version = VERSION[c.protocol] ?? c.protocol;
      return `${c.serverPort} ${c.sni} ${version} chose ${version === 'TLS1.3' ? null : c.alpn} offered ${offered(c.serverPort)}`;
    });
    t.diagnostic(`handshakes decoded: ${JSON.stringify(seen.sort())}`);
    assert.deepEqual(seen.sort(), logged.sort(), 'SNI, version and ALPN of each handshake == nginx\'s $ssl_server_name, $ssl_protocol, $ssl_alpn_protocol');
    for (const c of connections.values()) assert.ok(offered(c.serverPort).split(',').includes(c.alpn), `nginx chose ${c.alpn} from the offer`);

    // the HTTP inside, from the TLS plaintext
    const serverRequests = new Map<string, number>();
    for (const l of log) bump(serverRequests, `${l.httpVersion === 'HTTP/2.0' ? 'http2' : 'http1'} ${NAME}:${l.serverPort} ${l.method} ${l.uri} ${l.status}`);
    const decodedRequests = new Map<string, number>();
    for (const r of rows.filter((x) => x.protocol === 'http1' || x.protocol === 'http2')) {
      assert.equal(r.tls, r.count, `${r.operation}: decoded from TLS plaintext`);
      // An HTTP/2 body longer than the bytes copied per read hides the next frame headers: counted and
      // timed, marked partial (docs/l7.md, Limits). Everything else is whole.
      const long = r.protocol === 'http2' && r.operation === 'GET /b.txt';
      if (long) assert.ok(r.partial <= r.count, `${r.protocol} ${r.operation}: partial exchanges`);
      else assert.equal(r.partial, 0, `${r.protocol} ${r.operation}: partial exchanges`);
      assert.ok(endpoints.has(r.endpoint), `endpoint ${r.endpoint}`);
      assert.equal(r.nameSource, 'sni', `the name of ${r.endpoint} comes from the SNI (before the Host header)`);
      assert.equal(r.latencyLast?.count, r.count, `latencies of ${r.operation}`);
      bump(decodedRequests, `${r.protocol} ${r.endpoint} ${r.operation} ${r.status}`, r.count);
    }
    t.diagnostic(`nginx access log: ${JSON.stringify([...serverRequests].sort())}`);
    t.diagnostic(`report.l7: ${JSON.stringify([...decodedRequests].sort())}`);
    assert.deepEqual([...decodedRequests].sort(), [...serverRequests].sort(), 'per protocol, endpoint, method, path and status: L7 rows == nginx\'s access log');

    // HTTP/1 bytes: request and response as nginx read and wrote them ($request_length, $bytes_sent);
    // nginx leaves out of $request_length the body it discards when it answers 405 to the POST
    const serverBytes = new Map<string, number>();
    for (const l of log.filter((x) => x.httpVersion === 'HTTP/1.1')) {
      const discarded = l.method === 'POST' && l.status === 405 ? POST_BODY.length : 0;
      bump(serverBytes, `${l.method} ${l.uri} ${l.status} request`, l.requestLength + discarded);
      bump(serverBytes, `${l.method} ${l.uri} ${l.status} response`, l.bytesSent);
    }
    const decodedBytes = new Map<string, number>();
    for (const r of rows.filter((x) => x.protocol === 'http1')) {
      bump(decodedBytes, `${r.operation} ${r.status} request`, r.requestBytes);
      bump(decodedBytes, `${r.operation} ${r.status} response`, r.responseBytes);
    }
    t.diagnostic(`HTTP/1 bytes, nginx: ${JSON.stringify([...serverBytes].sort())}; report: ${JSON.stringify([...decodedBytes].sort())}`);
    assert.deepEqual([...decodedBytes].sort(), [...serverBytes].sort(), 'HTTP/1 request and response bytes == $request_length and $bytes_sent');
  } finally {
    await nginx.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(alive(nginx.pid), false, 'nginx stopped');
  assert.deepEqual(machineState(), before, 'links, namespaces, nft, cgroups and BPF programs as before');
});
