// SPDX-License-Identifier: MIT
// `--pcap`: the capture matches what tcpdump sees on lo for the same flows in the same run, every packet
// names its owning pid, tshark reads every file without complaint, and `--pcap -` streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NETLOAD, PROCTAP, proctapRun, loopbackFixture } from './harness';

const env = loopbackFixture();

/** tshark's stderr without its as-root warning: anything left is a complaint about the file. */
function tshark(args: string[]): string {
  const r = spawnSync('tshark', args, { encoding: 'utf8' });
  const complaints = r.stderr.split('\n').filter((l) => l.trim() && !/Running as user "root"|could be dangerous/.test(l));
  assert.equal(r.status, 0, `tshark ${args.join(' ')} failed: ${r.stderr}`);
  assert.deepEqual(complaints, [], `tshark complained about ${args.join(' ')}`);
  return r.stdout;
}

interface FlowView {
  packetsToServer: number;
  payloadToServer: number;
  payloadToClient: number;
}

/** TCP flows to the server port, keyed by the client port. */
function tcpFlows(file: string, serverPort: number): Map<number, FlowView> {
  const flows = new Map<number, FlowView>();
  const out = tshark(['-r', file, '-Y', `tcp.port == ${serverPort}`, '-T', 'fields', '-e', 'tcp.srcport', '-e', 'tcp.dstport', '-e', 'tcp.len']);
  for (const line of out.split('\n').filter(Boolean)) {
    const [src, dst, len] = line.split('\t').map(Number);
    const client = dst === serverPort ? src : dst;
    const f = flows.get(client) ?? { packetsToServer: 0, payloadToServer: 0, payloadToClient: 0 };
    if (dst === serverPort) {
      f.packetsToServer++;
      f.payloadToServer += len;
    } else {
      f.payloadToClient += len;
    }
    flows.set(client, f);
  }
  return flows;
}

interface Tcpdump {
  process: ChildProcess;
  stderr: () => string;
}

