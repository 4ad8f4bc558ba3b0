// SPDX-License-Identifier: MIT
// `proctap attach` on a pre-forking server whose listener existed before the attach (issue 13), with
// nothing but python3, so the kernel matrix runs it on every backend (scripts/kernels: kprobe, fentry):
// the workers that already ran are traced (the subtree at the attach), so is one forked later; every
// byte each worker counted is in the report; every connection accepted after the attach is passive, from
// its SYN_RECV to its close, whoever accepted it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { PROCTAP, ROOT, TEST_BACKEND, lineFrom, tempDir, type WorkloadCounts } from './harness';

const SERVER = path.join(ROOT, 'test/workloads/prefork_server.py');

const now = () => Number(process.hrtime.bigint()) / 1e6;

/**
 * One connection: `sizes` requested one after the other, `pauseMs` between; what it moved, and how long
 * it lasted for the client, as bounds of what the server saw: at most from before connect() to the close
 * event (`lastedMs`), at least from the connect event (the server had its SYN) to end() (before its FIN).
 */
async function client(port: number, sizes: number[], pauseMs = 0): Promise<{ localPort: number; sent: number; received: number; lastedMs: number; atLeastMs: number }> {
  const started = now();
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const connected = now();
  let received = 0;
  let wake: (() => void) | null = null;
  socket.on('data', (d) => {
    received += d.length;
    wake?.();
  });
  let sent = 0;
  let expected = 0;
  for (const [i, n] of sizes.entries()) {
    if (i > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    socket.write(`${n}\n`);
    sent += `${n}\n`.length;
    expected += n;
    while (received < expected) await new Promise<void>((resolve) => (wake = resolve));
  }
  const localPort = socket.localPort!;
  const ending = now();
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.end();
  await closed;
  return { localPort, sent, received, lastedMs: now() - started, atLeastMs: ending - connected };
}

test('attach to a pre-forking server: its workers, one forked later, exact bytes; accepted connections passive with their true lifetime', async (t) => {
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  const out = path.join(dir, 'counts.jsonl');
  const server = spawn('python3', [SERVER, '--workers', '2', '--out', out], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const [, port, ...workers] = (await lineFrom(server.stdout!, /ready \d+ \d+ \d+/, 'the server')).split(' ').map(Number);
    const json = path.join(dir, 'report.json');
    const backend = TEST_BACKEND ? ['--backend', TEST_BACKEND] : [];
    const proctap = spawn(PROCTAP, ['attach', ...backend, '-q', '--json', json, String(server.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proctap.stderr!.on('data', (d) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => proctap.on('close', resolve));
    await lineFrom(proctap.stderr!, /attached to pid \d+ and 2 descendants/, 'proctap to attach');

    const early = await Promise.all([client(port, [100, 200000, 5]), client(port, [1, 2, 3, 70000])]);
    const long = await client(port, [1000, 1000, 1000], 500); // about 1 s
    server.stdin!.write('spawn\n');
    const late = await lineFrom(server.stdout!, /spawned \d+/, 'the third worker').then((l) => Number(l.split(' ')[1]));
    // enough connections at once that the later worker takes some of them
    const more = await Promise.all(Array.from({ length: 6 }, (_, i) => client(port, [10 * (i + 1), 30000])));
    server.stdin!.write('report\n');
    assert.equal(await closed, 0, stderr);
    const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
    const counts: WorkloadCounts[] = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

    assert.deepEqual(counts.map((c) => c.pid).sort(), [...workers, late].sort());
    for (const c of counts) {
      const p = report.processes.find((x) => x.pid === c.pid);
      assert.ok(p, `worker ${c.pid} missing`);
      assert.deepEqual(p.tcp, c.tcp, `tcp of worker ${c.pid}`);
      t.diagnostic(`worker ${c.pid}: counted ${JSON.stringify(c.tcp)}, report ${JSON.stringify(p.tcp)}`);
    }
    assert.deepEqual(report.attached?.map((a) => [a.pid, a.via]), [[server.pid, 'pid'], ...workers.map((w) => [w, 'descendant'])]);
    assert.equal(report.processes.find((p) => p.pid === late)?.ppid, server.pid);
    const clients = [...early, long, ...more];
    const rows = report.connections.filter((c) => c.localPort === port);
    for (const c of clients) {
      const own = rows.filter((r) => r.remotePort === c.localPort);
      assert.ok(own.length > 0, `no row for the client on port ${c.localPort}: ${JSON.stringify(rows)}`);
      for (const r of own) assert.equal(r.role, 'passive', JSON.stringify(r));
      const moved = own.reduce((a, r) => [a[0] + r.rxBytes, a[1] + r.txBytes], [0, 0]);
      assert.deepEqual(moved, [c.sent, c.received], `bytes of the connection from port ${c.localPort}`);
    }
    const longRow = rows.find((r) => r.remotePort === long.localPort && r.txBytes > 0)!;
    t.diagnostic(`long connection: client ${long.atLeastMs.toFixed(3)}..${long.lastedMs.toFixed(3)} ms, report ${longRow.durationMs} ms (${report.backend})`);
    // SYN_RECV to CLOSE: the server's CLOSE comes with the client's last ACK, a hair before its close event
    assert.ok(longRow.durationMs !== null && longRow.durationMs >= long.atLeastMs && longRow.durationMs <= long.lastedMs + 5, `report ${longRow.durationMs} ms, client ${long.atLeastMs}..${long.lastedMs} ms`);
  } finally {
    server.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
