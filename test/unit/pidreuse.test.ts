// SPDX-License-Identifier: MIT
// PID reuse within one trace: records name a process by pid + task start time, so a recycled pid is
// another process in the tree, the flows, the connections and the time series.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as L from '../../src/native/layout.generated';
import { frameRecords } from './batch';
import { assembleReport } from '../../src/report/assemble';
import { TraceModel } from '../../src/model/model';
import { forEachRecord } from '../../src/kernel/records';
import { PROC_EVENT_SIZE, decodeProcEvents } from '../../src/kernel/proc-events';
import { ProcessTree } from '../../src/model/tree';
import type { ProcessReport } from '../../src/schema/report';
import { processTree, renderReport } from '../../src/render/table';
import { emptyReport } from './synthreport';

/** The model fed as the trace session feeds it: ring-buffer batches and proc connector batches, decoded. */
class TraceCollector extends TraceModel {
  onBatch(batch: ArrayBuffer): void {
    forEachRecord(batch, (r) => this.onRecord(r));
  }

  onProcBatch(batch: ArrayBuffer): number {
    return this.onProcEvents(decodeProcEvents(batch));
  }
}

const PROC_KIND = { fork: L.PROC_EVENT_KIND_FORK, exec: L.PROC_EVENT_KIND_EXEC, exit: L.PROC_EVENT_KIND_EXIT, overflow: L.PROC_EVENT_KIND_OVERFLOW };


function header(size: number, type: number, tgid: number, ts: number, startTime: bigint): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt16LE(type, L.record_header.type);
  b.writeUInt32LE(tgid, L.record_header.tgid);
  b.writeBigUInt64LE(BigInt(ts), L.record_header.ts_ns);
  b.writeBigUInt64LE(startTime, L.record_header.start_time_ns);
  return b;
}

const fork = (pid: number, ppid: number, ts: number, start: bigint, comm = 'worker', nspid = 0) => {
  const r = header(L.fork_record.size, L.RECORD_FORK, pid, ts, start);
  r.writeUInt32LE(ppid, L.fork_record.ppid);
  r.writeUInt32LE(nspid, L.fork_record.nspid);
  r.write(comm, L.fork_record.comm);
  return r;
};

const exec = (pid: number, ts: number, start: bigint, comm: string) => {
  const r = header(L.exec_record.size, L.RECORD_EXEC, pid, ts, start);
  r.write(comm, L.exec_record.comm);
  const args = Buffer.from(`${comm}\0`);
  args.copy(r, L.exec_record.args);
  r.writeUInt32LE(args.length, L.exec_record.args_len);
  return r;
};

const exit = (pid: number, ts: number, start: bigint, code: number) => {
  const r = header(L.exit_record.size, L.RECORD_EXIT, pid, ts, start);
  r.writeUInt32LE(code << 8, L.exit_record.exit_code);
  return r;
};

/** A TCP flow to 127.0.0.1:9000 over socket `cookie`, cumulative tx bytes. */
const flow = (pid: number, start: bigint, cookie: bigint, ts: number, txBytes: number, isNew = false) => {
  const r = header(L.flow_record.size, isNew ? L.RECORD_FLOW_NEW : L.RECORD_FLOW_UPDATE, pid, ts, start);
  const k = L.flow_record.key;
  r.writeBigUInt64LE(cookie, k + L.flow_key.cookie);
  r.writeUInt32LE(pid, k + L.flow_key.tgid);
  r.writeBigUInt64LE(start, k + L.flow_key.start_time_ns);
  r.writeUInt16LE(9000, k + L.flow_key.rport);
  r.writeUInt8(2, k + L.flow_key.family);
  r.writeUInt8(6, k + L.flow_key.proto);
  r.set([127, 0, 0, 1], k + L.flow_key.raddr);
  r.writeBigUInt64LE(BigInt(txBytes), L.flow_record.counters + L.flow_counters.tx_bytes);
  r.writeBigUInt64LE(1n, L.flow_record.counters + L.flow_counters.tx_calls);
  r.writeBigUInt64LE(BigInt(ts), L.flow_record.first_ns);
  return r;
};

function procBatch(events: Array<{ kind: number; tgid: number; parent?: number; ts: number; code?: number }>): ArrayBuffer {
  const b = Buffer.alloc(events.length * PROC_EVENT_SIZE);
  const R = L.proc_event_record;
  events.forEach((e, i) => {
    const at = i * PROC_EVENT_SIZE;
    b.writeUInt32LE(e.kind, at + R.kind);
    b.writeUInt32LE(e.tgid, at + R.pid);
    b.writeUInt32LE(e.tgid, at + R.tgid);
    b.writeUInt32LE(e.parent ?? 0, at + R.parent_tgid);
    b.writeUInt32LE(e.code ?? 0, at + R.exit_code);
    b.writeBigUInt64LE(BigInt(e.ts), at + R.timestamp_ns);
  });
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
}

