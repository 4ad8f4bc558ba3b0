// SPDX-License-Identifier: MIT
// The terminal report at scale (issue 14): every table stops at its top N with an "N more" line, quiet
// processes fold into one line under their parent, folded groups are shown, inbound endpoints read
// "address → :port", and figures are separated from their units by plain spaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TOP, renderReport, wrapText } from '../../src/render/table';
import { processRows } from '../../src/render/process-rows';
import { formatBytes, formatDuration } from '../../src/util/format';
import type { EndpointReport, FoldedConnections, Pattern, ProcessReport, Report } from '../../src/schema/report';
import { emptyReport } from './synthreport';

const zero = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
const noPackets = { txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 };

function proc(pid: number, ppid: number, comm: string, start: number, bytes = 0): ProcessReport {
  return { pid, ppid, comm, argv: [comm], startOffsetMs: start, exitOffsetMs: start + 1, exitCode: 0, exitSignal: null, tcp: { ...zero, txBytes: bytes, txCalls: bytes ? 1 : 0 }, udp: { ...zero }, packets: { ...noPackets } };
}

function endpoint(i: number, bytes: number): EndpointReport {
  return { proto: 'tcp', remoteAddr: `10.0.${i >> 8}.${i & 255}`, remotePort: 443, ...zero, txBytes: bytes, connections: 1, pids: [1] };
}

const lines = (s: string) => s.split('\n');

test('every table stops at its top N with an "N more" line; the whole report fits ~200 lines', () => {
  const r: Report = {
    ...emptyReport(),
    processes: [proc(1, 0, 'server', 0, 5), ...Array.from({ length: 100 }, (_, i) => proc(10 + i, 1, `w${i}`, 1 + i, 100 + i))],
    endpoints: Array.from({ length: 500 }, (_, i) => endpoint(i, 1000 - i)),
    patterns: Array.from({ length: 50 }, (_, i): Pattern => ({ kind: 'periodic', pids: [1], evidence: {}, summary: `pattern ${i}` })),
  };
  const text = renderReport(r, { color: false });
  assert.match(text, new RegExp(`^… ${500 - TOP.endpoints} more endpoints \\(see --json\\)$`, 'm'));
  assert.match(text, new RegExp(`^… ${101 - TOP.processes} more process rows \\(--all-processes lists every process\\)$`, 'm'));
  assert.match(text, new RegExp(`^… ${50 - TOP.patterns} more patterns \\(see --json\\)$`, 'm'));
  assert.ok(text.includes('10.0.0.0:443') && !text.includes(`10.0.1.${(TOP.endpoints + 1) & 255}:443`), 'the largest endpoints are the ones shown');
  assert.ok(lines(text).length <= 200, `${lines(text).length} lines`);
  const all = renderReport(r, { color: false, allProcesses: true });
  assert.doesNotMatch(all, /more process rows/);
  for (let i = 0; i < 100; i++) assert.match(all, new RegExp(`─${10 + i}\\s`));
});

test('quiet processes fold into one line under their parent; a quiet process on the way to a busy one stays', () => {
  const processes = [
    proc(1, 0, 'python3', 0),
    ...Array.from({ length: 38 }, (_, i) => proc(100 + i, 1, 'bash', 1 + i)),
    proc(200, 1, 'sed', 50),
    proc(201, 1, 'sed', 51),
    proc(300, 1, 'pyenv', 60),
    proc(301, 300, 'python3', 61, 4096),
  ];
  const rows = processRows(processes, [], false);
  assert.deepEqual(rows.map((r) => (r.kind === 'process' ? r.proc.pid : r.kind)), [1, 300, 301, 'quiet']);
  const quiet = rows.find((r) => r.kind === 'quiet');
  assert.deepEqual(quiet?.kind === 'quiet' && [quiet.count, quiet.comms], [40, [['bash', 38], ['sed', 2]]]);
  assert.deepEqual(rows.map((r) => r.prefix), ['', '├─', '│ └─', '└─']);
  assert.equal(processRows(processes, [], true).length, processes.length);
  const text = renderReport({ ...emptyReport(), processes }, { color: false, width: 140 });
  assert.match(text, /└─…\s+40 without traffic: bash ×38, sed ×2/);
});

test('folded groups: process groups under their parent, connection groups in a table of their own', () => {
  const processes = [proc(1, 0, 'sh', 0)];
  const group = { ppid: 1, comm: 'curl', count: 1996, tcp: { ...zero, txBytes: 2048 }, udp: { ...zero }, packets: { ...noPackets }, exits: { '0': 1990, '6': 6 }, firstStartOffsetMs: 1, lastExitOffsetMs: 900 };
  const folded: FoldedConnections = {
    proto: 'tcp', remoteAddr: '127.0.0.1', remotePort: 0, direction: 'inbound', localPort: 8080, connections: 199_000, ...zero, txBytes: 48_000_000,
    outcomes: { closed: 198_990, reset: 10 },
    durations: { count: 199_000, p50: 0.4, p90: 1.2, p99: 3, max: 250, histogram: [], approximate: true },
    pids: [1], firstStartOffsetMs: 0, lastEndOffsetMs: 1000,
  };
  const r: Report = {
    ...emptyReport(),
    processes,
    foldedProcesses: [group],
    foldedConnections: [folded],
    folding: { keep: { connections: { newest: 500, largest: 500, failed: 500 }, processes: { newest: 200, largest: 200, failed: 200 } }, connections: 199_000, sockets: 199_000, processes: 1996 },
  };
  const text = renderReport(r, { color: false });
  assert.match(text, /^Processes \(1,997; 1,996 folded\)$/m);
  assert.match(text, /└─×1,996\s+\[curl\] folded\s+1 ms\s+0 ×1,990, …\s+2\.0 KiB\/0 B/);
  assert.match(text, /^Folded connections \(1 group; listed: the 500 newest, 500 largest and 500 failed closed\)$/m);
  assert.match(text, /tcp\s+127\.0\.0\.1 → :8080\s+199,000\s+45\.8 MiB\s+0 B\s+0\.40 ms\/250 ms\s+198,990 closed, 10 reset/);
  assert.match(text, /^Connections \(199,000; 199,000 folded\)$/m);
});

test('figures and units are separated by plain spaces, and never split over two lines', () => {
  for (const s of [formatBytes(1536), formatDuration(250), formatDuration(1250)]) assert.ok(!s.includes('\u00a0'), s);
  const wrapped = wrapText('pid 42 polls 127.0.0.1:8080 every 1.00 s (±12 ms, 9 times) and more words here', 36);
  for (const l of lines(wrapped)) assert.doesNotMatch(l, /\d$/, `a figure left without its unit: ${l}`);
  assert.ok(wrapped.replace(/\n/g, ' ').includes('every 1.00 s (±12 ms, 9 times)'));
  assert.ok(!wrapped.includes('\u00a0'));
});
