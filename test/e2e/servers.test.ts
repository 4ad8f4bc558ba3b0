// SPDX-License-Identifier: MIT
// `proctap attach` on real servers from Debian packages (issue 13): nginx attached through its master
// only (the workers that already run are traced, each worker's bytes equal what its access log says),
// an accepted keep-alive connection is passive and lasts what it lasted for its client, titles read as
// ps reads them; redis-server seen from the server's side.
//
// What nginx counts, and why the workload makes it equal the socket payload: $bytes_sent is every byte
// nginx wrote to the client socket for a request (status line, headers, body), and $request_length the
// bytes it read for it (request line, headers, body). The client sends GETs without a body, one at a time
// on keep-alive connections, reads each response whole before the next, and closes cleanly: no byte read
// belongs to no logged request, none written is cut short; the EOF read is no byte (not a call).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { renderReport } from '../../src/render/table';
import { PROCTAP, TEST_BACKEND, lineFrom, tempDir } from './harness';
import { keepAliveClient, redisPings, startNginx, startRedis, type Nginx } from './servers';

let dir = '';
before(() => {
  dir = tempDir();
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Starts `proctap attach ... PID` and waits until it is attached; resolves its report when it ends. */
async function attach(pid: number, extra: string[] = []): Promise<{ stop: () => Promise<Report>; stderr: () => string }> {
  const json = path.join(dir, `attach-${pid}-${Date.now()}.json`);
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--json', json, ...extra, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  await lineFrom(proctap.stderr!, /attached to pid \d+.*\n/, 'proctap to attach');
  return {
    stderr: () => stderr,
    stop: async () => {
      proctap.kill('SIGINT');
      assert.equal(await closed, 0, stderr);
      return JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
    },
  };
}

/** Per worker: the sums of its access-log lines. */
function logSums(nginx: Nginx): Map<number, { tx: number; rx: number; requests: number }> {
  const sums = new Map<number, { tx: number; rx: number; requests: number }>();
  for (const l of nginx.accessLog()) {
    const s = sums.get(l.pid) ?? { tx: 0, rx: 0, requests: 0 };
    s.tx += l.bytesSent;
    s.rx += l.requestLength;
    s.requests++;
    sums.set(l.pid, s);
  }
  return sums;
}

test('nginx, attached through its master: every worker\'s bytes equal its access log; titles as ps shows them', async (t) => {
  const nginx = await startNginx(2);
  try {
    nginx.addFile('big.bin', 1_000_000);
    nginx.addFile('small.txt', 1234);
    const proctap = await attach(nginx.pid);
    assert.match(proctap.stderr(), new RegExp(`attached to pid ${nginx.pid} and 2 descendants`));
    // 8 keep-alive connections at once (spread over the workers), 5 requests each, one of them a 404
    const clients = await Promise.all(Array.from({ length: 8 }, () => keepAliveClient(nginx.port, ['/big.bin', '/small.txt', '/missing', '/small.txt', '/big.bin'])));
    const report = await proctap.stop();
    const sums = logSums(nginx);
    const requests = [...sums.values()].reduce((a, s) => a + s.requests, 0);
    assert.equal(requests, 40, 'every request logged');
    assert.deepEqual(clients.flatMap((c) => c.exchanges.map((e) => e.status)).filter((s) => s === 404).length, 8);
    for (const worker of nginx.workers) {
      const p = report.processes.find((x) => x.pid === worker);
      assert.ok(p, `worker ${worker} missing: ${JSON.stringify(report.processes.map((x) => x.pid))}`);
      const log = sums.get(worker) ?? { tx: 0, rx: 0, requests: 0 };
      assert.deepEqual([p.tcp.txBytes, p.tcp.rxBytes], [log.tx, log.rx], `worker ${worker}: tx/rx = its access log (${log.requests} requests)`);
      t.diagnostic(`worker ${worker}: report tx ${p.tcp.txBytes} rx ${p.tcp.rxBytes}; access log ($bytes_sent, $request_length) ${log.tx} ${log.rx} over ${log.requests} requests`);
      assert.deepEqual(p.argv, ['nginx: worker process']);
      assert.equal(p.ppid, nginx.pid);
    }
    // what the clients read and wrote, all together, is the same again
    assert.equal(report.totals.tcp.txBytes, clients.reduce((a, c) => a + c.exchanges.reduce((b, e) => b + e.bytes, 0), 0));
    assert.equal(report.totals.tcp.rxBytes, clients.reduce((a, c) => a + c.sent, 0));
    const master = report.processes.find((x) => x.pid === nginx.pid)!;
    assert.equal(master.argv.length, 1);
    assert.match(master.argv[0], /^nginx: master process nginx -p \S+ -c \S+nginx\.conf/);
    assert.deepEqual(report.attached?.map((a) => [a.pid, a.via]).sort(), [[nginx.pid, 'pid'], ...nginx.workers.map((w) => [w, 'descendant'])].sort());
    // every accepted connection is passive, from its client's port to nginx's
    const rows = report.connections.filter((c) => c.localPort === nginx.port);
    assert.deepEqual(rows.map((c) => c.role).sort(), new Array(8).fill('passive'));
    assert.deepEqual(rows.map((c) => c.remotePort).sort(), clients.map((c) => c.localPort).sort());
    // seen from nginx's side: it answers requests and sends to its clients; it connects to nobody
    assert.ok(report.patterns!.every((p) => !/sends \d+ requests|connects to|downloads|uploads/.test(p.summary)), JSON.stringify(report.patterns));
    const rr = report.patterns!.find((p) => p.kind === 'request-response')!;
    assert.deepEqual([rr.evidence.side, rr.evidence.requests, rr.evidence.connections], ['server', 40, 8]);
    // the terminal table (wide enough for the titles): titles whole, no quotes
    const text = renderReport(report, { color: false, width: 200 });
    assert.match(text, /─\d+ +nginx: worker process +before/);
    assert.match(text, new RegExp(`^${nginx.pid} +nginx: master process nginx -p `, 'm'));
    assert.doesNotMatch(text, /'nginx/);
    assert.match(text, new RegExp(`^attached  ${nginx.pid} nginx \\+ 2 descendants: `, 'm'));
  } finally {
    await nginx.stop();
  }
});

test('nginx: an accepted keep-alive connection that lasted 1.5 s for its client is passive and lasts 1.5 s', async (t) => {
  const nginx = await startNginx(1);
  try {
    nginx.addFile('page.html', 5000);
    const proctap = await attach(nginx.pid);
    const client = await keepAliveClient(nginx.port, ['/page.html', '/page.html', '/page.html'], 750);
    const report = await proctap.stop();
    assert.ok(client.atLeastMs >= 1500 && client.lastedMs < 1700, `the client's connection lasted ${client.atLeastMs}..${client.lastedMs} ms`);
    const row = report.connections.find((c) => c.remotePort === client.localPort);
    assert.ok(row, JSON.stringify(report.connections));
    assert.equal(row.role, 'passive');
    assert.equal(row.outcome, 'closed');
    assert.equal(row.pid, nginx.workers[0]);
    // from SYN_RECV (before the client's connect() returned) to CLOSE (after its close())
    t.diagnostic(`keep-alive connection: client ${client.atLeastMs.toFixed(3)}..${client.lastedMs.toFixed(3)} ms, report ${row.durationMs} ms, role ${row.role}`);
    // its CLOSE comes with the client's last ACK, a hair before the client's close event
    assert.ok(row.durationMs !== null && row.durationMs >= client.atLeastMs && row.durationMs <= client.lastedMs + 5, `report ${row.durationMs} ms, client ${client.atLeastMs}..${client.lastedMs} ms`);
    assert.deepEqual([row.txBytes, row.rxBytes], [client.exchanges.reduce((a, e) => a + e.bytes, 0), client.sent]);
  } finally {
    await nginx.stop();
  }
});

test('nginx --no-children: only the master is traced, and the report says which children were left out', async () => {
  const nginx = await startNginx(2);
  try {
    nginx.addFile('small.txt', 100);
    const proctap = await attach(nginx.pid, ['--no-children']);
    await keepAliveClient(nginx.port, ['/small.txt']);
    const report = await proctap.stop();
    assert.deepEqual(report.processes.map((p) => p.pid), [nginx.pid]);
    assert.deepEqual(report.totals.tcp, { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });
    const note = report.notes.find((n) => n.startsWith(`pid ${nginx.pid} had 2 child processes at the attach`));
    assert.ok(note, JSON.stringify(report.notes));
    for (const w of nginx.workers) assert.ok(note.includes(String(w)), note);
  } finally {
    await nginx.stop();
  }
});

test('redis-server: 2000 commands on one connection are answered requests; periodic clients are accepts', async (t) => {
  const redis = await startRedis();
  try {
    const proctap = await attach(redis.pid);
    for (let i = 0; i < 5; i++) {
      await redisPings(redis.port, 1);
      await new Promise((r) => setTimeout(r, 300));
    }
    const client = await redisPings(redis.port, 2000);
    const report = await proctap.stop();
    const p = report.processes.find((x) => x.pid === redis.pid)!;
    assert.match(p.argv.join(' '), new RegExp(`^redis-server 127\\.0\\.0\\.1:${redis.port}$`));
    assert.deepEqual(p.argv.length, 1, 'no padding');
    const row = report.connections.find((c) => c.remotePort === client.localPort)!;
    assert.deepEqual([row.role, row.rxBytes, row.txBytes, row.rxCalls], ['passive', client.sent, client.received, 2000]);
    assert.ok(row.durationMs !== null && row.durationMs >= client.atLeastMs && row.durationMs <= client.lastedMs + 5, `report ${row.durationMs} ms, client ${client.atLeastMs}..${client.lastedMs} ms`);
    t.diagnostic(`redis connection: client ${client.atLeastMs.toFixed(3)}..${client.lastedMs.toFixed(3)} ms, report ${row.durationMs} ms; ${report.patterns!.map((x) => x.summary).join(' | ')}`);
    const rr = report.patterns!.find((x) => x.kind === 'request-response');
    assert.ok(rr, JSON.stringify(report.patterns));
    assert.deepEqual([rr.evidence.side, rr.evidence.requests, rr.local?.localPort], ['server', 2005, redis.port]);
    assert.match(rr.summary, new RegExp(`^pid ${redis.pid} answers 2,005 requests on 127\\.0\\.0\\.1:${redis.port} \\(6 connections from 1 client\\)`));
    const periodic = report.patterns!.find((x) => x.kind === 'periodic');
    assert.ok(periodic, JSON.stringify(report.patterns));
    assert.equal(periodic.evidence.source, 'accepts');
    assert.ok(report.patterns!.every((x) => !/ (sends \d|connects to)/.test(x.summary)), JSON.stringify(report.patterns));
  } finally {
    await redis.stop();
  }
});

test('Python setproctitle: a title set after exec, and a child\'s set after its fork, are the argv reported', async () => {
  // the system interpreter: python3-setproctitle is a Debian package (scripts/install-deps.sh)
  const script = [
    'import os, socket, time, setproctitle',
    'setproctitle.setproctitle("svc: main")',
    'pid = os.fork()',
    'if pid == 0:',
    '    setproctitle.setproctitle("svc: worker 1")',
    '    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 9))',
    '    time.sleep(0.5)',
    '    os._exit(0)',
    'os.waitpid(pid, 0)',
  ].join('\n');
  const json = path.join(dir, 'setproctitle.json');
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const r = spawnSync(PROCTAP, ['run', ...backend, '-q', '--json', json, '--', '/usr/bin/python3', '-c', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
  assert.deepEqual(report.processes.map((p) => p.argv), [['svc: main'], ['svc: worker 1']]);
  assert.deepEqual(report.processes[1].udp.txBytes, 1);
});
