// SPDX-License-Identifier: MIT
// `proctap run` end to end on the real kernel: the report equals what the workloads counted themselves,
// per process, protocol and direction; the process tree is right; nothing is left behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ProcessReport, Report } from '../../src/schema/report';
import {
  expectedBackend,
  linkCount,
  loadedProgramNames,
  proctapCgroups,
  proctapRun,
  runWorkload,
  startServers,
  type Servers,
  type WorkloadCounts,
} from './harness';

let servers: Servers;
let linksBefore: number;
/** BPF program names of proctap.bpf.o as the kernel shows them (15 characters at most). */
const OUR_PROGRAMS = new Set(
  ['inet_sock_set_state', 'sched_process_exec', 'sched_process_exit', 'sched_process_fork', 'sys_enter', 'sys_enter_sendfile', 'sys_enter_splice', 'tp_sock_recv_length',
    'tp_sock_send_length', 'sock_create', 'sock_release', 'udp_sendmsg4', 'udp_sendmsg6', 'udp_recvmsg4', 'udp_recvmsg6',
    'skb_egress', 'skb_ingress', 'skb_ingress_dns', 'tcp_retransmit_skb', 'sys_enter_sendmmsg', 'sys_enter_recvmmsg'].map((n) => n.slice(0, 15)),
);
let backend: string;

before(async () => {
  backend = expectedBackend();
  servers = await startServers();
  linksBefore = linkCount();
  assert.deepEqual(await ourProgramsAfter(3000), [], 'another proctap is running: these tests need the machine to themselves');
});
after(async () => {
  await servers.close();
});

