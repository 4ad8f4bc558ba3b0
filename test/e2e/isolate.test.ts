// SPDX-License-Identifier: MIT
// run --isolate (namespace mode, issue #6): the command runs in a network namespace of its own behind a
// veth pair and NAT. Traffic goes only to servers this test runs on the host (reached through the veth
// gateway address) or in namespaces it creates. The machine's network state is the same before and after,
// also after kill -9 followed by the next start or `proctap cleanup`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { NETLOAD, PROCTAP, proctapCgroups, proctapRun, tempDir, type WorkloadCounts } from './harness';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const FORWARD = '/proc/sys/net/ipv4/ip_forward';

/** What --isolate touches: links, namespaces, the whole nftables ruleset, forwarding, our state dir. */
function networkState(): Record<string, string> {
  const out = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const links = (JSON.parse(out('ip', ['-j', 'link', 'show'])) as Array<{ ifname: string }>).map((l) => l.ifname).sort().join(' ');
  return {
    links,
    netns: out('ip', ['netns', 'list']),
    ruleset: out('nft', ['-s', 'list', 'ruleset']),
    ipForward: fs.readFileSync(FORWARD, 'utf8'),
    ipv6Forward: fs.readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8'),
    stateDir: String(fs.existsSync('/run/proctap')),
    cgroups: proctapCgroups().join(' '),
  };
}

interface EchoServer {
  port: number;
  /** Bytes received (= echoed) per connection, in accept order. */
  received: number[];
  close(): Promise<void>;
}

