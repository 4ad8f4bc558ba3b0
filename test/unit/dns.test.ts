// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsFormatError, parseDnsMessage, readName, resolutions, udpDatagram } from '../../src/l7/dns-message';
import { DnsNameTable } from '../../src/model/names';
import { nameRemotes } from '../../src/report/names';
import { renderReport } from '../../src/render/table';
import { syntheticReport } from './synthreport';

// ------------------------------------------------------------ a small DNS message builder (test side)

/** Uncompressed name: labels, then 0. */
function name(n: string): number[] {
  const out: number[] = [];
  for (const label of n.split('.')) out.push(label.length, ...Buffer.from(label));
  return [...out, 0];
}
const u16 = (v: number) => [v >> 8, v & 0xff];
const u32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const pointer = (offset: number) => [0xc0 | (offset >> 8), offset & 0xff];

function header(opts: { id?: number; flags?: number; qd: number; an: number }): number[] {
  return [...u16(opts.id ?? 0x1234), ...u16(opts.flags ?? 0x8180), ...u16(opts.qd), ...u16(opts.an), 0, 0, 0, 0];
}
function rr(owner: number[], type: number, ttl: number, rdata: number[]): number[] {
  return [...owner, ...u16(type), ...u16(1), ...u32(ttl), ...u16(rdata.length), ...rdata];
}

/**
 * svc.proctap.test A? answered with a CNAME chain, compressed as real servers do:
 *   svc.proctap.test  CNAME  real.svc.proctap.test   (owner = pointer to the question)
 *   real.svc.proctap.test  CNAME  edge.proctap.test  (owner = pointer to the CNAME target)
 *   edge.proctap.test  A  127.0.0.1
 *   edge.proctap.test  AAAA ::1
 */
function chainResponse(): Uint8Array {
  const bytes: number[] = header({ qd: 1, an: 4 });
  const question = bytes.length; // 12
  bytes.push(...name('svc.proctap.test'), ...u16(1), ...u16(1));
  const proctapTest = question + 4; // "proctap.test" inside the question
  // answer 1: owner -> question; rdata "real" + pointer to the question name
  const a1 = rr(pointer(question), 5, 300, []);
  const a1RdataAt = bytes.length + a1.length;
  const rdata1 = [4, ...Buffer.from('real'), ...pointer(question)];
  bytes.push(...rr(pointer(question), 5, 300, rdata1));
  // answer 2: owner -> a1's rdata; rdata "edge" + pointer to "proctap.test"
  const edgeAt = bytes.length + 2 + 10;
  bytes.push(...rr(pointer(a1RdataAt), 5, 60, [4, ...Buffer.from('edge'), ...pointer(proctapTest)]));
  bytes.push(...rr(pointer(edgeAt), 1, 30, [127, 0, 0, 1]));
  bytes.push(...rr(pointer(edgeAt), 28, 30, [...new Array(15).fill(0), 1]));
  return Uint8Array.from(bytes);
}

function ipv4Udp(payload: Uint8Array, opts: { src?: number[]; sport?: number; cut?: number } = {}): Uint8Array {
  const udpLength = 8 + payload.length;
  const ip = [0x45, 0, ...u16(20 + udpLength), 0, 0, 0, 0, 64, 17, 0, 0, ...(opts.src ?? [127, 83, 84, 53]), 127, 0, 0, 1];
  const udp = [...u16(opts.sport ?? 53), ...u16(40000), ...u16(udpLength), 0, 0];
  const all = Uint8Array.from([...ip, ...udp, ...payload]);
  return opts.cut === undefined ? all : all.subarray(0, opts.cut);
}

function ipv6Udp(payload: Uint8Array): Uint8Array {
  const udpLength = 8 + payload.length;
  const src = [0xfd, 0, ...new Array(13).fill(0), 0x53];
  const ip = [0x60, 0, 0, 0, ...u16(udpLength), 17, 64, ...src, ...new Array(15).fill(0), 1];
  return Uint8Array.from([...ip, ...u16(53), ...u16(40000), ...u16(udpLength), 0, 0, ...payload]);
}

// ------------------------------------------------------------ wire format

test('a compressed CNAME chain resolves to the asked name, with its CNAMEs, the A and the AAAA address', () => {
  const msg = parseDnsMessage(chainResponse());
  assert.deepEqual([msg.id, msg.response, msg.rcode, msg.truncated, msg.incomplete], [0x1234, true, 0, false, false]);
  assert.deepEqual(msg.questions, [{ name: 'svc.proctap.test', type: 1 }]);
  assert.deepEqual(
    msg.answers.map((a) => [a.name, a.type, a.data]),
    [
      ['svc.proctap.test', 5, 'real.svc.proctap.test'],
      ['real.svc.proctap.test', 5, 'edge.proctap.test'],
      ['edge.proctap.test', 1, '127.0.0.1'],
      ['edge.proctap.test', 28, '::1'],
    ],
  );
  assert.deepEqual(resolutions(msg), [
    { name: 'svc.proctap.test', cnames: ['real.svc.proctap.test', 'edge.proctap.test'], addresses: ['127.0.0.1', '::1'], ttl: 30 },
  ]);
});