/** Our programs still loaded once they had up to `ms` to go away. */
async function ourProgramsAfter(ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const programs = loadedProgramNames().filter((n) => OUR_PROGRAMS.has(n)).sort();
    if (programs.length === 0 || Date.now() > deadline) return programs;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function processOf(report: Report, pid: number): ProcessReport {
  const p = report.processes.find((x) => x.pid === pid);
  assert.ok(p, `pid ${pid} is missing from the report (has ${report.processes.map((x) => x.pid).join(', ')})`);
  return p;
}

/** Every process's own counts equal the report's, exactly, per protocol and direction. */
function assertExact(report: Report, counts: WorkloadCounts[]): void {
  assert.ok(counts.length > 0, 'the workload reported no counts');
  for (const c of counts) {
    const p = processOf(report, c.pid);
    assert.deepEqual(p.tcp, c.tcp, `tcp of pid ${c.pid}`);
    assert.deepEqual(p.udp, c.udp, `udp of pid ${c.pid}`);
  }
}

function assertCleanRun(run: { code: number | null; stderr: string; report: Report | null }): Report {
  assert.equal(run.code, 0, `proctap failed: ${run.stderr}`);
  assert.ok(run.report, 'no JSON report written');
  assert.equal(run.report.lost.records, 0, 'records lost');
  return run.report;
}

test('a parent, two children and a grandchild that connect at once: exact per process, right tree', async () => {
  const { run, counts } = await runWorkload('tree', [], servers.port);
  const report = assertCleanRun(run);
  assert.equal(counts.length, 4);
  assertExact(report, counts);
  for (const c of counts) assert.equal(processOf(report, c.pid).ppid, c.ppid, `ppid of ${c.pid}`);
  const root = counts.find((c) => !counts.some((o) => o.pid === c.ppid))!;
  assert.equal(report.processes[0].pid, root.pid, 'the launched command comes first');
  assert.equal(report.mode, 'run');
  assert.equal(report.backend, backend);
  assert.deepEqual(report.processes[0].argv.slice(-5), ['tree', '--out', report.processes[0].argv.at(-3), '--port', String(servers.port)]);
  // TCP over IPv4 and IPv6, UDP over IPv4 all reached the right endpoints
  const endpoints = report.endpoints.map((e) => `${e.proto} ${e.remoteAddr} ${e.remotePort}`);
  assert.ok(endpoints.includes(`tcp 127.0.0.1 ${servers.port}`), endpoints.join('; '));
  assert.ok(endpoints.includes(`tcp ::1 ${servers.port}`), endpoints.join('; '));
  assert.ok(endpoints.includes(`udp 127.0.0.1 ${servers.port}`), endpoints.join('; '));
  for (const c of counts) assert.equal(processOf(report, c.pid).exitCode, 0, `exit code of ${c.pid}`);
});

test('unconnected UDP sendto/recvfrom over IPv4 and IPv6, including empty datagrams', async () => {
  const { run, counts } = await runWorkload('udp', [], servers.port);
  const report = assertCleanRun(run);
  assertExact(report, counts);
  const v4 = report.endpoints.find((e) => e.proto === 'udp' && e.remoteAddr === '127.0.0.1');
  const v6 = report.endpoints.find((e) => e.proto === 'udp' && e.remoteAddr === '::1');
  assert.deepEqual([v4?.txCalls, v4?.txBytes], [5, 10 + 200 + 1400 + 0 + 65000]);
  assert.deepEqual([v6?.txCalls, v6?.txBytes], [4, 1 + 2 + 3 + 4000]);
  assert.equal(v4?.rxBytes, v4?.txBytes, 'echoed bytes come back from the same endpoint');
});

test('sendfile() bytes are counted as sent', async () => {
  const size = 3 * 1024 * 1024 + 17;
  const { run, counts } = await runWorkload('sendfile', ['--size', String(size)], servers.port + 1);
  const report = assertCleanRun(run);
  assertExact(report, counts);
  assert.equal(report.processes[0].tcp.txBytes, size);
});

test('many short connections: every one counted and listed as closed', async () => {
  const { run, counts } = await runWorkload('short', ['--count', '200'], servers.port);
  const report = assertCleanRun(run);
  assertExact(report, counts);
  const conns = report.connections.filter((c) => c.proto === 'tcp' && c.remotePort === servers.port);
  assert.equal(conns.length, 200);
  assert.ok(conns.every((c) => c.outcome === 'closed' && c.role === 'active'), JSON.stringify(conns.find((c) => c.outcome !== 'closed')));
  const endpoint = report.endpoints.find((e) => e.proto === 'tcp' && e.remotePort === servers.port)!;
  assert.equal(endpoint.connections, 200);
});

test('a traced server child and its traced client: accepted connections attributed to the server', async () => {
  const { run, counts } = await runWorkload('pair', [], 0);
  const report = assertCleanRun(run);
  assertExact(report, counts);
  const serverPid = counts.find((c) => c.ppid !== process.pid && counts.some((o) => o.pid === c.ppid))!.pid;
  const passive = report.connections.filter((c) => c.role === 'passive');
  assert.equal(passive.length, 3);
  assert.ok(passive.every((c) => c.pid === serverPid));
  assert.deepEqual(passive.map((c) => c.rxBytes).sort((a, b) => a - b), [3, 1000, 50000]);
});

test('a refused connect is reported with its outcome', async () => {
  const run = await proctapRun(['-q', '--', 'python3', '-c', `
import socket
s = socket.socket()
try:
    s.connect(("127.0.0.1", ${servers.port + 2}))
except ConnectionRefusedError:
    pass
`]);
  const report = assertCleanRun(run);
  const refused = report.connections.filter((c) => c.outcome === 'refused');
  assert.equal(refused.length, 1, JSON.stringify(report.connections));
  assert.equal(refused[0].remotePort, servers.port + 2);
  assert.equal(refused[0].error, 'ECONNREFUSED');
});

test('exit codes pass through: the code, 128+N for a signal, 127 when the command cannot start', async () => {
  assert.equal((await proctapRun(['-q', '--', 'sh', '-c', 'exit 7'])).code, 7);
  const killed = await proctapRun(['-q', '--', 'sh', '-c', 'kill -TERM $$']);
  assert.equal(killed.code, 143);
  assert.equal(killed.report?.exitCode, 143);
  assert.equal(killed.report?.processes[0].exitSignal, 15);
  const missing = await proctapRun(['-q', '--', '/nonexistent/command']);
  assert.equal(missing.code, 127);
  assert.match(missing.stderr, /cannot run '\/nonexistent\/command'/);
});

test('nothing is left behind: no cgroup, no BPF link, no BPF program', async () => {
  const r = await proctapRun(['-q', '--', 'true']);
  assert.equal(r.code, 0);
  assert.deepEqual(proctapCgroups(), []);
  // The kernel frees programs after an RCU grace period: allow it a second, as users would.
  assert.deepEqual(await ourProgramsAfter(1000), []);
  assert.ok(linkCount() <= linksBefore, 'no BPF link of ours remains');
  process.stderr.write(`# proctap run -- true: ${r.wallMs.toFixed(0)} ms wall\n`);
});
