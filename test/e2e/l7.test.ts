// SPDX-License-Identifier: MIT
// `--l7` end to end on real servers from Debian packages, checked against the servers' own counters:
// - nginx under `ab` (keep-alive and not; 200, 404 and 405): per method, path and status, the exchanges
//   proctap decoded equal the access log's lines, and so do their bytes ($request_length is the request
//   as read, $bytes_sent the response as written: the stream bytes of each exchange);
// - redis under `redis-benchmark`: per command, the exchanges equal `INFO commandstats`.
// Each both from the client side (`run`: the benchmark is the traced command) and from the server side
// (`attach` to the server; the benchmark untraced).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { L7RowReport, Report } from '../../src/schema/report';
import { renderReport } from '../../src/render/table';
import { PROCTAP, TEST_BACKEND, lineFrom, proctapRun, tempDir } from './harness';
import { startNginx, startRedis, type Nginx } from './servers';

let dir = '';
before(() => {
  dir = tempDir();
  fs.chmodSync(dir, 0o755);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const LOG_FORMAT = '$pid $request_method $uri $status $request_length $bytes_sent';
/** The POSTs' body. nginx answers a POST to a static file 405 and discards the body unread into
 *  $request_length, which then counts the request line and headers only: the stream carried both. */
const POST_BODY = 100;

interface Tally {
  count: number;
  requestBytes: number;
  responseBytes: number;
}

/** "GET /small.txt 200" → counts and bytes, from the access log (per worker pid when `byPid`). */
function logTally(nginx: Nginx, byPid: boolean): Map<string, Tally> {
  const out = new Map<string, Tally>();
  for (const line of nginx.accessLines()) {
    const [pid, method, uri, status, requestLength, bytesSent] = line.split(' ');
    const key = `${byPid ? `${pid} ` : ''}${method} ${uri} ${status}`;
    const t = out.get(key) ?? { count: 0, requestBytes: 0, responseBytes: 0 };
    t.count++;
    t.requestBytes += Number(requestLength) + (method === 'POST' && status === '405' ? POST_BODY : 0);
    t.responseBytes += Number(bytesSent);
    out.set(key, t);
  }
  return out;
}

/** The same from the report's L7 rows of one role. */
function rowTally(rows: L7RowReport[], role: 'client' | 'server', byPid: boolean): Map<string, Tally> {
  const out = new Map<string, Tally>();
  for (const r of rows.filter((x) => x.protocol === 'http1' && x.role === role)) {
    assert.ok(!r.other, `an (other) row: ${JSON.stringify(r)}`);
    const key = `${byPid ? `${r.pid} ` : ''}${r.method} ${r.path} ${r.status}`;
    const t = out.get(key) ?? { count: 0, requestBytes: 0, responseBytes: 0 };
    t.count += r.count;
    t.requestBytes += r.requestBytes;
    t.responseBytes += r.responseBytes;
    out.set(key, t);
  }
  return out;
}

const sorted = (m: Map<string, Tally>) => [...m].sort(([a], [b]) => a.localeCompare(b));

/** ab runs: keep-alive GETs of a file (200), plain GETs of a missing one (404), POSTs to a file (405). */
function abScript(port: number, post: string): string {
  const url = (p: string) => `http://127.0.0.1:${port}${p}`;
  return [
    `ab -q -k -n 300 -c 4 ${url('/small.txt')}`,
    `ab -q -n 60 -c 2 ${url('/missing')}`,
    `ab -q -k -n 40 -c 2 -p ${post} -T text/plain ${url('/small.txt')}`,
    `ab -q -n 25 ${url('/big.bin')}`,
  ].map((c) => `${c} >/dev/null`).join(' && ');
}

async function withNginx(f: (nginx: Nginx, post: string) => Promise<void>): Promise<void> {
  const nginx = await startNginx(2, LOG_FORMAT);
  try {
    nginx.addFile('small.txt', 1234);
    nginx.addFile('big.bin', 200_000);
    const post = path.join(dir, 'post.txt');
    fs.writeFileSync(post, 'x'.repeat(POST_BODY), { mode: 0o644 });
    await f(nginx, post);
  } finally {
    await nginx.stop();
  }
}

/** Starts `proctap attach --l7 ... PID`, waits until attached; stop() ends it and reads its report. */
async function attachL7(pid: number): Promise<{ stop: () => Promise<Report> }> {
  const json = path.join(dir, `attach-${pid}.json`);
  const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
  const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--l7', '--json', json, String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  await lineFrom(proctap.stderr!, /attached to pid \d+.*\n/, 'proctap to attach');
  return {
    stop: async () => {
      proctap.kill('SIGINT');
      assert.equal(await closed, 0, stderr);
      return JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
    },
  };
}

function checkNotes(report: Report): void {
  const l7 = report.l7!;
  assert.equal(l7.partial, 0, `no partial exchange: ${l7.notes.join('; ')}`);
  assert.equal(l7.connections.unknown + l7.connections.undecodable + l7.connections.evicted, 0, JSON.stringify(l7.connections));
  assert.equal(l7.records.lost, 0);
}

test('run --l7 -- ab against nginx: per method, path and status, exchanges and their bytes equal the access log', async (t) => {
  await withNginx(async (nginx, post) => {
    const events = path.join(dir, 'ab.ndjson');
    const run = await proctapRun(['-q', '--l7', '--events', events, '--', 'sh', '-c', abScript(nginx.port, post)]);
    assert.equal(run.code, 0, run.stderr);
    const report = run.report!;
    const expected = logTally(nginx, false);
    assert.deepEqual(
      [...expected.keys()].map((k) => k.split(' ')[2]).sort(),
      ['200', '200', '404', '405'],
      'the workload made each status',
    );
    assert.deepEqual(sorted(rowTally(report.l7!.rows, 'client', false)), sorted(expected));
    checkNotes(report);
    for (const r of report.l7!.rows) {
      assert.equal(r.endpoint, `127.0.0.1:${nginx.port}`);
      assert.ok(r.latencyFirst && r.latencyLast && r.latencyLast.maxMs >= r.latencyFirst.p50Ms, JSON.stringify(r));
    }
    // one exchange line per decoded exchange
    const lines = fs.readFileSync(events, 'utf8').split('\n').filter((l) => l.includes('"type":"exchange"')).map((l) => JSON.parse(l));
    assert.equal(lines.length, report.l7!.exchanges);
    assert.equal(lines.filter((l) => l.status === '405' && l.operation === 'POST /small.txt').length, expected.get('POST /small.txt 405')!.count);
    const text = renderReport(report, { color: false, width: 120 });
    assert.match(text, /L7 exchanges \(\d+/);
    assert.match(text, /GET \/missing +404/);
    t.diagnostic(`access log: ${JSON.stringify(sorted(expected))}`);
  });
});

test('attach --l7 to nginx: each worker\'s server-side exchanges equal its access log lines', async (t) => {
  await withNginx(async (nginx, post) => {
    const proctap = await attachL7(nginx.pid);
    const ab = spawnSync('sh', ['-c', abScript(nginx.port, post)], { encoding: 'utf8' });
    assert.equal(ab.status, 0, ab.stderr);
    const report = await proctap.stop();
    const expected = logTally(nginx, true);
    const got = rowTally(report.l7!.rows, 'server', true);
    assert.deepEqual(sorted(got), sorted(expected));
    checkNotes(report);
    for (const r of report.l7!.rows) assert.equal(r.endpoint, `127.0.0.1 → :${nginx.port}`);
    t.diagnostic(`per worker: ${JSON.stringify(sorted(expected))}`);
  });
});

/** INFO commandstats as { command: calls }, without the test's own CONFIG RESETSTAT. */
function commandStats(port: number): Record<string, number> {
  const info = spawnSync('redis-cli', ['-p', String(port), 'info', 'commandstats'], { encoding: 'utf8' });
  assert.equal(info.status, 0, info.stderr);
  const out: Record<string, number> = {};
  for (const m of info.stdout.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) if (m[1] !== 'config|resetstat') out[m[1]] = Number(m[2]);
  return out;
}

function resetStats(port: number): void {
  assert.equal(spawnSync('redis-cli', ['-p', String(port), 'config', 'resetstat']).status, 0);
}

function redisCounts(rows: L7RowReport[], role: 'client' | 'server'): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows.filter((x) => x.protocol === 'redis' && x.role === role)) {
    assert.ok(!r.other && r.command, JSON.stringify(r));
    out[r.command!] = (out[r.command!] ?? 0) + r.count;
  }
  return out;
}

const BENCH = ['-q', '-n', '3000', '-c', '6', '-t', 'set,get,incr,lpush,rpush,lpop,sadd,hset,lrange_100,mset'];

test('run --l7 -- redis-benchmark: per command, exchanges equal INFO commandstats (pipelined too)', async (t) => {
  const redis = await startRedis();
  try {
    resetStats(redis.port);
    const run = await proctapRun(['-q', '--l7', '--', 'sh', '-c', `redis-benchmark -p ${redis.port} ${BENCH.join(' ')} >/dev/null && redis-benchmark -p ${redis.port} -q -n 2000 -P 16 -t get,set >/dev/null`]);
    assert.equal(run.code, 0, run.stderr);
    const expected = commandStats(redis.port);
    assert.ok((expected.lrange ?? 0) > 0 && (expected.mset ?? 0) > 0, JSON.stringify(expected));
    assert.deepEqual(redisCounts(run.report!.l7!.rows, 'client'), expected);
    checkNotes(run.report!);
    t.diagnostic(`commandstats: ${JSON.stringify(expected)}`);
  } finally {
    await redis.stop();
  }
});

test('attach --l7 to redis-server: its server-side exchanges per command equal INFO commandstats', async (t) => {
  const redis = await startRedis();
  try {
    resetStats(redis.port);
    const proctap = await attachL7(redis.pid);
    const bench = spawnSync('redis-benchmark', ['-p', String(redis.port), ...BENCH], { encoding: 'utf8' });
    assert.equal(bench.status, 0, bench.stderr);
    const report = await proctap.stop();
    const expected = commandStats(redis.port);
    assert.deepEqual(redisCounts(report.l7!.rows, 'server'), expected);
    checkNotes(report);
    t.diagnostic(`commandstats: ${JSON.stringify(expected)}`);
  } finally {
    await redis.stop();
  }
});

test('attach --l7 to redis-server with a client connected before the attach: its commands decoded from mid-stream', async (t) => {
  const redis = await startRedis();
  const socket = net.connect(redis.port, '127.0.0.1');
  try {
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    let received = '';
    socket.on('data', (d) => (received += d.toString('latin1')));
    /** Sends one command and waits for its reply (`n` replies received so far in all). */
    const call = async (text: string, n: number) => {
      socket.write(text);
      const deadline = Date.now() + 5000;
      while ((received.match(/\r\n/g) ?? []).length < n) {
        if (Date.now() > deadline) throw new Error(`no reply to ${JSON.stringify(text)}: ${JSON.stringify(received)}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    await call('*1\r\n$4\r\nPING\r\n', 1);
    const proctap = await attachL7(redis.pid);
    const N = 50;
    for (let i = 0; i < N; i++) await call(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${String(i).length}\r\n${i}\r\n`, 2 + i);
    await call('*2\r\n$3\r\nGET\r\n$1\r\nk\r\n', 2 + N + 1); // "$2\r\n49\r\n": two lines
    const report = await proctap.stop();
    const counts = redisCounts(report.l7!.rows, 'server');
    assert.deepEqual(counts, { set: N, get: 1 }, JSON.stringify(report.l7!.notes));
    assert.equal(report.l7!.partial, 0);
    t.diagnostic(`mid-stream connection: ${JSON.stringify(counts)}; connections ${JSON.stringify(report.l7!.connections)}`);
  } finally {
    socket.destroy();
    await redis.stop();
  }
});
