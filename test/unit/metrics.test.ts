// SPDX-License-Identifier: MIT
// The Prometheus exposition of a source: values equal to the source's, top-N with "other", counters that
// never go down across scrapes, an exposition `promtool check metrics` accepts, and the endpoint itself
// (503 before the trace, one-line error for an address in use).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as net from 'node:net';
import { MetricsExporter } from '../../src/metrics/exporter';
import { serveMetrics } from '../../src/metrics/server';
import type { MetricsSnapshot, MetricsSource, ProcessTotals, RemoteTotals } from '../../src/metrics/source';
import { parseFileCount, parseFileSize, parseListenAddress, fleetOptionProblem } from '../../src/cli/fleet-options';

const t = (txBytes: number, rxBytes: number, txCalls = 1, rxCalls = 1) => ({ txBytes, rxBytes, txCalls, rxCalls });

function snapshot(processes: ProcessTotals[], remotes: RemoteTotals[], extra: Partial<MetricsSnapshot> = {}): MetricsSnapshot {
  const sum = (proto: 'tcp' | 'udp') =>
    processes.reduce((a, p) => t(a.txBytes + p[proto].txBytes, a.rxBytes + p[proto].rxBytes, a.txCalls + p[proto].txCalls, a.rxCalls + p[proto].rxCalls), t(0, 0, 0, 0));
  return {
    totals: { tcp: sum('tcp'), udp: sum('udp') },
    processes,
    remotes,
    connections: { opened: { active: 3, passive: 1 }, ended: [{ role: 'active', outcome: 'refused', count: 1 }, { role: 'active', outcome: 'closed', count: 1 }] },
    retransmits: 2,
    lostRecords: { flowUpdate: 4 },
    records: 99,
    ...extra,
  };
}

