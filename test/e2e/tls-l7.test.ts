// SPDX-License-Identifier: MIT
// HTTPS decoded like HTTP (issue 16), beside l7-tls.test.ts (curl under run): Python's ssl module as the
// traced client under `run --l7`, and `attach --l7` on nginx itself serving TLS to untraced curls. In both
// the exchanges come from the TLS plaintext (libssl uprobes: Python's _ssl module, nginx's libssl) and
// equal nginx's access log per method, path and status, each marked tls; nginx's HTTP/1 $request_length
// and $bytes_sent equal the decoded request and response bytes on the server side.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { proctapRun } from './harness';
import { attachL7, bump, l7Of, machineState, startTlsNginx } from './l7-servers';

const NAME = 'py.test';

const logTally = (log: Array<{ method: string; uri: string; status: number }>) => {
  const m = new Map<string, number>();
  for (const l of log) bump(m, `${l.method} ${l.uri} ${l.status}`);
  return Object.fromEntries([...m].sort());
};

test('run --l7 -- python3 (ssl, keep-alive http.client): the HTTPS requests equal nginx\'s access log, marked tls', async () => {
  const before = machineState();
  const nginx = await startTlsNginx(NAME);
  try {
    nginx.addFile('a.txt', 300);
    nginx.addFile('c.txt', 2500);
    const client = `
import http.client, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection('127.0.0.1', ${nginx.port}, context=ctx)
for p in ['/a.txt'] * 12 + ['/missing'] * 5 + ['/c.txt'] * 4:
    c.request('GET', p, headers={'Host': '${NAME}'}); c.getresponse().read()
c.request('DELETE', '/a.txt', headers={'Host': '${NAME}'}); c.getresponse().read()
c.close()
`;
    const run = await proctapRun(['-q', '--l7', '--', 'python3', '-c', client]);
    assert.equal(run.code, 0, run.stderr);
    const l7 = l7Of(run.report!);
    const log = nginx.accessLog();
    assert.equal(log.length, 22);
    const rows = l7.rows.filter((r) => r.protocol === 'http1');
    const decoded = new Map<string, number>();
    for (const r of rows) bump(decoded, `${r.method} ${r.path} ${r.status}`, r.count);
    assert.deepEqual(Object.fromEntries([...decoded].sort()), logTally(log), JSON.stringify(l7.notes));
    for (const r of rows) {
      assert.equal(r.tls, r.count, `every exchange of ${r.operation} from the TLS plaintext`);
      assert.equal(r.role, 'client');
      assert.equal(r.partial, 0);
    }
    assert.equal(l7.connections.tlsPlaintext, 1, 'the one connection\'s plaintext decoded');
  } finally {
    await nginx.stop();
  }
  assert.deepEqual(machineState(), before);
});

test('attach --l7 on nginx serving TLS: the server side\'s exchanges equal its access log, bytes equal $request_length/$bytes_sent', async () => {
  const before = machineState();
  const nginx = await startTlsNginx(NAME);
  try {
    nginx.addFile('a.txt', 700);
    const proctap = await attachL7(nginx.pid);
    const url = (p: string) => `https://${NAME}:${nginx.port}${p}`;
    const curl = (args: string[]) => spawnSync('curl', ['-sk', '--http1.1', '--resolve', `${NAME}:${nginx.port}:127.0.0.1`, ...args], { encoding: 'utf8' });
    for (let i = 0; i < 3; i++) assert.equal(curl(['-o', '/dev/null', url('/a.txt'), '-o', '/dev/null', url('/a.txt'), '-o', '/dev/null', url('/missing')]).status, 0);
    assert.equal(curl(['-o', '/dev/null', '-X', 'PUT', url('/a.txt')]).status, 0);
    await new Promise((r) => setTimeout(r, 500)); // the last records reach the ring buffer
    const report = await proctap.stop();
    const l7 = l7Of(report);
    const log = nginx.accessLog();
    assert.equal(log.length, 10);
    const rows = l7.rows.filter((r) => r.protocol === 'http1');
    const decoded = new Map<string, number>();
    for (const r of rows) bump(decoded, `${r.method} ${r.path} ${r.status}`, r.count);
    assert.deepEqual(Object.fromEntries([...decoded].sort()), logTally(log), JSON.stringify(l7.notes));
    for (const r of rows) {
      assert.equal(r.role, 'server');
      assert.equal(r.tls, r.count);
    }
    const sum = (f: (l: (typeof log)[number]) => number) => log.reduce((a, l) => a + f(l), 0);
    assert.equal(rows.reduce((a, r) => a + r.requestBytes, 0), sum((l) => l.requestLength));
    assert.equal(rows.reduce((a, r) => a + r.responseBytes, 0), sum((l) => l.bytesSent));
    const handshakes = l7.rows.filter((r) => r.protocol === 'tls').reduce((a, r) => a + r.count, 0);
    assert.equal(handshakes, new Set(log.map((l) => l.connection)).size, 'one handshake per connection nginx served');
  } finally {
    await nginx.stop();
  }
  assert.deepEqual(machineState(), before);
});