async function startTcpdump(file: string, filter: string): Promise<Tcpdump> {
  const tcpdump = spawn('tcpdump', ['-i', 'lo', '-B', '32768', '--immediate-mode', '-U', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  await new Promise<void>((resolve, reject) => {
    tcpdump.stderr!.on('data', (d) => {
      err += d;
      if (err.includes('listening on')) resolve();
    });
    tcpdump.on('exit', (code) => reject(new Error(`tcpdump exited ${code}: ${err}`)));
  });
  return { process: tcpdump, stderr: () => err };
}

/** Stops tcpdump; returns how many packets it says the kernel dropped (its reference is then incomplete). */
async function stopTcpdump(tcpdump: Tcpdump): Promise<number> {
  const exited = new Promise((resolve) => tcpdump.process.once('exit', resolve));
  await new Promise((resolve) => setTimeout(resolve, 500)); // let it read what the kernel still holds
  tcpdump.process.kill('SIGINT');
  await exited;
  return Number(/(\d+) packets? dropped by kernel/.exec(tcpdump.stderr())?.[1] ?? 0);
}

test('packets and TCP payload per flow equal tcpdump on lo; every packet names its pid', async () => {
  const reference = path.join(env.dir, 'lo.pcap');
  const ours = path.join(env.dir, 'ours.pcapng');
  // The reference must be complete: when tcpdump itself drops packets (a loaded machine), run again.
  let run;
  for (let attempt = 1; ; attempt++) {
    fs.rmSync(ours, { force: true });
    fs.rmSync(path.join(env.dir, 'c.jsonl'), { force: true });
    const tcpdump = await startTcpdump(reference, `port ${env.servers.port}`);
    run = await proctapRun(['-q', '--pcap', ours, '--', 'python3', NETLOAD, 'tree', '--out', path.join(env.dir, 'c.jsonl'), '--port', String(env.servers.port)]);
    const referenceDropped = await stopTcpdump(tcpdump);
    if (referenceDropped === 0) break;
    assert.ok(attempt < 5, `tcpdump dropped packets in ${attempt} runs: no complete reference`);
  }
  assert.equal(run.code, 0, run.stderr);
  const report = run.report!;
  assert.equal(report.capture?.dropped, 0);
  assert.equal(report.capture?.unowned, 0);

  const expected = tcpFlows(reference, env.servers.port);
  const got = tcpFlows(ours, env.servers.port);
  assert.equal(got.size, 3, 'three TCP flows (parent, v4 child, v6 child)');
  assert.deepEqual([...got.entries()].sort(), [...expected.entries()].sort());

  // every packet's comment names the pid that owns its socket, per the report's connections
  const pidByPort = new Map<number, number>();
  for (const c of report.connections) if (c.remotePort === env.servers.port) pidByPort.set(c.localPort, c.pid);
  const lines = tshark(['-r', ours, '-T', 'fields', '-e', 'frame.comment', '-e', 'tcp.srcport', '-e', 'tcp.dstport', '-e', 'udp.srcport', '-e', 'udp.dstport'])
    .split('\n')
    .filter(Boolean);
  assert.equal(lines.length, report.capture!.packets);
  for (const line of lines) {
    const [comment, ...ports] = line.split('\t');
    const numbers = ports.filter(Boolean).map(Number);
    const local = numbers.find((p) => p !== env.servers.port)!;
    assert.equal(comment, `pid ${pidByPort.get(local)} (python3)`, line);
  }
  // the same packet counts as the kernel's own per-process packet counters
  const totalPackets = report.processes.reduce((n, p) => n + p.packets.txPackets + p.packets.rxPackets, 0);
  assert.equal(report.capture!.packets, totalPackets);
});

test('classic pcap, --pcap-filter and --snaplen: tshark reads them, the filter and snaplen hold', async () => {
  const file = path.join(env.dir, 'udp.pcap');
  const run = await proctapRun(['-q', '--pcap', file, '--pcap-format', 'pcap', '--pcap-filter', 'udp', '--snaplen', '64', '--',
    'python3', NETLOAD, 'udp', '--out', path.join(env.dir, 'u.jsonl'), '--port', String(env.servers.port)]);
  assert.equal(run.code, 0, run.stderr);
  const out = tshark(['-r', file, '-T', 'fields', '-e', 'ip.proto', '-e', 'ipv6.nxt', '-e', 'frame.cap_len', '-e', 'frame.len']);
  const rows = out.split('\n').filter(Boolean).map((l) => l.split('\t'));
  assert.equal(rows.length, 18, '9 datagrams out, 9 back');
  for (const [v4proto, v6next, capLen, len] of rows) {
    assert.equal(v4proto || v6next, '17');
    assert.equal(Number(capLen), Math.min(64, Number(len)));
  }
  assert.ok(rows.some(([, , , len]) => Number(len) > 65000), 'the 65000-byte datagram has its original length');
  assert.match(spawnSync('capinfos', ['-t', file], { encoding: 'utf8' }).stdout, /nanosecond (lib)?pcap/);
});

test('an invalid filter is refused before the command starts', async () => {
  const marker = path.join(env.dir, 'started');
  const run = await proctapRun(['-q', '--pcap', path.join(env.dir, 'x.pcapng'), '--pcap-filter', 'tcp port nonsense', '--', 'touch', marker]);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /^proctap: invalid filter 'tcp port nonsense'/);
  assert.equal(fs.existsSync(marker), false, 'the command must not have run');
  assert.equal(fs.existsSync(path.join(env.dir, 'x.pcapng')), false, 'no capture file is left behind');
});

test('--pcap - streams packets while the command still runs', async () => {
  const script = `import socket, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"first", ("127.0.0.1", ${env.servers.port}))
time.sleep(2)
u.sendto(b"second", ("127.0.0.1", ${env.servers.port}))`;
  const started = Date.now();
  const child = spawn(PROCTAP, ['run', '-q', '--pcap', '-', '--', 'python3', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let firstPacketAt = 0;
  const chunks: Buffer[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    chunks.push(d);
    // an enhanced packet block (type 6) after the header blocks means a packet has arrived
    const all = Buffer.concat(chunks);
    for (let at = 0; !firstPacketAt && at + 8 <= all.length; ) {
      const type = all.readUInt32LE(at);
      const length = all.readUInt32LE(at + 4);
      if (type === 6) firstPacketAt = Date.now();
      if (length < 12) break;
      at += length;
    }
  });
  const code = await new Promise((resolve) => child.on('close', resolve));
  const endedAt = Date.now();
  assert.equal(code, 0);
  assert.ok(firstPacketAt > 0, 'no packet arrived');
  assert.ok(endedAt - firstPacketAt > 1000, `the first packet arrived only ${endedAt - firstPacketAt} ms before the end (started ${firstPacketAt - started} ms in)`);
  const file = path.join(env.dir, 'stream.pcapng');
  fs.writeFileSync(file, Buffer.concat(chunks));
  const payloads = tshark(['-r', file, '-Y', 'udp.dstport == ' + env.servers.port, '-T', 'fields', '-e', 'udp.length']).split('\n').filter(Boolean);
  assert.deepEqual(payloads, ['13', '14']);
});

test('the filter runs before packets reach JS: rejected ones are only counted', async () => {
  const file = path.join(env.dir, 'only-udp.pcapng');
  const run = await proctapRun(['-q', '--pcap', file, '--pcap-filter', 'udp', '--',
    'python3', NETLOAD, 'tree', '--out', path.join(env.dir, 'f.jsonl'), '--port', String(env.servers.port)]);
  assert.equal(run.code, 0, run.stderr);
  const capture = run.report!.capture!;
  const protos = tshark(['-r', file, '-T', 'fields', '-e', 'ip.proto']).split('\n').filter(Boolean);
  assert.equal(protos.length, capture.packets);
  assert.ok(protos.every((p) => p === '17'), protos.join(','));
  assert.equal(capture.packets, 8, 'the grandchild\'s 4 datagrams and their echoes');
  assert.ok(capture.filteredOut > 0, 'TCP packets were seen and rejected');
  const total = run.report!.processes.reduce((n, p) => n + p.packets.txPackets + p.packets.rxPackets, 0);
  assert.equal(capture.packets + capture.filteredOut, total, 'written + filtered out = every packet of the traced sockets');
});