test('names: upper case folds to lower, odd bytes are escaped, the root is ""', () => {
  const msg = Uint8Array.from([3, 0x57, 0x57, 0x57, 3, 0x61, 0x2e, 0x00, 0]);
  assert.deepEqual(readName(msg, 0), { name: 'www.a\\046\\000', next: 9 });
  assert.deepEqual(readName(Uint8Array.from([0]), 0), { name: '', next: 1 });
});

test('compression pointer loops are refused: to itself, forwards, and a cycle through earlier labels', () => {
  // pointer to itself
  assert.throws(() => readName(Uint8Array.from([0xc0, 0]), 0), DnsFormatError);
  // a pointer forwards (to a later name) is refused even where it would end
  assert.throws(() => readName(Uint8Array.from([0xc0, 2, 1, 0x61, 0]), 0), DnsFormatError);
  // "a" then a pointer back to the start of the very label run that led to it: a -> a -> a ...
  assert.throws(() => readName(Uint8Array.from([1, 0x61, 0xc0, 0]), 0), /loop/);
  // a cycle between two names: 0: "a" + ptr 4; 4: "b" + ptr 0 (read from 4)
  assert.throws(() => readName(Uint8Array.from([1, 0x61, 0xc0, 4, 1, 0x62, 0xc0, 0]), 4), /loop/);
  // a whole message whose answer owner loops
  const bytes = [...header({ qd: 0, an: 1 }), ...rr(pointer(12), 1, 1, [1, 2, 3, 4])];
  assert.throws(() => parseDnsMessage(Uint8Array.from(bytes)), /loop/);
  // legitimate: a pointer to an earlier name that itself ends in a pointer to an even earlier one
  const ok = Uint8Array.from([1, 0x62, 0, 1, 0x61, 0xc0, 0, 0xc0, 3]);
  assert.equal(readName(ok, 7).name, 'a.b');
});

test('names longer than 255 bytes, reserved label types and short headers are format errors', () => {
  const long: number[] = [];
  for (let i = 0; i < 5; i++) long.push(63, ...new Array(63).fill(0x61));
  assert.throws(() => readName(Uint8Array.from([...long, 0]), 0), /255/);
  assert.throws(() => readName(Uint8Array.from([0x80, 0]), 0), /label type/);
  assert.throws(() => parseDnsMessage(new Uint8Array(11)), /header/);
  assert.throws(() => parseDnsMessage(Uint8Array.from([...header({ qd: 1, an: 0 }), 3, 0x61])), /past the end/);
  // an A record whose data is not 4 bytes
  const bad = [...header({ qd: 0, an: 1 }), ...rr(name('x.test'), 1, 1, [1, 2, 3])];
  assert.throws(() => parseDnsMessage(Uint8Array.from(bad)), /A record with 3 bytes/);
});

test('a response cut short keeps the answers before the cut and says it is incomplete', () => {
  const full = chainResponse();
  for (let cut = full.length - 1; cut > 12 + 22; cut--) {
    const msg = parseDnsMessage(full.subarray(0, cut));
    assert.equal(msg.incomplete, true, `cut at ${cut}`);
    assert.ok(msg.answers.length < 4);
    for (const a of msg.answers) assert.ok(a.data !== undefined);
  }
  const msg = parseDnsMessage(full.subarray(0, full.length - 16));
  assert.deepEqual(resolutions(msg), [
    { name: 'svc.proctap.test', cnames: ['real.svc.proctap.test', 'edge.proctap.test'], addresses: ['127.0.0.1'], ttl: 30 },
  ]);
});

test('a CNAME cycle in the answers does not hang and invents nothing', () => {
  const bytes = [
    ...header({ qd: 0, an: 3 }),
    ...rr(name('a.test'), 5, 10, name('b.test')),
    ...rr(name('b.test'), 5, 10, name('a.test')),
    ...rr(name('b.test'), 1, 10, [10, 0, 0, 1]),
  ];
  const r = resolutions(parseDnsMessage(Uint8Array.from(bytes)));
  assert.equal(r.length, 1);
  assert.deepEqual(r[0].addresses, ['10.0.0.1']);
  assert.ok(['a.test', 'b.test'].includes(r[0].name));
});

test('other record types are skipped; NS/additional sections are not read', () => {
  const bytes = [
    ...header({ qd: 1, an: 2 }),
    ...name('x.test'), ...u16(1), ...u16(1),
    ...rr(pointer(12), 16, 5, [3, 0x61, 0x62, 0x63]), // TXT
    ...rr(pointer(12), 1, 5, [192, 0, 2, 7]),
  ];
  const msg = parseDnsMessage(Uint8Array.from(bytes));
  assert.deepEqual(msg.answers.map((a) => [a.type, a.data]), [[16, undefined], [1, '192.0.2.7']]);
  assert.deepEqual(resolutions(msg).map((r) => [r.name, r.addresses]), [['x.test', ['192.0.2.7']]]);
});