const MS = 1_000_000;
const ROOT_START = 1_000n * 1_000_000n;
const FIRST = 1_010n * 1_000_000n; // first process with pid 200
const SECOND = 1_030n * 1_000_000n; // the second one: pid 200 reused

test('a pid reused within one trace is two processes; each keeps its own bytes, exit and start time', () => {
  const c = new TraceCollector();
  const origin = Number(ROOT_START);
  c.tree.addRoot(100, 1, 'shell', ['shell'], origin);
  c.onBatch(frameRecords([exec(100, origin + 1 * MS, ROOT_START, 'shell')]));
  c.onBatch(
    frameRecords([
      fork(200, 100, origin + 10 * MS, FIRST),
      flow(200, FIRST, 5n, origin + 11 * MS, 1000, true),
      exit(200, origin + 20 * MS, FIRST, 3),
      fork(200, 100, origin + 30 * MS, SECOND),
      // the same inherited socket: in kernel another flow, because the start time is part of the key
      flow(200, SECOND, 5n, origin + 31 * MS, 300, true),
    ]),
  );
  // The proc connector is late: the first one's exit must not end the second one; its fork is no third.
  c.onProcBatch(procBatch([
    { kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: origin + 10 * MS },
    { kind: PROC_KIND.exit, tgid: 200, ts: origin + 20 * MS, code: 3 << 8 },
    { kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: origin + 30 * MS },
  ]));
  // A late interval record of the first process, after the second one forked.
  c.onBatch(frameRecords([flow(200, FIRST, 5n, origin + 32 * MS, 1500), exit(200, origin + 40 * MS, SECOND, 4)]));
  c.flows.finalize(
    c.flows.list().find((f) => f.key.startTime === FIRST)!.key,
    { txBytes: 1500, rxBytes: 0, txCalls: 2, rxCalls: 0 }, origin + 11 * MS, origin + 19 * MS, '127.0.0.1', 40000,
  );

  const instances = c.tree.list().filter((p) => p.pid === 200);
  assert.equal(instances.length, 2);
  assert.deepEqual(instances.map((p) => [p.startTime, p.waitStatus, p.source]), [[FIRST, 3 << 8, 'kernel'], [SECOND, 4 << 8, 'kernel']]);
  assert.equal(c.tree.get(100)?.startTime, ROOT_START, 'the root learns its start time from its exec record');

  const report = assembleReport({
    version: '0', mode: 'run', backend: 'tracepoint', command: ['shell'], exitCode: 0, startedAt: new Date(0),
    durationMs: 50, originNs: origin, processes: c.tree.list(), flows: c.flows.list(), connections: [],
    packets: [
      { tgid: 200, startTime: FIRST, packets: { txPackets: 2, rxPackets: 0, txBytes: 1600, rxBytes: 0 } },
      { tgid: 200, startTime: SECOND, packets: { txPackets: 1, rxPackets: 0, txBytes: 352, rxBytes: 0 } },
    ],
    lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    notes: [],
    statistics: { flowIntervalMs: 100, seriesIntervalMs: 10 },
  });
  const rows = report.processes.filter((p) => p.pid === 200).map((p) => [p.startTimeNs, p.exitCode, p.tcp.txBytes, p.packets.txBytes]);
  assert.deepEqual(rows, [[Number(FIRST), 3, 1500, 1600], [Number(SECOND), 4, 300, 352]]);
  assert.deepEqual(
    report.connections.map((r) => [r.pid, r.startTimeNs, r.txBytes]),
    [[200, Number(FIRST), 1500], [200, Number(SECOND), 300]],
  );
  assert.deepEqual(
    report.timeSeries!.perProcess.map((p) => [p.pid, p.startTimeNs, p.tx.reduce((a, b) => a + b, 0)]),
    [[200, Number(FIRST), 1500], [200, Number(SECOND), 300]],
  );
  assert.equal(report.totals.tcp.txBytes, 1800);
});

test('a child in another PID namespace keeps its namespace pid from the fork record', () => {
  const c = new TraceCollector();
  c.tree.addRoot(100, 1, 'sh', ['sh'], 0);
  c.onBatch(frameRecords([fork(300, 100, 5, 5n, 'unshare', 1), fork(301, 300, 6, 6n, 'sh', 301)]));
  assert.equal(c.tree.get(300)?.nspid, 1);
  assert.equal(c.tree.get(301)?.nspid, undefined, 'the same pid in every namespace: nothing to add');
});

test('an attach target learns its start time from its first record; an exited one does not take a later start', () => {
  const tree = new ProcessTree();
  tree.addRoot(50, 1, 'server', ['server'], null);
  assert.equal(tree.get(50, 7n)?.startTime, 7n);
  tree.addRoot(60, 1, 'gone', ['gone'], null);
  tree.onExit(60, 100, 0, 'kernel');
  assert.equal(tree.get(60, 200n), undefined, 'started after the target exited: another process');
  assert.equal(tree.ensure(60, 200n).source, 'flow');
  assert.equal(tree.list().filter((p) => p.pid === 60).length, 2);
});

