// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { processTree, renderReport } from '../../src/render/table';
import { emptyReport, syntheticReport } from './synthreport';
import type { ConnectionReport, LostCounters, ProcessReport, Report, Traffic } from '../../src/schema/report';

const MiB = 1024 * 1024;

function traffic(txBytes = 0, rxBytes = 0, txCalls = 0, rxCalls = 0): Traffic {
  return { txBytes, rxBytes, txCalls, rxCalls };
}

function proc(pid: number, ppid: number, comm: string, argv: string[], start: number | null, extra: Partial<ProcessReport> = {}): ProcessReport {
  return {
    pid, ppid, comm, argv,
    startOffsetMs: start,
    exitOffsetMs: 900,
    exitCode: 0,
    exitSignal: null,
    tcp: traffic(),
    udp: traffic(),
    packets: { txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 },
    ...extra,
  };
}

function conn(pid: number, start: number, extra: Partial<ConnectionReport> = {}): ConnectionReport {
  return {
    pid, proto: 'tcp', role: 'active',
    localAddr: '10.0.0.2', localPort: 40000 + start,
    remoteAddr: '93.184.216.34', remotePort: 80,
    startOffsetMs: start, durationMs: 120,
    txBytes: 100, rxBytes: 200, txCalls: 1, rxCalls: 2,
    outcome: 'closed', error: null,
    ...extra,
  };
}

function noLoss(): LostCounters {
  return { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 };
}

/** sh (1000) → bash (1001) → nc (1003); sh → dig (1002). 1001 started first, 1002 later. */
function makeReport(over: Partial<Report> = {}): Report {
  const big = Math.round(12.3 * MiB);
  return {
    schemaVersion: 1,
    tool: { name: 'proctap', version: '0.1.0' },
    mode: 'run',
    backend: 'fentry',
    command: ['sh', '-c', 'curl -s http://example.com/ & dig example.com'],
    exitCode: 0,
    startedAt: '2025-01-02T03:04:05.678Z',
    durationMs: 1250,
    lost: noLoss(),
    unattributedPackets: { tx: 0, rx: 0 },
    totals: {
      tcp: traffic(2200, big + 5000, 5, 40),
      udp: traffic(60, 180, 2, 2),
      packets: { txPackets: 300, rxPackets: 9000, txBytes: 20000, rxBytes: 13 * MiB },
    },
    processes: [
      // Deliberately out of order: the tree must order by start and nest by ppid.
      proc(1003, 1001, 'nc', ['nc', '-z', '::1', '8080'], 40, { tcp: traffic(100, 0, 1, 0) }),
      proc(1002, 1000, 'dig', ['/usr/bin/dig', 'example.com'], 30, { udp: traffic(60, 180, 2, 2) }),
      proc(1000, 999, 'sh', ['sh', '-c', 'curl -s http://example.com/ & dig example.com'], 0),
      proc(1001, 1000, 'bash', ['bash', '-c', 'curl -s http://example.com/'], 12, {
        exitCode: 143,
        exitSignal: 15,
        tcp: traffic(2100, big + 5000, 4, 40),
        packets: { txPackets: 300, rxPackets: 9000, txBytes: 20000, rxBytes: 13 * MiB },
      }),
    ],
    endpoints: [
      { proto: 'udp', remoteAddr: '8.8.8.8', remotePort: 53, txBytes: 60, rxBytes: 180, txCalls: 2, rxCalls: 2, connections: 1, pids: [1002] },
      { proto: 'tcp', remoteAddr: '2001:db8::1', remotePort: 443, txBytes: 2000, rxBytes: 5000, txCalls: 2, rxCalls: 5, connections: 1, pids: [1001] },
      { proto: 'tcp', remoteAddr: '93.184.216.34', remotePort: 80, txBytes: 100, rxBytes: big, txCalls: 2, rxCalls: 35, connections: 1, pids: [1001] },
      { proto: 'tcp', remoteAddr: '::1', remotePort: 8080, txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0, connections: 1, pids: [1003] },
      { proto: 'udp', remoteAddr: '*', remotePort: 0, txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 1, connections: 1, pids: [1002] },
    ],
    connections: [
      conn(1001, 15, { rxBytes: big, txCalls: 2, rxCalls: 35 }),
      conn(1001, 20, { localAddr: '2001:db8::2', localPort: 51000, remoteAddr: '2001:db8::1', remotePort: 443, txBytes: 2000, rxBytes: 5000 }),
      conn(1003, 41, { localAddr: '::1', localPort: 52000, remoteAddr: '::1', remotePort: 8080, txBytes: 0, rxBytes: 0, durationMs: 0.2, outcome: 'refused', error: 'ECONNREFUSED' }),
      conn(1002, 31, { proto: 'udp', role: 'udp', localAddr: '*', localPort: 45000, remoteAddr: '8.8.8.8', remotePort: 53, txBytes: 60, rxBytes: 180, durationMs: null, outcome: 'open' }),
    ],
    notes: ['kprobe fallback not needed; fentry attached'],
    ...over,
  };
}

