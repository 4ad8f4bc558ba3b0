// SPDX-License-Identifier: MIT
// The L7 view's kernel side end to end: the RECORD_DATA heads proctap copies (as the NDJSON event stream
// shows them) equal the bytes the workload itself sent and received, at their stream offsets, through
// every send/recv path (test/workloads/l7load.py); flows that do not look like a decoded protocol are not
// copied at all. Runs on every backend (PROCTAP_TEST_BACKEND, the kernel matrix).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Report } from '../../src/schema/report';
import { ROOT, loopbackFixture, proctapRun, type ProctapRun } from './harness';

const L7LOAD = path.join(ROOT, 'test/workloads/l7load.py');
const fixture = loopbackFixture();

interface WorkloadFlow {
  name: string;
  proto: 'tcp' | 'udp';
  localPort: number;
  remoteAddr: string;
  remotePort: number;
  candidate: boolean;
  tx: string;
  rx: string;
  calls: { tx: Array<[string, number]>; rx: Array<[string, number]> };
  notCopiedTx: Array<[number, number]>;
  start: { tx: number; rx: number };
}

interface DataEvent {
  type: 'data';
  pid: number;
  socket: string;
  proto: string;
  remoteAddr: string;
  remotePort: number;
  direction: 'tx' | 'rx';
  source: string;
  offset: number;
  length: number;
  kernelClass: string;
  flags: string[];
  base64: string;
}

interface Traced {
  run: ProctapRun;
  report: Report;
  flows: WorkloadFlow[];
  events: Array<Record<string, unknown>>;
}

async function traceWorkload(extra: string[]): Promise<Traced> {
  const dir = fs.mkdtempSync(path.join(fixture.dir, 'l7-'));
  fs.chmodSync(dir, 0o777);
  const out = path.join(dir, 'flows.jsonl');
  const eventsPath = path.join(dir, 'events.ndjson');
  const run = await proctapRun(['-q', '--events', eventsPath, ...extra, '--', 'python3', L7LOAD, '--out', out, '--port', String(fixture.servers.port)]);
  assert.equal(run.code, 0, `proctap failed: ${run.stderr}`);
  assert.ok(run.report, 'no JSON report');
  assert.equal(run.report.lost.records, 0, `records lost: ${JSON.stringify(run.report.lost)}`);
  const lines = fs.readFileSync(out, 'utf8').split('\n').filter(Boolean);
  assert.equal(lines.length, 1, 'the workload wrote its flows');
  const events = fs.readFileSync(eventsPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  fs.rmSync(dir, { recursive: true, force: true });
  return { run, report: run.report, flows: (JSON.parse(lines[0]) as { flows: WorkloadFlow[] }).flows, events };
}

/** Data events of a workload flow: its socket(s), known from the flow records that carry its local port. */
function dataOf(t: Traced, flow: WorkloadFlow): DataEvent[] {
  const sockets = new Set(
    t.events
      .filter((e) => e.type === 'flowNew' && e.proto === flow.proto && e.localPort === flow.localPort)
      .map((e) => e.socket as string),
  );
  assert.ok(sockets.size > 0, `${flow.name}: no flow record with local port ${flow.localPort}`);
  return t.events.filter(
    (e): e is DataEvent & Record<string, unknown> =>
      e.type === 'data' && sockets.has(e.socket as string) && e.remoteAddr === flow.remoteAddr && e.remotePort === flow.remotePort,
  );
}

function inRanges(offset: number, length: number, ranges: Array<[number, number]>): boolean {
  return ranges.some(([at, n]) => offset >= at && offset + length <= at + n);
}

/** Every copied head equals the stream at its offset; offsets are contiguous from the flow's start. */
function checkFlow(t: Traced, flow: WorkloadFlow, snaplen: number, kernelClass: string): void {
  const records = dataOf(t, flow);
  if (!flow.candidate) {
    assert.deepEqual(records.map((r) => `${r.direction} ${r.offset}+${r.length}`), [], `${flow.name}: not a candidate, nothing copied`);
    return;
  }
  const connection = t.report.connections.find(
    (c) => c.proto === flow.proto && c.localPort === flow.localPort && c.remoteAddr === flow.remoteAddr && c.remotePort === flow.remotePort,
  );
  assert.ok(connection, `${flow.name}: no connection in the report`);
  for (const direction of ['tx', 'rx'] as const) {
    const stream = Buffer.from(flow[direction], 'base64');
    const mine = records.filter((r) => r.direction === direction);
    const what = `${flow.name} ${direction}`;
    assert.ok(mine.length > 0, `${what}: no data record`);
    let at = flow.start[direction];
    for (const r of mine) {
      assert.equal(r.offset, at, `${what}: record at ${r.offset}, expected ${at} (contiguous)`);
      assert.equal(r.source, 'socket');
      assert.equal(r.kernelClass, kernelClass, `${what}: kernel class`);
      const bytes = Buffer.from(r.base64, 'base64');
      if (r.flags.includes('notCopied')) {
        assert.ok(direction === 'tx' && inRanges(r.offset, r.length, flow.notCopiedTx), `${what}: bytes at ${r.offset}+${r.length} marked not copied`);
        assert.equal(bytes.length, 0);
      } else {
        assert.deepEqual(r.flags, [], `${what}: flags at ${r.offset}`);
        assert.equal(bytes.length, Math.min(r.length, snaplen), `${what}: head length at ${r.offset}`);
        assert.ok(bytes.equals(stream.subarray(r.offset, r.offset + bytes.length)), `${what}: bytes at ${r.offset} differ from what was ${direction === 'tx' ? 'sent' : 'received'}`);
      }
      at += r.length;
    }
    assert.equal(at, stream.length, `${what}: the records end where the stream does`);
    assert.equal(at, direction === 'tx' ? connection.txBytes : connection.rxBytes, `${what}: the flow's counter`);
    // one record per call (sendfile: its chunks, each marked), in the order the calls were made
    const startCall = countCallsBefore(flow.calls[direction], flow.start[direction]);
    const calls = flow.calls[direction].slice(startCall).filter(([how]) => how !== 'sendfile').map(([, n]) => n);
    assert.deepEqual(mine.filter((r) => !r.flags.includes('notCopied')).map((r) => r.length), calls, `${what}: one record per call`);
  }
}

function countCallsBefore(calls: Array<[string, number]>, offset: number): number {
  let bytes = 0;
  let i = 0;
  while (i < calls.length && bytes < offset) bytes += calls[i++][1];
  return i;
}

const CLASS: Record<string, string> = { tcp: 'http1', udp: 'dns' };

for (const snaplen of [4096, 64]) {
  test(`heads of every send/recv path equal the payloads at their offsets (TCP v4/v6, UDP, snaplen ${snaplen})`, async () => {
    const t = await traceWorkload(['--l7', '--l7-snaplen', String(snaplen)]);
    assert.ok(t.flows.length >= 12, 'the workload reported its flows');
    for (const flow of t.flows) checkFlow(t, flow, snaplen, CLASS[flow.proto]);
    const sendfile = t.flows.find((f) => f.name === 'tcp4-sendfile')!;
    assert.ok(dataOf(t, sendfile).some((r) => r.flags.includes('notCopied')), 'sendfile bytes are marked not copied');
  });
}

test('without the L7 view no data record is written', async () => {
  const t = await traceWorkload([]);
  assert.deepEqual(t.events.filter((e) => e.type === 'data'), []);
});
