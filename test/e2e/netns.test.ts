// SPDX-License-Identifier: MIT
// Retransmits and timed-out connects end to end, between two network namespaces the test creates (a
// veth pair): the traced client runs in one (`ip netns exec`), an untraced sink in the other, whose
// nftables drop the first two data segments of one connection (so the kernel retransmits them) and every
// packet to one port (so a connect times out; tcp_syn_retries=1 in the client's netns keeps it short).
// Everything lives in the two namespaces: deleting them removes the veth pair and the rules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NETLOAD, proctapRun, tempDir } from './harness';

const CLIENT_NS = `proctap-dns-c${process.pid}`;
const SERVER_NS = `proctap-dns-s${process.pid}`;
const CLIENT_ADDR = '10.253.53.1';
const SERVER_ADDR = '10.253.53.2';
const LOSSY_PORT = 5001; // first two data segments dropped
const CLEAN_PORT = 5002; // untouched
const BLACKHOLE_PORT = 5003; // everything dropped: connect() times out
const UPLOAD = 2_000_000;

let sink: ChildProcess | null = null;
/** The interpreter itself, not the pyenv shim: the process tree stays the workload's. */
let python = 'python3';
let dir = '';

function sh(args: string[], input?: string): string {
  const r = spawnSync(args[0], args.slice(1), { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr || r.status}`);
  return r.stdout;
}

/** Sink: reads each connection to EOF, answers with the byte count (8 bytes, little endian). */
const SINK = `
import socket, struct, sys, threading
def serve(port):
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("${SERVER_ADDR}", port)); srv.listen(8)
    while True:
        c, _ = srv.accept(); n = 0
        while True:
            d = c.recv(65536)
            if not d: break
            n += len(d)
        c.sendall(struct.pack("<Q", n)); c.close()
for p in (${LOSSY_PORT}, ${CLEAN_PORT}):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
`;

function removeNamespaces(): void {
  for (const ns of [CLIENT_NS, SERVER_NS]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

before(async () => {
  removeNamespaces();
  const vc = `ptdc${process.pid % 100000}`;
  const vs = `ptds${process.pid % 100000}`;
  sh(['ip', 'netns', 'add', CLIENT_NS]);
  sh(['ip', 'netns', 'add', SERVER_NS]);
  sh(['ip', 'link', 'add', vc, 'netns', CLIENT_NS, 'type', 'veth', 'peer', 'name', vs, 'netns', SERVER_NS]);
  for (const [ns, dev, addr] of [[CLIENT_NS, vc, CLIENT_ADDR], [SERVER_NS, vs, SERVER_ADDR]]) {
    sh(['ip', '-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev]);
    sh(['ip', '-n', ns, 'link', 'set', dev, 'up']);
    sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
  }
  // per-netns: SYN, one retry, give up (about 3 s instead of 2 minutes). Tail loss probes are retransmits
  // too (the kernel sends one when an ACK is late, loss or not): off, so the untouched connection has none.
  sh(['ip', 'netns', 'exec', CLIENT_NS, 'sysctl', '-qw', 'net.ipv4.tcp_syn_retries=1', 'net.ipv4.tcp_early_retrans=0']);
  python = sh(['python3', '-c', 'import sys; print(sys.executable)']).trim();
  sh(['ip', 'netns', 'exec', SERVER_NS, 'nft', '-f', '-'], `
table inet proctap_dns_test {
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport ${LOSSY_PORT} ip length > 200 numgen inc mod 1000000 < 2 drop
    tcp dport ${BLACKHOLE_PORT} drop
  }
}
`);
  sink = spawn('ip', ['netns', 'exec', SERVER_NS, 'python3', '-c', SINK], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    sink!.stdout!.once('data', () => resolve());
    sink!.once('exit', (code) => reject(new Error(`sink exited (${code})`)));
  });
  dir = tempDir();
  fs.chmodSync(dir, 0o777);
});

after(() => {
  sink?.kill();
  removeNamespaces();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The client netns's own count of retransmitted TCP segments (RetransSegs of its /proc/net/snmp). */
function retransSegs(): number {
  const tcp = sh(['ip', 'netns', 'exec', CLIENT_NS, 'cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = tcp[0].split(/\s+/);
  return Number(tcp[1].split(/\s+/)[names.indexOf('RetransSegs')]);
}

async function inClientNs(scenario: string, extra: string[]) {
  const out = path.join(dir, `${scenario}.jsonl`);
  const run = await proctapRun(['--no-color', '--user', 'root', '--',
    'ip', 'netns', 'exec', CLIENT_NS, python, NETLOAD, scenario, '--out', out, '--host', SERVER_ADDR, ...extra]);
  assert.equal(run.code, 0, run.stderr);
  const me = JSON.parse(fs.readFileSync(out, 'utf8').trim().split('\n')[0]);
  return { run, report: run.report!, me };
}

test('retransmits per connection: the lossy one has some, the clean one none; bytes stay exact', async (t) => {
  const before = retransSegs();
  const { report, me, run } = await inClientNs('upload', ['--port', String(LOSSY_PORT), '--port2', String(CLEAN_PORT), '--size', String(UPLOAD)]);
  const proc = report.processes.find((p) => p.pid === me.pid)!;
  assert.deepEqual(proc.tcp, me.tcp, 'send/recv totals equal what the workload counted');
  const conn = (port: number) => {
    const rows = report.connections.filter((c) => c.pid === me.pid && c.remoteAddr === SERVER_ADDR && c.remotePort === port);
    assert.equal(rows.length, 1, `one connection to port ${port}`);
    return rows[0];
  };
  const lossy = conn(LOSSY_PORT);
  const clean = conn(CLEAN_PORT);
  assert.ok((lossy.retransmits ?? 0) >= 1, `lossy connection retransmits: ${lossy.retransmits}`);
  assert.equal(clean.retransmits, 0);
  // the kernel's own count, in the only netns these connections live in, agrees exactly
  assert.equal(lossy.retransmits, retransSegs() - before, 'retransmits equal RetransSegs of the client netns');
  t.diagnostic(`lossy connection: ${lossy.retransmits} segments retransmitted, ${lossy.txBytes} bytes sent`);
  // bytes are counted at the send() call: retransmitted segments are not counted twice
  assert.deepEqual([lossy.txBytes, lossy.rxBytes, lossy.outcome], [UPLOAD, 8, 'closed']);
  assert.deepEqual([clean.txBytes, clean.rxBytes, clean.outcome], [UPLOAD, 8, 'closed']);
  assert.match(run.stderr, /RETRANS/);
});

test('a connect() into a blackhole times out: outcome "timed out", counted by failed-connects', async () => {
  const before = retransSegs();
  const { report, me, run } = await inClientNs('connect', ['--port', String(BLACKHOLE_PORT)]);
  const rows = report.connections.filter((c) => c.pid === me.pid && c.remotePort === BLACKHOLE_PORT);
  assert.equal(rows.length, 1);
  const c = rows[0];
  assert.deepEqual([c.remoteAddr, c.role, c.outcome, c.error, c.txBytes, c.rxBytes], [SERVER_ADDR, 'active', 'timeout', 'ETIMEDOUT', 0, 0]);
  assert.ok((c.retransmits ?? 0) >= 1, `the SYN was retransmitted: ${c.retransmits}`);
  assert.equal(c.retransmits, retransSegs() - before, 'SYN retries equal RetransSegs of the client netns');
  assert.ok(c.durationMs !== null && c.durationMs >= 1000, `it took the SYN retry: ${c.durationMs} ms`);
  const failed = report.patterns!.find((p) => p.kind === 'failed-connects')!;
  assert.ok(failed, JSON.stringify(report.patterns));
  assert.deepEqual([failed.evidence.failures, failed.evidence.timeout, failed.pids], [1, 1, [me.pid]]);
  // the OUTCOME cell may wrap: "timed out" over "(ETIMEDOUT)"
  const row = run.stderr.split('\n').find((l) => l.includes(`${me.pid} `) && l.includes('active'))!;
  assert.match(row, /timed out/);
  assert.match(run.stderr, /\(ETIMEDOUT\)/);
});