const plain = (r: Report, o: { width?: number; maxRows?: number; allProcesses?: boolean } = {}) => renderReport(r, { color: false, ...o });
const lines = (s: string) => s.split('\n');
/** A table row and its wrapped continuation lines (those starting with a blank). */
const block = (rows: string[], first: (l: string) => boolean) => {
  const i = rows.findIndex(first);
  assert.ok(i >= 0, 'row missing');
  let j = i + 1;
  while (j < rows.length && /^\s/.test(rows[j])) j++;
  return rows.slice(i, j);
};
const section = (text: string, title: string) => {
  const all = lines(text);
  const start = all.findIndex((l) => l.startsWith(title));
  assert.ok(start >= 0, `section ${title} missing`);
  const end = all.findIndex((l, i) => i > start && l === '');
  return all.slice(start, end < 0 ? undefined : end);
};

test('every pid appears in the process table, with its command', () => {
  const procs = section(plain(makeReport()), 'Processes');
  for (const [pid, cmd] of [[1000, 'sh -c'], [1001, 'bash -c'], [1002, 'dig example.com'], [1003, 'nc -z ::1 8080']] as const) {
    const row = procs.find((l) => new RegExp(`(^|─)${pid}\\b`).test(l));
    assert.ok(row, `pid ${pid} missing`);
    assert.ok(row.includes(cmd), `pid ${pid} row lacks ${cmd}: ${row}`);
  }
});

test('tree: children under their parent in start order, grandchild nested deeper', () => {
  const procs = section(plain(makeReport()), 'Processes');
  const at = (pid: number) => procs.findIndex((l) => new RegExp(`(^|─)${pid}\\b`).test(l));
  const row = (pid: number) => procs[at(pid)];
  assert.match(row(1000), /^1000 /); // ppid 999 is not in the report: a root, no prefix
  assert.match(row(1001), /^├─1001 /);
  assert.match(row(1003), /^│ └─1003 /); // under 1001, which has a sibling after it
  assert.match(row(1002), /^└─1002 /);
  assert.ok(at(1000) < at(1001) && at(1001) < at(1003) && at(1003) < at(1002));
});

test('processTree: roots, ordering, and a ppid cycle is still shown', () => {
  const ps = makeReport().processes;
  assert.deepEqual(processTree(ps).map((e) => `${e.prefix}${e.proc.pid}`), ['1000', '├─1001', '│ └─1003', '└─1002']);
  const cycle = [proc(1, 2, 'a', [], 0), proc(2, 1, 'b', [], 1)];
  assert.deepEqual(processTree(cycle).map((e) => e.proc.pid).sort(), [1, 2]);
  const attach = [proc(7, 1, 'x', [], null), proc(8, 7, 'y', [], 5)];
  assert.deepEqual(processTree(attach).map((e) => `${e.prefix}${e.proc.pid}`), ['7', '└─8']);
});

