// SPDX-License-Identifier: MIT
// --metrics end to end: Debian's Prometheus (its own config and data dir, 1 s scrapes, loopback only)
// scrapes `proctap attach --comm NAME --metrics` started the way systemd starts deploy/proctap.service;
// a workload counts its own bytes; Prometheus's HTTP API returns the same figures, and so does the JSON
// report written when proctap is stopped; `promtool check metrics` accepts the exposition.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Report, Traffic } from '../../src/schema/report';
import { PROCTAP, ROOT, TEST_BACKEND, lineFrom, loadedProgramNames, loopbackFixture, tempDir, type WorkloadCounts } from './harness';

const env = loopbackFixture();
const TARGET = path.join(ROOT, 'test/workloads/attach_target.py');
const UNIT = path.join(ROOT, 'deploy/proctap.service');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The unit's Environment= and ExecStart= (one level of systemd's quoting is all the unit uses). */
function readUnit(file: string): { environment: Record<string, string>; execStart: string } {
  const environment: Record<string, string> = {};
  let execStart = '';
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (line.startsWith('Environment=')) {
      for (const m of line.slice('Environment='.length).matchAll(/"([^"]*)"|(\S+)/g)) {
        const assignment = m[1] ?? m[2];
        const eq = assignment.indexOf('=');
        environment[assignment.slice(0, eq)] = assignment.slice(eq + 1);
      }
    }
    if (line.startsWith('ExecStart=')) execStart = line.slice('ExecStart='.length);
  }
  return { environment, execStart };
}

/** ExecStart= as systemd expands it: ${VAR} stays one word, a word that is $VAR splits into words. */
function expandExecStart(execStart: string, vars: Record<string, string>): string[] {
  return execStart.split(/\s+/).filter(Boolean).flatMap((word) => {
    const whole = /^\$([A-Za-z_][A-Za-z0-9_]*)$/.exec(word);
    if (whole) return (vars[whole[1]] ?? '').split(/\s+/).filter(Boolean);
    return [word.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => vars[name] ?? '')];
  });
}

interface Prometheus {
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  stop(): Promise<void>;
}

