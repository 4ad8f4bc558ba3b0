// SPDX-License-Identifier: MIT
// --metrics with --l7: `proctap attach --l7 --metrics` on a real nginx; an untraced client makes keep-alive
// GETs answered 200 and 404; the exposition's proctap_l7_requests_total per method and status and the
// latency histogram's count equal nginx's access log, while proctap runs and again in the JSON report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { PROCTAP, TEST_BACKEND, lineFrom, tempDir } from './harness';
import { freePort, keepAliveClient, startNginx } from './servers';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Samples of one metric from the exposition: labels as a record, value as a number. */
function samples(exposition: string, name: string): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ labels, value: Number(m[3]) });
  }
  return out;
}

test('attach --l7 --metrics on nginx: L7 requests per method and status, and the latency count, equal the access log', async (t) => {
  const nginx = await startNginx(1, '$request_method $status');
  t.after(() => nginx.stop());
  nginx.addFile('ok.txt', 1000);
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'report.json');
  const metricsPort = await freePort();
  const args = ['attach', '--l7', '--metrics', `127.0.0.1:${metricsPort}`, '--json', json, '-q', ...(TEST_BACKEND ? ['--backend', TEST_BACKEND] : []), String(nginx.pid)];
  const proctap = spawn(PROCTAP, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  t.after(() => proctap.kill('SIGKILL'));
  await lineFrom(proctap.stderr!, /attached to pid \d+.*\n/, 'proctap to attach');

  const paths = [...Array.from({ length: 30 }, () => '/ok.txt'), ...Array.from({ length: 9 }, () => '/missing')];
  for (let i = paths.length - 1; i > 0; i--) [paths[i], paths[(i * 7) % (i + 1)]] = [paths[(i * 7) % (i + 1)], paths[i]];
  const client = await keepAliveClient(nginx.port, paths);
  assert.equal(client.exchanges.length, 39);
  const log = new Map<string, number>();
  for (const line of nginx.accessLines()) log.set(line, (log.get(line) ?? 0) + 1);
  assert.deepEqual(Object.fromEntries(log), { 'GET 200': 30, 'GET 404': 9 });

  /* scrape until the exchanges are in (records reach proctap within a flow interval) */
  const scrape = async () => (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const requestCounts = (text: string) => {
    const m = new Map<string, number>();
    for (const s of samples(text, 'proctap_l7_requests_total')) if (s.labels.protocol === 'http1') m.set(`${s.labels.method} ${s.labels.status}`, s.value);
    return Object.fromEntries(m);
  };
  let text = '';
  for (let i = 0; i < 50; i++) {
    text = await scrape();
    const c = requestCounts(text);
    if ((c['GET 200'] ?? 0) + (c['GET 404'] ?? 0) >= 39) break;
    await sleep(200);
  }
  assert.deepEqual(requestCounts(text), Object.fromEntries(log), stderr);
  const count = samples(text, 'proctap_l7_request_duration_seconds_count').find((s) => s.labels.protocol === 'http1');
  assert.equal(count?.value, 39);
  const inf = samples(text, 'proctap_l7_request_duration_seconds_bucket').find((s) => s.labels.protocol === 'http1' && s.labels.le === '+Inf');
  assert.equal(inf?.value, 39);
  const sum = samples(text, 'proctap_l7_request_duration_seconds_sum').find((s) => s.labels.protocol === 'http1');
  assert.ok(sum && sum.value > 0 && sum.value < 39, `latency sum ${sum?.value} s`);

  /* the report, once stopped, says the same */
  proctap.kill('SIGINT');
  assert.equal(await exited, 0, stderr);
  const report = JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
  const rows = new Map<string, number>();
  for (const r of report.l7?.rows ?? []) if (r.protocol === 'http1') rows.set(`${r.method} ${r.status}`, (rows.get(`${r.method} ${r.status}`) ?? 0) + r.count);
  assert.deepEqual(Object.fromEntries(rows), Object.fromEntries(log));
});