test('after a proc connector overflow the tree is rebuilt from the live processes, without duplicates', () => {
  const c = new TraceCollector();
  c.tree.addRoot(100, 1, 'sh', ['sh'], 0);
  c.onBatch(frameRecords([fork(101, 100, 5, 5n)]));
  assert.equal(c.onProcBatch(procBatch([{ kind: PROC_KIND.overflow, tgid: 0, ts: 9 }])), 1);
  assert.equal(c.connectorOverflows, 1);
  const added = c.tree.rebuild(
    [
      { pid: 100, ppid: 1, comm: 'sh', argv: ['sh'] },
      { pid: 101, ppid: 100, comm: 'worker', argv: ['sh'] },
      { pid: 102, ppid: 101, comm: 'worker', argv: ['w', '2'] },
    ],
    10,
  );
  assert.deepEqual(added, [102]);
  assert.equal(c.tree.get(102)?.source, 'rebuild');
  // Its kernel fork record, consumed late, fills in the same node rather than adding a second one.
  c.onBatch(frameRecords([fork(102, 101, 8, 7n)]));
  assert.equal(c.tree.list().filter((p) => p.pid === 102).length, 1);
  assert.equal(c.tree.get(102)?.startTime, 7n);
  assert.equal(c.tree.get(102)?.source, 'kernel');
});

test('a proc connector fork seen before the kernel record is that process, whatever the order of their clocks', () => {
  const c = new TraceCollector();
  c.tree.addRoot(100, 1, 'sh', ['sh'], 0);
  c.onProcBatch(procBatch([{ kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: 1000 }]));
  // the kernel's start time may read later than the connector's stamp: still the same, live, process
  c.onBatch(frameRecords([fork(200, 100, 1100, 1050n), exit(200, 2000, 1050n, 0)]));
  c.onProcBatch(procBatch([{ kind: PROC_KIND.exit, tgid: 200, ts: 2001 }]));
  assert.deepEqual(c.tree.list().filter((p) => p.pid === 200).map((p) => [p.startTime, p.source, p.exitSource]), [[1050n, 'kernel', 'kernel']]);
  // the pid again, the connector first: a new process, since the previous one exited before it started
  c.onProcBatch(procBatch([{ kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: 3000 }]));
  c.onBatch(frameRecords([fork(200, 100, 3100, 3050n)]));
  assert.deepEqual(c.tree.list().filter((p) => p.pid === 200).map((p) => [p.startTime, p.source]), [[1050n, 'kernel'], [3050n, 'kernel']]);
});

test('the proc connector ahead of the ring buffer by two processes with one pid: each kernel record finds its own', () => {
  const c = new TraceCollector();
  c.tree.addRoot(100, 1, 'sh', ['sh'], 0);
  // measured order: all four connector events first, then the kernel's (start times ~0.6 µs before the stamps)
  c.onProcBatch(procBatch([
    { kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: 956_729_324 },
    { kind: PROC_KIND.exit, tgid: 200, ts: 958_345_044 },
    { kind: PROC_KIND.fork, tgid: 200, parent: 100, ts: 959_003_697 },
    { kind: PROC_KIND.exit, tgid: 200, ts: 960_212_518 },
  ]));
  c.onBatch(frameRecords([
    fork(200, 100, 956_742_133, 956_728_743n),
    exit(200, 957_945_480, 956_728_743n, 1),
    fork(200, 100, 959_012_650, 959_003_076n),
    exit(200, 959_832_714, 959_003_076n, 2),
  ]));
  assert.deepEqual(
    c.tree.list().filter((p) => p.pid === 200).map((p) => [p.startTime, p.source, p.waitStatus]),
    [[956_728_743n, 'kernel', 1 << 8], [959_003_076n, 'kernel', 2 << 8]],
  );
});

test('the terminal tree shows every process of a recycled pid, each child under the parent instance of its time', () => {
  const traffic = { txBytes: 0, rxBytes: 0, txCalls: 0, rxCalls: 0 };
  const proc = (pid: number, ppid: number, start: number, nspid?: number): ProcessReport => ({
    pid, ppid, comm: 'w', argv: [], startOffsetMs: start, exitOffsetMs: null, exitCode: null, exitSignal: null,
    tcp: traffic, udp: traffic, packets: { txPackets: 0, rxPackets: 0, txBytes: 0, rxBytes: 0 }, ...(nspid ? { nspid } : {}),
  });
  const tree = processTree([proc(1, 0, 0), proc(7, 1, 1, 3), proc(8, 7, 2), proc(7, 1, 5, 3), proc(9, 7, 6)]);
  assert.deepEqual(tree.map((t) => `${t.prefix}${t.proc.pid}@${t.proc.startOffsetMs}`), ['1@0', '├─7@1', '│ └─8@2', '└─7@5', '  └─9@6']);
  const report = { ...emptyReport(), processes: [proc(7, 1, 1, 3)] };
  assert.match(renderReport(report, { color: false }), /7 \(ns 3\)/);
});