/** TCP echo server on every host address: the isolated command reaches it through its gateway. */
function startEchoServer(): Promise<EchoServer> {
  const received: number[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const i = received.push(0) - 1;
    sockets.add(sock);
    sock.on('data', (d) => {
      received[i] += d.length;
      sock.write(d);
    });
    sock.on('error', () => {});
    sock.on('close', () => sockets.delete(sock));
  });
  return new Promise((resolve) => {
    server.listen(0, '::', () => { // dual stack: the namespace's IPv4 and IPv6 gateways
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        received,
        close: () => {
          for (const s of sockets) s.destroy();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}

let echo: EchoServer;
let dir: string;
let forwardBefore: string;
before(async () => {
  echo = await startEchoServer();
  dir = tempDir();
  fs.chmodSync(dir, 0o777);
  forwardBefore = fs.readFileSync(FORWARD, 'utf8');
  fs.writeFileSync(FORWARD, '0'); // the interesting case: proctap must turn it on and back off
});
after(async () => {
  await echo.close();
  fs.writeFileSync(FORWARD, forwardBefore);
  fs.rmSync(dir, { recursive: true, force: true });
});

function readCounts(file: string): WorkloadCounts[] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as WorkloadCounts) : [];
}

async function isolatedGateway(name: string, count: number, size: number, extra: string[] = [], workloadArgs: string[] = []) {
  const out = path.join(dir, `${name}.jsonl`);
  const run = await proctapRun(['-q', '--isolate', ...extra, '--', 'python3', NETLOAD, 'gateway', '--out', out, '--port', String(echo.port), '--count', String(count), '--size', String(size), ...workloadArgs]);
  const counts = readCounts(out);
  return { run, counts };
}

function assertExact(report: Report, counts: WorkloadCounts[]): void {
  assert.equal(counts.length, 1, 'the workload reported its counts');
  const c = counts[0];
  const p = report.processes.find((x) => x.pid === c.pid);
  assert.ok(p, `workload pid ${c.pid} is in the report`);
  assert.deepEqual(p.tcp, c.tcp);
  assert.deepEqual(p.udp, c.udp);
}

test('--isolate: the command runs in its own netns behind NAT; bytes exact; forwarding on for the run only; state identical after', async () => {
  const stateBefore = networkState();
  const { run, counts } = await isolatedGateway('one', 20, 1500);
  assert.equal(run.code, 0, run.stderr);
  const report = run.report!;
  assertExact(report, counts);
  assert.equal(counts[0].tcp.txBytes, 30000);
  const iso = report.isolation!;
  assert.ok(iso, 'the report has an isolation section');
  assert.match(iso.netns, /^proctap-\d+$/);
  assert.match(iso.subnet, /^10\.242\.\d+\.\d+\/30$/);
  assert.equal(iso.nat, iso.device === null ? 'none' : 'nftables');
  assert.deepEqual(iso.ipForward, { before: '0', changed: iso.device !== null });
  // The connection went from the namespace address to the gateway (the veth's host end).
  const conn = report.connections.find((c) => c.pid === counts[0].pid && c.remotePort === echo.port);
  assert.ok(conn);
  assert.equal(conn.localAddr, iso.address);
  assert.equal(conn.remoteAddr, iso.gateway);
  assert.equal(conn.txBytes, 30000);
  assert.equal(echo.received.at(-1), 30000, 'the server got what the workload counted');
  assert.deepEqual(networkState(), stateBefore);
});

test('--isolate with IPv6: where the host has an IPv6 default route, the namespace gets a /64 and reaches the host over it', async (t) => {
  const hasV6 = spawnSync('ip', ['-6', 'route', 'show', 'default'], { encoding: 'utf8' }).stdout.trim() !== '';
  const stateBefore = networkState();
  const { run, counts } = await isolatedGateway('v6', 5, 700, [], ['--ipv6']);
  if (!hasV6) {
    // No IPv6 on the host: the namespace has none either, and the workload's connect fails.
    assert.equal(run.report!.isolation!.ipv6, undefined);
    t.diagnostic('host has no IPv6 default route: checked that none is set up');
    assert.deepEqual(networkState(), stateBefore);
    return;
  }
  assert.equal(run.code, 0, run.stderr);
  const iso = run.report!.isolation!;
  assert.match(iso.ipv6!.subnet, /^fd70:7074:6170:[0-9a-f]+::\/64$/);
  assertExact(run.report!, counts);
  const conn = run.report!.connections.find((c) => c.pid === counts[0].pid && c.remotePort === echo.port)!;
  assert.equal(conn.localAddr, iso.ipv6!.address);
  assert.equal(conn.remoteAddr, iso.ipv6!.gateway);
  assert.equal(conn.txBytes, 3500);
  assert.deepEqual(networkState(), stateBefore);
});

test('five concurrent --isolate runs: distinct subnets and namespaces, exact per-instance counts, state identical after', async () => {
  const stateBefore = networkState();
  const runs = await Promise.all([0, 1, 2, 3, 4].map((i) => isolatedGateway(`five${i}`, 10 + i, 1000 + 100 * i)));
  const subnets = new Set<string>();
  const namespaces = new Set<string>();
  runs.forEach(({ run, counts }, i) => {
    assert.equal(run.code, 0, run.stderr);
    assertExact(run.report!, counts);
    assert.equal(counts[0].tcp.txBytes, (10 + i) * (1000 + 100 * i));
    subnets.add(run.report!.isolation!.subnet);
    namespaces.add(run.report!.isolation!.netns);
  });
  assert.equal(subnets.size, 5);
  assert.equal(namespaces.size, 5);
  assert.deepEqual(networkState(), stateBefore);
});

test('--use-public-dns -u nobody: the namespace sees public nameservers, the command runs unprivileged, the host\'s resolv.conf is untouched', async () => {
  const hostResolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
  const stateBefore = networkState();
  const run = await proctapRun(['-q', '--isolate', '--use-public-dns', '-u', 'nobody', '--', 'sh', '-c', 'id -u; grep CapEff /proc/self/status; readlink /proc/self/ns/net; cat /etc/resolv.conf']);
  assert.equal(run.code, 0, run.stderr);
  const nobody = spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim();
  assert.match(run.stdout, new RegExp(`^${nobody}$`, 'm'));
  assert.match(run.stdout, /^CapEff:\s+0+$/m);
  assert.notEqual(/net:\[\d+\]/.exec(run.stdout)?.[0], fs.readlinkSync('/proc/self/ns/net'), 'in a network namespace of its own');
  assert.match(run.stdout, /^nameserver 9\.9\.9\.9$/m);
  assert.match(run.stdout, /^nameserver 1\.1\.1\.1$/m);
  assert.equal(run.report!.isolation!.dns, 'public');
  assert.equal(fs.readFileSync('/etc/resolv.conf', 'utf8'), hostResolv);
  assert.deepEqual(networkState(), stateBefore);
});

test('--isolate bad input: one-line errors, nothing created', async () => {
  const stateBefore = networkState();
  const cases: Array<{ args: string[]; code: number; message: RegExp }> = [
    { args: ['--isolate', '-d', 'eth0;reboot'], code: 2, message: /^proctap: invalid interface name 'eth0;reboot' \(1-15 characters/ },
    { args: ['--isolate', '-d', 'eth 0'], code: 2, message: /^proctap: invalid interface name 'eth 0'/ },
    { args: ['--isolate', '-d', 'a234567890123456'], code: 2, message: /^proctap: invalid interface name 'a234567890123456'/ },
    { args: ['-d', 'lo'], code: 2, message: /^proctap: --device needs --isolate$/ },
    { args: ['--use-public-dns'], code: 2, message: /^proctap: --use-public-dns needs --isolate$/ },
    { args: ['--isolate', '-d', 'ptnosuchdev0'], code: 125, message: /^proctap: no such network device: ptnosuchdev0$/ },
    { args: ['--isolate', '--no-ip-forward'], code: 125, message: /^proctap: IP forwarding is off and --no-ip-forward was given: enable it with sysctl net\.ipv4\.ip_forward=1$/ },
  ];
  for (const c of cases) {
    const run = await proctapRun([...c.args, '--', 'true'], { json: false });
    assert.equal(run.code, c.code, `${c.args.join(' ')}: ${run.stderr}`);
    const lines = run.stderr.trim().split('\n').filter((l) => !l.startsWith('(run with --help'));
    assert.equal(lines.length, 1, `one line for ${c.args.join(' ')}: ${run.stderr}`);
    assert.match(lines[0], c.message);
  }
  assert.deepEqual(networkState(), stateBefore);
});

async function killedIsolatedRun(): Promise<number> {
  const proctap = spawn(PROCTAP, ['run', '-q', '--isolate', '--', 'sleep', '60'], { stdio: 'ignore' });
  const netns = `/run/netns/proctap-${proctap.pid}`;
  const deadline = Date.now() + 10_000;
  while (!(fs.existsSync(netns) && fs.readdirSync('/sys/class/net').includes(`pt${proctap.pid}h`) && spawnSync('pgrep', ['-x', 'sleep', '-P', String(proctap.pid)]).status !== 2)) {
    if (Date.now() > deadline) assert.fail('the isolated run did not start');
    await sleep(20);
  }
  await sleep(300); // the gate opens once every hook is attached
  proctap.kill('SIGKILL');
  await new Promise((resolve) => proctap.on('close', resolve));
  return proctap.pid!;
}

test('kill -9 during --isolate: the next start removes the leftover netns, veth, nft table and restores forwarding', async () => {
  const stateBefore = networkState();
  const pid = await killedIsolatedRun();
  assert.ok(fs.existsSync(`/run/netns/proctap-${pid}`), 'the killed instance left its namespace');
  assert.notDeepEqual(networkState(), stateBefore);
  const run = await proctapRun(['--', 'true']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, new RegExp(`removed leftover netns proctap-${pid}`));
  assert.match(run.stderr, new RegExp(`removed leftover nft table inet proctap_${pid}`));
  assert.deepEqual(networkState(), stateBefore);
});

test('kill -9 during --isolate, then `proctap cleanup`: state identical, and only the dead instance\'s things are removed', async () => {
  const stateBefore = networkState();
  // A live instance's namespace must survive the cleanup.
  const live = spawn(PROCTAP, ['run', '-q', '--isolate', '--', 'sleep', '60'], { stdio: 'ignore' });
  const pid = await killedIsolatedRun();
  const deadline = Date.now() + 10_000;
  while (!fs.existsSync(`/run/netns/proctap-${live.pid}`)) {
    if (Date.now() > deadline) assert.fail('the live instance did not start');
    await sleep(20);
  }
  const cleanup = spawnSync(PROCTAP, ['cleanup'], { encoding: 'utf8' });
  assert.equal(cleanup.status, 0, cleanup.stderr);
  assert.match(cleanup.stdout, new RegExp(`netns proctap-${pid}`));
  assert.match(cleanup.stdout, new RegExp(`veth pt${pid}h`));
  assert.ok(fs.existsSync(`/run/netns/proctap-${live.pid}`), 'the running instance is left alone');
  assert.equal(fs.readFileSync(FORWARD, 'utf8').trim(), '1', 'forwarding stays on while the live instance needs it');
  live.kill('SIGINT');
  await new Promise((resolve) => live.on('close', resolve));
  assert.deepEqual(networkState(), stateBefore);
});

// ---------------------------------------------------------------- capture, NAT, nsntrace parity

/** TCP packets and their payload bytes in a capture file, as tshark counts them. */
function tcpCounts(file: string, filter = 'tcp'): { packets: number; payload: number } {
  const r = spawnSync('tshark', ['-r', file, '-Y', filter, '-T', 'fields', '-e', 'tcp.len'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const lens = r.stdout.split('\n').filter(Boolean).map(Number);
  return { packets: lens.length, payload: lens.reduce((a, b) => a + b, 0) };
}

function countPackets(file: string, filter: string): number {
  const r = spawnSync('tshark', ['-r', file, '-Y', filter], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).length;
}

/** nsntrace, asynchronously (the echo server lives in this process: a spawnSync would deadlock it). */
function runNsntrace(args: string[], cwd: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('nsntrace', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGINT'), 30_000); // nsntrace cleans up on SIGINT
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test('the same command under Debian\'s nsntrace and under run --isolate -o: same TCP packets and payload bytes', async () => {
  const workload = (out: string) => ['python3', NETLOAD, 'gateway', '--out', out, '--port', String(echo.port), '--count', '12', '--size', '1400'];
  // nsntrace refuses to run without forwarding, and sometimes fails to open its interface (a race of its
  // own: "Couldn't open iface", about 1 start in 4 here); it gets five tries.
  const nsnPcap = path.join(dir, 'nsntrace.pcap');
  const nsnCounts = path.join(dir, 'nsntrace.jsonl');
  fs.writeFileSync(FORWARD, '1');
  let nsn = { code: null as number | null, stderr: '' };
  try {
    for (let attempt = 0; attempt < 5 && !fs.existsSync(nsnCounts); attempt++) {
      fs.rmSync(nsnPcap, { force: true });
      nsn = await runNsntrace(['-o', nsnPcap, ...workload(nsnCounts)], dir);
    }
  } finally {
    fs.writeFileSync(FORWARD, '0');
  }
  assert.ok(fs.existsSync(nsnCounts), `nsntrace ran the workload: ${nsn.stderr}`);
  // nsntrace's iptables-nft may leave empty tables of its own: compare proctap's run from here on.
  const stateBefore = networkState();
  const pcap = path.join(dir, 'isolate.pcapng');
  const out = path.join(dir, 'isolate.jsonl');
  const run = await proctapRun(['-q', '--isolate', '-o', pcap, '--', ...workload(out)]);
  assert.equal(run.code, 0, run.stderr);
  assertExact(run.report!, readCounts(out));
  const ours = tcpCounts(pcap);
  const theirs = tcpCounts(nsnPcap);
  process.stderr.write(`# nsntrace: ${theirs.packets} TCP packets, ${theirs.payload} payload bytes; proctap --isolate: ${ours.packets}, ${ours.payload}\n`);
  assert.equal(ours.payload, 2 * 12 * 1400, 'every payload byte both ways is in our file');
  assert.deepEqual(ours, theirs);
  // Every TCP packet names the workload process (its local port, learned from the trace's records).
  const pid = readCounts(out)[0].pid;
  assert.equal(countPackets(pcap, `tcp && !(frame.comment contains "pid ${pid} (")`), 0, 'every TCP packet names its process');
  assert.equal(countPackets(pcap, `tcp && frame.comment contains "pid ${pid} ("`), ours.packets);
  const capture = run.report!.capture!;
  assert.equal(capture.source, 'libpcap');
  assert.equal(capture.dropped, 0);
  assert.match(capture.interfaces![0], /^pt\d+n \(netns proctap-\d+\)$/);
  assert.deepEqual(networkState(), stateBefore);
});

/** A namespace standing for "the outside": reached from the host through a veth pair of its own. */
function outsideNamespace(tag: string, subnet: string) {
  const name = `ptiso-${tag}-${process.pid}`;
  const hostIf = `ptiso${tag}h`;
  const nsIf = `ptiso${tag}n`;
  const sh = (...args: string[]) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  sh('netns', 'add', name);
  sh('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf, 'netns', name);
  sh('addr', 'add', `${subnet}.1/30`, 'dev', hostIf);
  sh('link', 'set', hostIf, 'up');
  sh('-n', name, 'addr', 'add', `${subnet}.2/30`, 'dev', nsIf);
  sh('-n', name, 'link', 'set', nsIf, 'up');
  sh('-n', name, 'link', 'set', 'lo', 'up');
  return {
    name,
    hostIf,
    hostAddr: `${subnet}.1`,
    nsAddr: `${subnet}.2`,
    remove: () => {
      spawnSync('ip', ['link', 'delete', hostIf]);
      spawnSync('ip', ['netns', 'delete', name]);
    },
  };
}

test('--isolate -d DEV through NAT to another namespace: the conntrack mapping is shown; -f filters the capture', async () => {
  const stateBefore = networkState();
  const outside = outsideNamespace('out', '10.243.7');
  const server = spawn('ip', ['netns', 'exec', outside.name, 'python3', '-c', [
    'import socket, sys',
    's = socket.socket(); s.bind(("0.0.0.0", 47010)); s.listen(); print("ready", flush=True)',
    'while True:',
    '  c, _ = s.accept()',
    '  while (d := c.recv(65536)): c.sendall(d)',
    '  c.close()',
  ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((resolve) => server.stdout.once('data', resolve));
    const pcap = path.join(dir, 'nat.pcapng');
    const out = path.join(dir, 'nat.jsonl');
    const run = await proctapRun(['-q', '--isolate', '-d', outside.hostIf, '-o', pcap, '-f', 'tcp port 47010', '--',
      'python3', NETLOAD, 'gateway', '--host', outside.nsAddr, '--out', out, '--port', '47010', '--count', '7', '--size', '900']);
    assert.equal(run.code, 0, run.stderr);
    const report = run.report!;
    assertExact(report, readCounts(out));
    assert.equal(report.isolation!.device, outside.hostIf);
    const conn = report.connections.find((c) => c.remoteAddr === outside.nsAddr && c.remotePort === 47010)!;
    assert.ok(conn, 'the connection is in the report');
    assert.equal(conn.localAddr, report.isolation!.address);
    assert.deepEqual(conn.nat && { addr: conn.nat.addr }, { addr: outside.hostAddr }, 'masqueraded to the device\'s address');
    assert.ok(conn.nat!.port > 0);
    // The filter kept only that connection; the file holds both directions of it, payload exact.
    assert.equal(countPackets(pcap, 'not (tcp.port == 47010)'), 0);
    assert.equal(tcpCounts(pcap).payload, 2 * 7 * 900);
  } finally {
    server.kill();
    outside.remove();
  }
  assert.deepEqual(networkState(), stateBefore);
});

test('attach --netns-capture: every interface of the target\'s namespace, packets without a socket owner too (ARP, ICMP)', async () => {
  const stateBefore = networkState();
  const target = outsideNamespace('tgt', '10.243.9');
  // The target waits for a go file, then sends 3 datagrams to a closed port on the host end: the host
  // answers with ICMP port unreachable, and the first one needs ARP.
  const go = path.join(dir, 'go');
  const child = spawn('ip', ['netns', 'exec', target.name, 'python3', '-c', [
    'import os, socket, time',
    `while not os.path.exists(${JSON.stringify(go)}): time.sleep(0.02)`,
    'u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    `for i in range(3): u.sendto(b"x" * 100, (${JSON.stringify(target.hostAddr)}, 9)); time.sleep(0.05)`,
    'time.sleep(0.3)',
  ].join('\n')], { stdio: 'ignore' });
  try {
    // `ip netns exec` execs python: the pid is the target.
    await sleep(300);
    const pcap = path.join(dir, 'netns.pcapng');
    const json = path.join(dir, 'netns.json');
    const attach = spawn(PROCTAP, ['attach', '-q', '--netns-capture', '-o', pcap, '--json', json, String(child.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    attach.stderr.on('data', (d) => (stderr += d));
    const deadline = Date.now() + 10_000;
    while (!/attached to/.test(stderr)) {
      if (Date.now() > deadline) assert.fail(`attach did not start: ${stderr}`);
      await sleep(20);
    }
    fs.writeFileSync(go, '');
    const code = await new Promise((resolve) => attach.on('close', resolve));
    assert.equal(code, 0, stderr);
    const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(report.capture!.source, 'libpcap');
    assert.match(report.capture!.interfaces![0], /^any \(netns \d+\)$/);
    const proc = report.processes.find((p) => p.pid === child.pid)!;
    assert.deepEqual(proc.udp, { txBytes: 300, rxBytes: 0, txCalls: 3, rxCalls: 0 });
    assert.equal(countPackets(pcap, `udp.dstport == 9 && ip.src == ${target.nsAddr} && !icmp && frame.comment contains "pid ${child.pid} ("`), 3, 'the datagrams name their process');
    assert.equal(countPackets(pcap, 'arp && frame.comment == "no socket (not TCP/UDP)"'), countPackets(pcap, 'arp'));
    assert.ok(countPackets(pcap, 'arp') >= 1, 'ARP has no socket owner: only a namespace capture sees it');
    assert.ok(countPackets(pcap, 'icmp.type == 3') >= 1, 'the port-unreachable answers');
  } finally {
    child.kill();
    target.remove();
  }
  assert.deepEqual(networkState(), stateBefore);
});

for (const fault of ['uncaught-exception', 'unhandled-rejection'] as const) {
  test(`an internal error (${fault}) during run --isolate: one line, exit 125, tree killed, state identical`, async () => {
    const stateBefore = networkState();
    const marker = `ptfault${process.pid}`;
    const proctap = spawn(PROCTAP, ['run', '-q', '--isolate', '--test-hook', `inject-fault=${fault}`, '--', 'python3', '-c', 'import time; time.sleep(30)', marker], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proctap.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((resolve) => proctap.on('close', resolve));
    assert.equal(code, 125, stderr);
    // One line says what happened (besides the forwarding notice); no stack trace.
    const lines = stderr.trim().split('\n').filter((l) => !/IP forwarding enabled/.test(l));
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0], new RegExp(`^proctap: internal error \\(${fault.replace('-', ' ')}\\): injected fault`));
    // The reaper removes the emptied cgroup right after proctap's exit.
    const deadline = Date.now() + 3000;
    while (proctapCgroups().length > 0 && Date.now() < deadline) await sleep(20);
    assert.equal(spawnSync('pgrep', ['-f', marker]).status, 1, 'the traced command is gone');
    assert.deepEqual(networkState(), stateBefore);
  });
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  test(`${signal} to proctap during run --isolate -o: report and capture complete, state identical`, async () => {
    const stateBefore = networkState();
    const json = path.join(dir, `sig-${signal}.json`);
    const pcap = path.join(dir, `sig-${signal}.pcapng`);
    // 1000 bytes each way to the gateway, then "ready", then waiting to be stopped.
    const script = [
      'import socket, time',
      'route = [l.split() for l in open("/proc/net/route").read().splitlines()[1:] if l.split()[1] == "00000000"][0]',
      'gateway = socket.inet_ntoa(bytes.fromhex(route[2])[::-1])',
      `s = socket.create_connection((gateway, ${echo.port}))`,
      's.sendall(b"s" * 1000)',
      'n = 0',
      'while n < 1000: n += len(s.recv(4096))',
      'print("ready", flush=True)',
      'time.sleep(60)',
    ].join('\n');
    const proctap = spawn(PROCTAP, ['run', '-q', '--isolate', '--json', json, '-o', pcap, '--', 'python3', '-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
    await new Promise((resolve) => proctap.stdout.once('data', resolve));
    proctap.kill(signal);
    const code = await new Promise((resolve) => proctap.on('close', resolve));
    assert.equal(code, 143, 'the command got SIGTERM: 128 + 15');
    const report: Report = JSON.parse(fs.readFileSync(json, 'utf8'));
    assert.equal(report.totals.tcp.txBytes, 1000);
    assert.equal(report.totals.tcp.rxBytes, 1000);
    assert.equal(tcpCounts(pcap).payload, 2000, 'the capture is complete and readable');
    assert.deepEqual(networkState(), stateBefore);
  });
}
