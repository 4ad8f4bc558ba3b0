// SPDX-License-Identifier: MIT
// The L7 view of DNS against a real server (issue 15): dnsmasq in a network namespace the test made
// (a veth pair to the host), answering a few .test names and NXDOMAIN for the rest; dig traced with
// `--l7` asks A and AAAA questions over UDP (one socket each) and over one TCP connection (+keepopen).
// Per question (type, name) and answer code, the report's rows equal what dnsmasq logged
// (--log-queries=extra: each query and its reply, UDP from the main process, TCP from a forked child).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { proctapRun, tempDir } from './harness';
import { alive, bump, l7Of, machineState, ndjson, startDnsmasq } from './l7-servers';

const RECORDS = { 'name.test': '10.1.2.3', 'six.test': 'fd00::5', 'both.test': '10.1.2.4' };

test('dig over UDP and TCP to dnsmasq in a namespace: per name, type and answer code the L7 rows equal dnsmasq\'s query log', async (t) => {
  const before = machineState();
  const dns = await startDnsmasq(RECORDS, 'test');
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  const serverPids = new Set([dns.pid]);
  try {
    // UDP: each line one query (dig opens a socket per query); names repeat so counts are > 1
    const udp = [
      ...Array.from({ length: 5 }, () => 'name.test A'),
      'name.test AAAA', 'six.test AAAA', 'six.test AAAA', 'both.test A', 'both.test AAAA',
      ...Array.from({ length: 4 }, (_, i) => `missing${i % 2}.test A`),
      'missing0.test AAAA', 'deep.missing.test A',
    ];
    const batch = path.join(dir, 'queries.txt');
    fs.writeFileSync(batch, udp.join('\n') + '\n', { mode: 0o644 });
    const tcp = ['name.test', 'A', 'nxtcp.test', 'A', 'six.test', 'AAAA', 'name.test', 'A'];
    const dig = `dig @${dns.address} +tries=1 +time=5`;
    const script = `${dig} -f ${batch} > /dev/null && ${dig} +tcp +keepopen ${tcp.join(' ')} > /dev/null`;
    const events = path.join(dir, 'events.ndjson');
    const run = await proctapRun(['-q', '--l7', '--events', events, '--', 'sh', '-c', script]);
    assert.equal(run.code, 0, `proctap run failed: ${run.stderr}`);
    assert.ok(run.report, 'no JSON report');
    const { records, notes } = l7Of(run.report);
    t.diagnostic(`l7 records ${JSON.stringify(records)}; notes: ${notes.join(' | ')}`);
    assert.equal(records.lost, 0, 'no data record lost in the kernel');

    const logged = dns.queries();
    for (const q of logged) serverPids.add(q.pid);
    assert.equal(logged.length, udp.length + tcp.length / 2, `dnsmasq logged every query: ${JSON.stringify(logged)}`);
    assert.ok(logged.every((q) => q.rcode !== ''), 'dnsmasq logged a reply to every query');
    const server = new Map<string, number>();
    for (const q of logged) bump(server, `${q.type} ${q.name} ${q.rcode}`);

    const rows = l7Of(run.report).rows.filter((r) => r.protocol === 'dns');
    const decoded = new Map<string, number>();
    for (const r of rows) {
      assert.equal(r.endpoint, `${dns.address}:53`, `endpoint of ${r.operation}`);
      assert.equal(r.role, 'client');
      assert.equal(r.partial, 0, `partial exchanges in ${r.operation} ${r.status}`);
      assert.equal(r.errors, r.status === 'NOERROR' ? 0 : r.count, `errors of ${r.operation} ${r.status}`);
      assert.equal(r.latencyFirst?.count, r.count, `latencies of ${r.operation}`);
      bump(decoded, `${r.operation} ${r.status}`, r.count);
    }
    t.diagnostic(`dnsmasq log: ${JSON.stringify([...server].sort())}`);
    t.diagnostic(`report.l7: ${JSON.stringify([...decoded].sort())}`);
    assert.deepEqual([...decoded].sort(), [...server].sort(), 'per question and answer code: L7 rows == dnsmasq\'s log');
    assert.ok((server.get('A name.test NOERROR') ?? 0) >= 7 && (server.get('A missing0.test NXDOMAIN') ?? 0) >= 2, 'the log has repeated questions');

    // over TCP: the questions dnsmasq's TCP child logged are the exchange events on TCP
    const tcpLogged = logged.filter((q) => q.pid !== dns.pid).map((q) => `${q.type} ${q.name} ${q.rcode}`);
    assert.equal(tcpLogged.length, tcp.length / 2, 'dnsmasq forked a child for the TCP connection');
    const exchanges = ndjson(events).filter((e) => e.type === 'exchange' && e.protocol === 'dns');
    assert.equal(exchanges.length, logged.length, 'one exchange event per query');
    // each UDP socket dig opened, and its TCP connection, was decoded as DNS
    const { connections } = l7Of(run.report);
    t.diagnostic(`l7 connections ${JSON.stringify(connections)}`);
    assert.equal(new Set(logged.map((q) => q.client)).size, udp.length + 1, 'dig used a port per UDP query and one for TCP');
    assert.deepEqual([connections.decoded, connections.unknown, connections.undecodable], [udp.length + 1, 0, 0], 'connections decoded, unknown, undecodable');
    const onTcp = exchanges.filter((e) => e.proto === 'tcp').map((e) => `${e.operation as string} ${e.status as string}`);
    assert.deepEqual(onTcp.sort(), tcpLogged.sort(), 'exchange events on TCP == queries dnsmasq answered on TCP');
  } finally {
    await dns.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  for (const pid of serverPids) assert.equal(alive(pid), false, `dnsmasq process ${pid} stopped`);
  assert.deepEqual(machineState(), before, 'links, namespaces, nft, cgroups and BPF programs as before');
});