/** "name{labels} value" lines as a map. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

const proc = (pid: number, comm: string, tcp: ReturnType<typeof t>, container = ''): ProcessTotals => ({ key: `${pid}#0`, pid, comm, container, tcp, udp: t(0, 0, 0, 0) });
const remote = (addr: string, port: number, v: ReturnType<typeof t>): RemoteTotals => ({ key: `tcp/${addr}/${port}`, proto: 'tcp', remoteAddr: addr, remotePort: port, ...v });

test('the exposition carries the source\'s figures, top N per family and the rest as other', async () => {
  let current = snapshot(
    [proc(10, 'nginx', t(5000, 300, 7, 3), 'web'), proc(11, 'nginx', t(100, 20)), proc(12, 'curl', t(1, 2))],
    [remote('10.0.0.1', 443, t(4000, 200)), remote('10.0.0.2', 80, t(1000, 100)), remote('10.0.0.3', 53, t(101, 22))],
  );
  const source: MetricsSource = { snapshot: () => current };
  const exporter = new MetricsExporter({ top: 2, processMetrics: false });
  exporter.setSource(source, { version: '0.1.0', mode: 'attach', backend: 'tracepoint' });
  let s = samples(await exporter.scrape());
  assert.equal(s.get('proctap_bytes_total{proto="tcp",direction="tx"}'), 5101);
  assert.equal(s.get('proctap_process_bytes_total{pid="10",comm="nginx",container="web",proto="tcp",direction="tx"}'), 5000);
  assert.equal(s.get('proctap_process_calls_total{pid="10",comm="nginx",container="web",proto="tcp",direction="rx"}'), 3);
  assert.equal(s.get('proctap_process_bytes_total{pid="other",comm="other",container="",proto="tcp",direction="tx"}'), 1);
  assert.equal(s.get('proctap_remote_bytes_total{proto="tcp",remote_addr="10.0.0.1",remote_port="443",direction="tx"}'), 4000);
  assert.equal(s.get('proctap_remote_bytes_total{proto="tcp",remote_addr="other",direction="tx"}'), 101);
  assert.equal([...s.keys()].filter((k) => k.startsWith('proctap_remote_bytes_total{') && !k.includes('other')).length, 4, 'two remotes x two directions');
  assert.equal(s.get('proctap_tcp_connections_total{role="active"}'), 3);
  assert.equal(s.get('proctap_tcp_connections_ended_total{role="active",outcome="refused"}'), 1);
  assert.equal(s.get('proctap_tcp_connections_open{role="active"}'), 1);
  assert.equal(s.get('proctap_tcp_retransmits_total'), 2);
  assert.equal(s.get('proctap_lost_records_total{kind="flowUpdate"}'), 4);
  assert.equal(s.get('proctap_info{version="0.1.0",mode="attach",backend="tracepoint"}'), 1);

  // curl becomes the top talker, pid 11 drops out: no counter goes down, the sums stay exact
  const before = s;
  current = snapshot(
    [proc(10, 'nginx', t(6000, 300, 8, 3), 'web'), proc(11, 'nginx', t(100, 20)), proc(12, 'curl', t(9000, 2))],
    [remote('10.0.0.1', 443, t(4000, 200)), remote('10.0.0.2', 80, t(1000, 100)), remote('10.0.0.3', 53, t(10101, 22))],
  );
  s = samples(await exporter.scrape());
  for (const [k, v] of before) if (s.has(k) && !k.startsWith('proctap_tcp_connections_open')) assert.ok(s.get(k)! >= v, `${k} went down`);
  const tx = [...s].filter(([k]) => k.startsWith('proctap_process_bytes_total{') && k.includes('proto="tcp",direction="tx"')).reduce((a, [, v]) => a + v, 0);
  assert.equal(tx, s.get('proctap_bytes_total{proto="tcp",direction="tx"}'));
  assert.equal(tx, 15100);
  assert.equal(s.has('proctap_process_bytes_total{pid="11",comm="nginx",container="",proto="tcp",direction="tx"}'), false);

  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: await exporter.scrape(), encoding: 'utf8' });
  if (promtool.error) {
    // promtool ships with Debian's prometheus (scripts/install-deps.sh); the e2e test runs it too
    assert.fail(`promtool not found: ${promtool.error.message}`);
  }
  assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
});

test('the L7 hook adds request counters and a latency histogram', async () => {
  const exporter = new MetricsExporter({ processMetrics: false });
  exporter.setSource({
    snapshot: () => snapshot([], []),
    l7: () => ({
      requests: [{ protocol: 'http', method: 'GET', status: '200', count: 7 }],
      latency: [{ protocol: 'http', bounds: [0.01, 0.1], counts: [3, 6], count: 7, sum: 0.42 }],
    }),
  });
  const text = await exporter.scrape();
  const s = samples(text);
  assert.equal(s.get('proctap_l7_requests_total{protocol="http",method="GET",status="200"}'), 7);
  assert.equal(s.get('proctap_l7_request_duration_seconds_bucket{protocol="http",le="0.1"}'), 6);
  assert.equal(s.get('proctap_l7_request_duration_seconds_bucket{protocol="http",le="+Inf"}'), 7);
  assert.equal(s.get('proctap_l7_request_duration_seconds_sum{protocol="http"}'), 0.42);
  assert.match(text, /# TYPE proctap_l7_request_duration_seconds histogram/);
  const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(promtool.status, 0, promtool.stdout + promtool.stderr);
});

test('the endpoint: 503 until tracing starts, then the exposition; an address in use is one line', async () => {
  const exporter = new MetricsExporter({ processMetrics: false });
  const server = await serveMetrics({ host: '127.0.0.1', port: 0 }, exporter);
  try {
    const port = Number(new URL(server.url).port);
    assert.equal((await fetch(server.url)).status, 503);
    exporter.setSource({ snapshot: () => snapshot([], []) });
    const res = await fetch(server.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    assert.match(await res.text(), /proctap_bytes_total\{proto="tcp",direction="tx"\} 0/);
    assert.equal((await fetch(server.url.replace('/metrics', '/nope'))).status, 404);
    await assert.rejects(serveMetrics({ host: '127.0.0.1', port }, exporter), /^Error: --metrics: cannot listen on 127\.0\.0\.1:\d+: address in use$/);
  } finally {
    await server.close();
  }
  // closed means closed: the port is free again
  const probe = net.createServer();
  await new Promise<void>((resolve, reject) => probe.once('error', reject).listen(Number(new URL(server.url).port), '127.0.0.1', () => resolve()));
  probe.close();
});

test('--metrics and rotation options: values and contradictions', () => {
  assert.deepEqual(parseListenAddress('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListenAddress('[::1]:9464'), { host: '::1', port: 9464 });
  assert.deepEqual(parseListenAddress('9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListenAddress(':9464'), { host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseListenAddress('0.0.0.0:9100'), { host: '0.0.0.0', port: 9100 });
  for (const bad of ['localhost:9464', '::1:9464', '127.0.0.1:0', '127.0.0.1:70000', 'x', '']) assert.throws(() => parseListenAddress(bad), /not a listen address|not an IP address|port must be/, bad);
  assert.equal(parseFileSize('10'), 10_000_000);
  assert.equal(parseFileSize('512k'), 512 * 1024);
  assert.equal(parseFileSize('2M'), 2 * 1024 * 1024);
  for (const bad of ['0', '-1', '1.5', 'big', '1kb']) assert.throws(() => parseFileSize(bad), /-C takes a file size/, bad);
  assert.throws(() => parseFileCount('0'), /-W must be an integer from 1/);
  assert.equal(fleetOptionProblem({ fileSize: 1 }), '-C needs -o/--pcap FILE');
  assert.equal(fleetOptionProblem({ fileSize: 1, rotateSeconds: 2, pcap: '-' }), '-C, -G: rotating files cannot go to standard output (-o -)');
  assert.equal(fleetOptionProblem({ fileCount: 3, pcap: 'x.pcapng' }), '-W needs -C SIZE or -G SECONDS');
  assert.equal(fleetOptionProblem({ metricsTop: 5 }), '--metrics-top needs --metrics HOST:PORT');
  assert.equal(fleetOptionProblem({ fileSize: 1, fileCount: 3, pcap: 'x.pcapng', metrics: { host: '127.0.0.1', port: 1 }, metricsTop: 5 }), null);
});