async function startPrometheus(dir: string, target: string): Promise<Prometheus> {
  const port = await freePort();
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, `global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: proctap\n    static_configs:\n      - targets: ['${target}']\n`);
  const child = spawn('prometheus', [`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const ready = await fetch(`${base}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (i > 150 || child.exitCode !== null) throw new Error(`prometheus did not start: ${stderr}`);
    await sleep(100);
  }
  return {
    async query(expr) {
      const r = (await (await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { status: string; data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
      assert.equal(r.status, 'success', expr);
      return r.data.result;
    },
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const sumTraffic = (list: Traffic[]): Traffic => list.reduce((a, t) => ({ txBytes: a.txBytes + t.txBytes, rxBytes: a.rxBytes + t.rxBytes, txCalls: a.txCalls + t.txCalls, rxCalls: a.rxCalls + t.rxCalls }), { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 });

test('Prometheus scrapes proctap attach --comm --metrics (started as the systemd unit starts it): its counters equal the workload\'s and the report\'s', async (t) => {
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const metricsPort = await freePort();
  const comm = `ptm${process.pid % 100000}`;
  const json = path.join(dir, 'report.json');

  /* proctap, from the unit's own ExecStart line and a drop-in's environment (no --duration, no -q) */
  const unit = readUnit(UNIT);
  const vars = { ...unit.environment, PROCTAP_TARGET: `--comm ${comm}`, PROCTAP_METRICS: `127.0.0.1:${metricsPort}`, PROCTAP_OPTIONS: `--json ${json} --no-color${TEST_BACKEND ? ` --backend ${TEST_BACKEND}` : ''}` };
  const argv = expandExecStart(unit.execStart, vars);
  assert.equal(argv[0], '/opt/proctap/bin/proctap');
  assert.deepEqual(argv.slice(1, 6), ['attach', '--comm', comm, '--metrics', `127.0.0.1:${metricsPort}`]);
  const proctap = spawn(PROCTAP, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proctap.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => proctap.on('close', resolve));
  t.after(() => proctap.kill('SIGKILL'));
  await lineFrom(proctap.stderr!, /waiting for/, 'proctap to wait for its comm');
  const prometheus = await startPrometheus(dir, `127.0.0.1:${metricsPort}`);
  t.after(() => prometheus.stop());

  /* the workload: a process named `comm` (a symlink to python3) and the child it forks */
  const link = path.join(dir, comm);
  fs.symlinkSync(spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim(), link);
  const out = path.join(dir, 'counts.jsonl');
  const target: ChildProcess = spawn(link, [TARGET, '--port', String(env.servers.port), '--before', '0', '--bytes', '123456', '--datagrams', '9', '--out', out], { stdio: ['pipe', 'pipe', 'inherit'] });
  await lineFrom(target.stdout!, /ready/, 'the workload');
  target.stdin!.write('go\n');
  assert.equal(await new Promise((resolve) => target.on('close', resolve)), 0);
  const doneAt = Date.now() / 1000;
  const counts = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WorkloadCounts);
  assert.equal(counts.length, 2);

  /* wait for two scrapes taken after the workload ended */
  let bytes: Awaited<ReturnType<Prometheus['query']>> = [];
  for (let i = 0; i < 100; i++) {
    bytes = await prometheus.query('proctap_bytes_total');
    if (bytes.length === 4 && bytes.every((s) => s.value[0] >= doneAt + 2)) break;
    await sleep(200);
  }
  assert.equal(bytes.length, 4, 'tcp and udp, tx and rx');
  const scraped = (proto: string, direction: string, list = bytes) => Number(list.find((s) => s.metric.proto === proto && s.metric.direction === direction)?.value[1]);
  const expected = { tcp: sumTraffic(counts.map((c) => c.tcp)), udp: sumTraffic(counts.map((c) => c.udp)) };
  const calls = await prometheus.query('proctap_calls_total');
  for (const proto of ['tcp', 'udp'] as const) {
    assert.equal(scraped(proto, 'tx'), expected[proto].txBytes, `${proto} tx bytes in Prometheus`);
    assert.equal(scraped(proto, 'rx'), expected[proto].rxBytes, `${proto} rx bytes in Prometheus`);
    assert.equal(scraped(proto, 'tx', calls), expected[proto].txCalls, `${proto} tx calls in Prometheus`);
    assert.equal(scraped(proto, 'rx', calls), expected[proto].rxCalls, `${proto} rx calls in Prometheus`);
  }
  const perProcess = await prometheus.query(`proctap_process_bytes_total{comm="${comm}"}`);
  for (const c of counts) {
    for (const proto of ['tcp', 'udp'] as const) {
      const of = (direction: string) => Number(perProcess.find((s) => s.metric.pid === String(c.pid) && s.metric.proto === proto && s.metric.direction === direction)?.value[1]);
      assert.deepEqual([of('tx'), of('rx')], [c[proto].txBytes, c[proto].rxBytes], `pid ${c.pid} ${proto}`);
    }
  }
  const up = await prometheus.query('up{job="proctap"}');
  assert.equal(up[0]?.value[1], '1');
  process.stderr.write(`# Prometheus: tcp ${expected.tcp.txBytes}/${expected.tcp.rxBytes} B, udp ${expected.udp.txBytes}/${expected.udp.rxBytes} B tx/rx, as the workload counted\n`);

  /* the exposition itself passes promtool; no terminal report before proctap is stopped */
  const exposition = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: exposition, encoding: 'utf8' });
  assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
  assert.deepEqual(stderr.trim().split('\n').map((l) => l.replace(/\d+/g, 'N')), ['proctap: Prometheus metrics on http://N.N.N.N:N/metrics', 'proctap: attached to nothing yet; waiting for ptmN (Ctrl-C to stop)']);

  /* systemd stops it with SIGTERM: the report equals what Prometheus holds */
  proctap.kill('SIGTERM');
  assert.equal(await exited, 0, stderr);
  const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
  for (const proto of ['tcp', 'udp'] as const) {
    assert.equal(report.totals[proto].txBytes, scraped(proto, 'tx'), `report ${proto} tx = Prometheus`);
    assert.equal(report.totals[proto].rxBytes, scraped(proto, 'rx'), `report ${proto} rx = Prometheus`);
  }
  const remote = await prometheus.query(`sum by (proto, direction) (proctap_remote_bytes_total)`);
  for (const proto of ['tcp', 'udp'] as const) assert.equal(scraped(proto, 'tx', remote), report.totals[proto].txBytes, `remote series + other = total (${proto})`);
  assert.match(stderr, /detaching/);
  assert.ok(stderr.split('\n').length > 5, 'the terminal report comes once stopped');
  // the endpoint went with it
  await assert.rejects(fetch(`http://127.0.0.1:${metricsPort}/metrics`));
});

test('the systemd unit passes systemd-analyze verify (with ExecStart pointing at this checkout)', (t) => {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const copy = path.join(dir, 'proctap.service');
  fs.writeFileSync(copy, fs.readFileSync(UNIT, 'utf8').replace('/opt/proctap/bin/proctap', PROCTAP));
  const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
  assert.equal(r.error, undefined, `systemd-analyze: ${r.error?.message}`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), '', 'no warning either');
});

test('--metrics on an address in use: one line, exit 2, before anything is loaded or created', async (t) => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', () => resolve()));
  t.after(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const json = path.join(dir, 'r.json');
  const before = loadedProgramNames().length;
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(PROCTAP, ['attach', '--comm', 'nginx', '--metrics', `127.0.0.1:${port}`, '--json', json], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.stderr, `proctap: --metrics: cannot listen on 127.0.0.1:${port}: address in use\n`);
  assert.equal(fs.existsSync(json), false, 'no output created');
  assert.ok(loadedProgramNames().length <= before, 'no BPF program left loaded');
  for (const [args, pattern] of [
    [['attach', '--comm', 'x', '--metrics', 'localhost:9464'], /not an IP address: 'localhost'/],
    [['attach', '--comm', 'x', '--metrics-top', '5'], /--metrics-top needs --metrics/],
  ] as Array<[string[], RegExp]>) {
    const bad = spawnSync(PROCTAP, args, { encoding: 'utf8' });
    assert.equal(bad.status, 2, bad.stderr);
    assert.match(bad.stderr, pattern);
  }
});