test('byte figures are formatted, never raw', () => {
  const text = plain(makeReport());
  const big = String(Math.round(12.3 * MiB));
  assert.ok(!text.includes(big), 'raw byte count leaked');
  const ep = section(text, 'Remote endpoints').find((l) => l.includes('93.184.216.34:80'));
  assert.ok(ep?.includes('12.3 MiB'), ep);
  const p1001 = section(text, 'Processes').find((l) => l.includes('1001'));
  assert.ok(p1001?.includes('2.1 KiB/12.3 MiB'), p1001);
  assert.ok(p1001?.includes('SIGTERM'), p1001);
  assert.ok(text.includes('SIGTERM'));
  assert.match(text, /^TCP .*tx 2\.1 KiB in 5 calls .*rx 12\.3 MiB in 40 calls/m);
  assert.match(text, /^UDP .*tx 60 B in 2 calls/m);
});

test('the lost line appears iff something was lost, listing every counter', () => {
  const clean = plain(makeReport());
  assert.match(clean, /nothing lost/);
  assert.doesNotMatch(clean, /LOST/);

  const lossy: Array<[Partial<Report>, RegExp]> = [
    [{ lost: { ...noLoss(), records: 12, recordsByKind: { exec: 10, tcp_state: 2 } } }, /12 ring-buffer records.*exec 10.*tcp_state 2/],
    [{ lost: { ...noLoss(), flowTableFullCalls: 3, flowTableFullBytes: 4096 } }, /3 send\/recv calls \(4\.0 KiB\).*flow table full/],
    [{ lost: { ...noLoss(), tracedTableFull: 1 } }, /1 child process not followed/],
    [{ lost: { ...noLoss(), procConnectorOverflows: 2 } }, /2 proc connector overflows/],
    [{ unattributedPackets: { tx: 5, rx: 7 } }, /unattributed packets tx 5 \/ rx 7/],
    [{ unattributedPackets: { tx: 0, rx: 7 } }, /unattributed packets tx 0 \/ rx 7/],
    [{ lost: { ...noLoss(), recordsByKind: { exec: 4 } } }, /4 exec records dropped/],
  ];
  for (const [over, re] of lossy) {
    const text = plain(makeReport(over));
    assert.match(text, /LOST/);
    assert.match(text, re);
    assert.doesNotMatch(text, /nothing lost/);
  }
  const all = plain(makeReport({
    lost: { records: 1, recordsByKind: { exec: 1 }, flowTableFullCalls: 2, flowTableFullBytes: 3, tracedTableFull: 4, procConnectorOverflows: 5 },
    unattributedPackets: { tx: 6, rx: 0 },
  }));
  for (const re of [/1 ring-buffer/, /2 send\/recv/, /4 child/, /5 proc connector/, /unattributed packets tx 6/]) assert.match(all, re);
});