test('udpDatagram: IPv4 and IPv6 headers are stripped; cut packets say so; TCP and junk give null', () => {
  const payload = chainResponse();
  const v4 = udpDatagram(ipv4Udp(payload))!;
  assert.deepEqual([v4.family, v4.sourceAddr, v4.sourcePort, v4.cut, v4.payload.length], [2, '127.83.84.53', 53, false, payload.length]);
  const v6 = udpDatagram(ipv6Udp(payload))!;
  assert.deepEqual([v6.family, v6.sourceAddr, v6.sourcePort, v6.payload.length], [10, 'fd00::53', 53, payload.length]);
  const cut = udpDatagram(ipv4Udp(payload, { cut: 60 }))!;
  assert.deepEqual([cut.cut, cut.payload.length], [true, 60 - 28]);
  const tcp = ipv4Udp(payload);
  tcp[9] = 6;
  assert.equal(udpDatagram(tcp), null);
  assert.equal(udpDatagram(Uint8Array.from([0x45, 0, 0])), null);
  assert.equal(udpDatagram(new Uint8Array(0)), null);
});

// ------------------------------------------------------------ names in the report

test('the name table: the name valid when a connection started wins; malformed and cut responses are counted', () => {
  const table = new DnsNameTable();
  table.onResponse(ipv4Udp(chainResponse()), 42, 1_000_000);
  const other = [...header({ qd: 0, an: 1 }), ...rr(name('other.test'), 1, 5, [127, 0, 0, 1])];
  table.onResponse(ipv4Udp(Uint8Array.from(other)), 43, 5_000_000);
  table.onResponse(ipv4Udp(Uint8Array.from([...header({ qd: 0, an: 1 }), ...rr(pointer(12), 1, 5, [1, 1, 1, 1])])), 42, 6_000_000);
  table.onResponse(ipv4Udp(chainResponse(), { cut: 100 }), 42, 7_000_000);
  assert.deepEqual([table.responses, table.malformed, table.cut], [3, 1, 1]);
  assert.equal(table.nameOf('127.0.0.1', 2_000_000), 'svc.proctap.test');
  assert.equal(table.nameOf('127.0.0.1', 5_000_000), 'other.test');
  assert.equal(table.nameOf('127.0.0.1', 0), 'svc.proctap.test');
  assert.equal(table.nameOf('::1'), 'svc.proctap.test');
  assert.equal(table.nameOf('10.9.9.9'), undefined);
  // NXDOMAIN and queries teach nothing
  const nx = [...header({ qd: 0, an: 1, flags: 0x8183 }), ...rr(name('nx.test'), 1, 5, [10, 9, 9, 9])];
  const query = [...header({ qd: 0, an: 1, flags: 0x0100 }), ...rr(name('q.test'), 1, 5, [10, 9, 9, 9])];
  table.onResponse(ipv4Udp(Uint8Array.from(nx)), 42, 8_000_000);
  table.onResponse(ipv4Udp(Uint8Array.from(query)), 42, 8_000_000);
  assert.equal(table.nameOf('10.9.9.9'), undefined);
});

test('remoteName goes beside the address in JSON and in the terminal, with a DNS names section', () => {
  const report = syntheticReport();
  const table = new DnsNameTable();
  const origin = 1_000_000_000;
  const remote = report.endpoints[0];
  const [a, b, c, d] = remote.remoteAddr.split('.').map(Number);
  const answer = [...header({ qd: 1, an: 1 }), ...name('svc.proctap.test'), ...u16(1), ...u16(1), ...rr(pointer(12), 1, 30, [a, b, c, d])];
  table.onResponse(ipv4Udp(Uint8Array.from(answer)), 43, origin + 1e6);
  report.dns = nameRemotes(table, report, origin);
  assert.equal(report.endpoints[0].remoteName, 'svc.proctap.test');
  assert.ok(report.connections.some((x) => x.remoteAddr === remote.remoteAddr && x.remoteName === 'svc.proctap.test'));
  assert.deepEqual(report.dns, {
    responses: 1,
    malformed: 0,
    cut: 0,
    names: [{ name: 'svc.proctap.test', cnames: [], addresses: [remote.remoteAddr], pids: [43], servers: ['127.83.84.53:53'], firstOffsetMs: 1, ttl: 30 }],
  });
  const text = renderReport(report, { color: false, width: 160 });
  assert.ok(text.includes(`${remote.remoteAddr}:${remote.remotePort} (svc.proctap.test)`), text);
  assert.match(text, /DNS names \(1\)\n• svc\.proctap\.test → /);
  // without any DNS response the report has no dns section at all (older readers see nothing new)
  const plain = syntheticReport();
  const none = nameRemotes(new DnsNameTable(), plain, origin);
  if (none) plain.dns = none;
  assert.equal(plain.dns, undefined);
  assert.ok(!renderReport(plain, { color: false }).includes('DNS names'));
});
