// SPDX-License-Identifier: MIT
// Remote names end to end: a DNS server of the test's own (untraced, on a loopback address) answers
// svc.proctap.test through a CNAME with 127.0.0.1 and ::1; the traced workload asks it itself (a real UDP
// query), then connects to the answered addresses. The report names them, in JSON and in the terminal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NETLOAD, proctapRun, loopbackFixture } from './harness';

const env = loopbackFixture();
/** A loopback address nothing else uses (127.0.0.0/8 is all on lo), port 53. */
const DNS_ADDR = '127.83.84.53';
const NAME = 'svc.proctap.test';
let server: dgram.Socket;
const queries: Array<{ name: string; type: number }> = [];

/** The answer a recursive resolver would give: NAME CNAME real.NAME, real.NAME A/AAAA, names compressed. */
function answer(query: Buffer): Buffer {
  let at = 12;
  const labels: string[] = [];
  while (query[at] !== 0) {
    labels.push(query.subarray(at + 1, at + 1 + query[at]).toString());
    at += 1 + query[at];
  }
  const qtype = query.readUInt16BE(at + 1);
  const question = query.subarray(12, at + 5);
  queries.push({ name: labels.join('.'), type: qtype });
  const known = labels.join('.').toLowerCase() === NAME && (qtype === 1 || qtype === 28);
  const head = Buffer.alloc(12);
  head.writeUInt16BE(query.readUInt16BE(0), 0);
  head.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(known ? 2 : 0, 6);
  if (!known) return Buffer.concat([head, question]);
  const rr = (owner: number, type: number, rdata: Buffer) => {
    const b = Buffer.alloc(12);
    b.writeUInt16BE(0xc000 | owner, 0);
    b.writeUInt16BE(type, 2);
    b.writeUInt16BE(1, 4);
    b.writeUInt32BE(60, 6);
    b.writeUInt16BE(rdata.length, 10);
    return Buffer.concat([b, rdata]);
  };
  const cnameRdata = Buffer.from([4, ...Buffer.from('real'), 0xc0, 12]); // "real" + pointer to the question name
  const cname = rr(12, 5, cnameRdata);
  const targetAt = 12 + question.length + 12; // the CNAME's rdata: real.svc.proctap.test
  const address = qtype === 1 ? Buffer.from([127, 0, 0, 1]) : Buffer.from([...new Array(15).fill(0), 1]);
  return Buffer.concat([head, question, cname, rr(targetAt, qtype, address)]);
}

before(async () => {
  server = dgram.createSocket('udp4');
  server.on('message', (msg, rinfo) => server.send(answer(msg), rinfo.port, rinfo.address));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.bind(53, DNS_ADDR, () => resolve());
  });
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
});

async function resolveAndConnect(extra: string[]) {
  const out = path.join(env.dir, `resolve-${extra.length}.jsonl`);
  const run = await proctapRun(['--no-color', ...extra, '--',
    'python3', NETLOAD, 'resolve', '--out', out, '--port', String(env.servers.port), '--dns', DNS_ADDR, '--name', NAME]);
  assert.equal(run.code, 0, run.stderr);
  const counts = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  fs.rmSync(out);
  return { run, report: run.report!, me: counts[0] };
}

test('names from the DNS answers a traced process received go beside the addresses it then connected to', async () => {
  queries.length = 0;
  const { run, report, me } = await resolveAndConnect([]);
  assert.deepEqual(queries, [{ name: NAME, type: 1 }, { name: NAME, type: 28 }], 'the workload asked, once per type');
  const proc = report.processes.find((p) => p.pid === me.pid)!;
  assert.deepEqual([proc.tcp, proc.udp], [me.tcp, me.udp], 'byte totals stay exact');

  assert.deepEqual(report.dns, {
    responses: 2,
    malformed: 0,
    cut: 0,
    names: [{
      name: NAME,
      cnames: [`real.${NAME}`],
      addresses: ['127.0.0.1', '::1'],
      pids: [me.pid],
      servers: [`${DNS_ADDR}:53`],
      firstOffsetMs: report.dns!.names[0].firstOffsetMs,
      ttl: 60,
    }],
  });
  const port = env.servers.port;
  for (const addr of ['127.0.0.1', '::1']) {
    const endpoint = report.endpoints.find((e) => e.proto === 'tcp' && e.remoteAddr === addr && e.remotePort === port)!;
    assert.equal(endpoint.remoteName, NAME, `endpoint ${addr}`);
    assert.deepEqual([endpoint.txBytes, endpoint.rxBytes], [1000, 1000]);
    const conns = report.connections.filter((c) => c.pid === me.pid && c.remoteAddr === addr && c.remotePort === port);
    assert.equal(conns.length, 1);
    assert.equal(conns[0].remoteName, NAME);
  }
  // the DNS server itself has no name (nobody resolved it), and nothing else got one
  const dnsEndpoint = report.endpoints.find((e) => e.remoteAddr === DNS_ADDR)!;
  assert.equal(dnsEndpoint.remotePort, 53);
  assert.equal(dnsEndpoint.remoteName, undefined);
  assert.ok(report.endpoints.filter((e) => e.remoteName !== undefined).every((e) => e.remotePort === port));

  const flat = run.stderr.replace(/\s+/g, ' ');
  assert.ok(flat.includes(`127.0.0.1:${port} (${NAME})`), run.stderr);
  assert.ok(flat.includes(`[::1]:${port} (${NAME})`), run.stderr);
  assert.ok(flat.includes(`DNS names (1) • ${NAME} → 127.0.0.1, ::1 via real.${NAME}`), run.stderr);
});

test('--no-dns-names: the same workload, no names and no dns section', async () => {
  const { report, me } = await resolveAndConnect(['--no-dns-names']);
  const proc = report.processes.find((p) => p.pid === me.pid)!;
  assert.deepEqual([proc.tcp, proc.udp], [me.tcp, me.udp]);
  assert.equal(report.dns, undefined);
  assert.ok(report.endpoints.every((e) => e.remoteName === undefined));
  assert.ok(report.connections.every((c) => c.remoteName === undefined));
});