test('no ANSI escapes without color; cyan heads and a red lost line with it', () => {
  const lossy = makeReport({ lost: { ...noLoss(), tracedTableFull: 1 } });
  assert.doesNotMatch(plain(lossy), /\x1b/);
  const colored = renderReport(lossy, { color: true });
  assert.match(colored, /\x1b\[36mPID/);
  const lostLine = lines(colored).find((l) => l.includes('LOST'));
  assert.match(lostLine ?? '', /\x1b\[1;31m/);
});

test('connections: sorted by start, refused outcome with its error, IPv6 in brackets', () => {
  const text = plain(makeReport());
  const conns = section(text, 'Connections');
  const rows = conns.slice(3).filter((l) => /^\d/.test(l));
  assert.deepEqual(rows.map((l) => l.split(/\s+/)[0]), ['1001', '1001', '1002', '1003']);
  const refused = block(conns, (l) => l.startsWith('1003'));
  assert.match(refused[0], /\[::1\]:52000 → \[::1\]:8080 .* refused/);
  assert.match(refused.join('\n'), /\(ECONNREFUSED\)/);
  // A wrapped "local →" / "remote" keeps each IPv6 address whole and bracketed.
  const v6 = block(conns, (l) => l.includes('[2001:db8::2]:51000'));
  assert.match(v6[0], /\[2001:db8::2\]:51000 →/);
  assert.ok(v6.join('\n').includes('[2001:db8::1]:443'), v6.join('\n'));
  assert.ok(section(text, 'Remote endpoints').some((l) => l.includes('[2001:db8::1]:443')));
  assert.ok(!/[^[]2001:db8::1\]?:443/.test(text.replace(/\[2001:db8::1\]:443/g, '')), 'unbracketed IPv6');
});

test('remote endpoints are sorted by total bytes, "*" for an unknown UDP peer', () => {
  const eps = section(plain(makeReport()), 'Remote endpoints').slice(3);
  const order = ['93.184.216.34:80', '[2001:db8::1]:443', '8.8.8.8:53'];
  const idx = order.map((e) => eps.findIndex((l) => l.includes(e)));
  assert.ok(idx.every((i, k) => i >= 0 && (k === 0 || i > idx[k - 1])), `order ${idx}`);
  assert.ok(eps.some((l) => /^udp\s+\*\s/.test(l)));
});

test('connections beyond maxRows are summarised', () => {
  const many = Array.from({ length: 60 }, (_, i) => conn(1001, 100 + i));
  const text = plain(makeReport({ connections: many }));
  assert.match(text, /^… 40 more connections \(see --json\)$/m);
  const shown = section(text, 'Connections').filter((l) => /^1001\s/.test(l));
  assert.equal(shown.length, 20);
  assert.ok(shown[19].includes(':40119 '), 'the first 20 by start are the ones shown');
  assert.match(plain(makeReport({ connections: many }), { maxRows: 59 }), /… 1 more connection \(see --json\)/);
  assert.doesNotMatch(plain(makeReport({ connections: many }), { maxRows: 60 }), /more connection/);
  assert.doesNotMatch(plain(makeReport()), /more connection/);
});

test('header: command, mode, backend, duration, exit, start time, notes; sections in order', () => {
  const text = plain(makeReport({ exitCode: 143 }));
  const head = lines(text).slice(0, 5).join('\n');
  for (const s of ["sh -c 'curl -s http://example.com/ & dig example.com'", 'run', 'fentry', '1.25 s', '2025-01-02T03:04:05.678Z']) {
    assert.ok(head.includes(s), `header lacks ${s}`);
  }
  assert.match(head, /exit 143/);
  assert.match(text, /note: kprobe fallback not needed/);
  const pos = ['Processes (4)', 'Remote endpoints (5)', 'Connections (4)', 'Totals'].map((t) => text.indexOf(`\n${t}`));
  assert.ok(pos.every((p, i) => p > 0 && (i === 0 || p > pos[i - 1])), `order ${pos}`);
  assert.match(plain(makeReport({ endpoints: [], connections: [] })), /Remote endpoints: none[\s\S]*Connections: none/);
});

test('fits the width: no line longer than 100 (or 80) columns', () => {
  const long = makeReport({
    command: ['python3', '-c', 'x'.repeat(300)],
    notes: ['Ring-buffer records were lost: byte and call totals are still exact (read from kernel counters); time resolution and process details may be incomplete.'],
    lost: { records: 123456, recordsByKind: { exec: 1000, flowUpdate: 122456 }, flowTableFullCalls: 99999, flowTableFullBytes: 5 * MiB, tracedTableFull: 3, procConnectorOverflows: 7 },
    unattributedPackets: { tx: 12345, rx: 67890 },
    processes: [...makeReport().processes, proc(1004, 1003, 'python3', ['python3', '-c', 'y'.repeat(300)], 50, { exitCode: 137, exitSignal: 9 })],
    connections: [
      ...makeReport().connections,
      conn(1004, 60, { localAddr: '2001:db8:aaaa:bbbb:cccc:dddd:eeee:1', localPort: 65000, remoteAddr: '2001:db8:aaaa:bbbb:cccc:dddd:eeee:2', remotePort: 65001, txBytes: 1023 * MiB, rxBytes: 1000 * MiB, outcome: 'timeout', error: 'ETIMEDOUT' }),
    ],
  });
  for (const width of [100, 80]) {
    const text = plain(long, { width, allProcesses: true });
    for (const l of lines(text)) assert.ok(Array.from(l).length <= width, `${Array.from(l).length} > ${width}: ${l}`);
    // Squeezing wraps (never truncates) endpoints; the refused outcome is still there.
    const conns = section(text, 'Connections');
    assert.ok(!conns.some((l) => l.includes('…')), conns.join('\n'));
    const row = block(conns, (l) => l.startsWith('1004'));
    assert.match(row.join('\n'), /\[2001:db8:/);
    assert.match(row.join('\n'), width === 100 ? /timed out(.|\n)*\(ETIMEDOUT\)/ : /timed(.|\n)*out/);
    assert.match(text, /└─1004 /);
    assert.match(text, /note: Ring-buffer records were lost/);
    assert.ok(text.replace(/\n {6}/g, ' ').includes(`note: ${long.notes[0]}`), 'note wrapped whole');
    assert.match(text, /unattributed packets tx 12,345 \/ rx 67,890/);
  }
});

test('re-rendering the JSON round trip gives identical text', () => {
  const r = makeReport({ lost: { ...noLoss(), records: 3, recordsByKind: { sock: 3 } } });
  const again = JSON.parse(JSON.stringify(r)) as Report;
  assert.equal(renderReport(again, { color: true }), renderReport(r, { color: true }));
  assert.equal(plain(again), plain(r));
});

test('patterns and statistics sections: after Connections, only when the report has them', () => {
  const text = renderReport(syntheticReport(), { color: false, width: 100 });
  const at = (s: string) => text.indexOf(s);
  assert.ok(at('Connections (') >= 0 && at('Connections (') < at('Patterns (5)'), text);
  assert.ok(at('Patterns (5)') < at('Statistics') && at('Statistics') < at('Totals'));
  // figures and units separated by plain spaces: grep finds them
  assert.ok(text.includes('• pid 42 polls 127.0.0.1:8080 every 1.00 s (±12 ms, 9 times)'));
  assert.match(text, /message sizes {3}tx p50 ≤127 B · p90 ≤511 B · 27 calls\n {16}rx p50 ≤64\.0 KiB/);
  assert.match(text, /connections {5}p50 101 ms/);
  assert.ok(!text.includes('\u00a0'), 'no no-break space anywhere');
  const plain = renderReport(emptyReport(), { color: false, width: 100 });
  assert.ok(!plain.includes('Patterns') && !plain.includes('Statistics'));
  const none = renderReport({ ...emptyReport(), patterns: [] }, { color: false, width: 100 });
  assert.ok(none.includes('Patterns: none'));
});

test('retransmits: a RETRANS column only when a connection had some; "-" for UDP rows', () => {
  const counted = makeReport().connections.map((c) => (c.proto === 'tcp' ? { ...c, retransmits: 0 } : c));
  assert.doesNotMatch(plain(makeReport({ connections: counted })), /RETRANS/);
  counted[0] = { ...counted[0], retransmits: 1234 };
  const conns = section(plain(makeReport({ connections: counted })), 'Connections');
  assert.match(conns[1], /RETRANS\s+OUTCOME/);
  assert.ok(conns.some((l) => /\s1,234\s+closed/.test(l)), conns.join('\n'));
  assert.ok(conns.some((l) => l.startsWith('1002') && /\s-\s+open/.test(l)), conns.join('\n'));
});

test('remote names sit beside their address, within the width', () => {
  const name = 'api.eu-west-1.example.com';
  const report = makeReport();
  report.endpoints = report.endpoints.map((e) => (e.remoteAddr === '93.184.216.34' ? { ...e, remoteName: name } : e));
  report.connections = report.connections.map((c) => (c.remoteAddr === '93.184.216.34' ? { ...c, remoteName: name } : c));
  for (const width of [100, 80]) {
    const text = plain(report, { width });
    for (const l of lines(text)) assert.ok(Array.from(l).length <= width, `${Array.from(l).length} > ${width}: ${l}`);
    assert.ok(section(text, 'Remote endpoints').join('\n').includes(`(${name})`), text);
    // squeezed to 80 columns the connection column splits addresses and names alike
    if (width === 100) assert.ok(section(text, 'Connections').some((l) => l.includes(`(${name})`)), text);
  }
});
