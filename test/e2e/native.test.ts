// SPDX-License-Identifier: MIT
// The native addon against the real kernel, driven by test/fixtures/native_smoke.bpf.c (built by
// `make test` into build/test/native_smoke.bpf.o). Needs root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadNative, type BpfObject, type NativeError } from '../../src/native';
import { PROC_EVENT_SIZE, decodeProcEvents, type ProcEvent } from '../../src/kernel/proc-events';
import { findCgroup2Mount, ownedCgroupName } from '../../src/proc/cgroup';

const ROOT = path.resolve(__dirname, '../../..');
const FIXTURE = path.join(ROOT, 'build/test/native_smoke.bpf.o');
const native = loadNative();

const TAG = 0x7a9c0001;
const EVENT_SIZE = 20; // struct fork_event: u32 tag, u32 parent_tgid, u32 child_pid, u64 seq (packed)

interface ForkEvent {
  tag: number;
  parentTgid: number;
  childPid: number;
  seq: number;
}

/** Decodes one ring buffer batch, checking the framing as it goes. */
function decodeBatch(batch: ArrayBuffer): ForkEvent[] {
  assert.ok(batch instanceof ArrayBuffer);
  const view = new DataView(batch);
  const out: ForkEvent[] = [];
  let at = 0;
  while (at < batch.byteLength) {
    const len = view.getUint32(at, true);
    assert.equal(len, EVENT_SIZE, `record length at ${at}`);
    assert.equal(view.getUint32(at + 4, true), 0, 'reserved header word');
    const body = at + 8;
    out.push({
      tag: view.getUint32(body, true),
      parentTgid: view.getUint32(body + 4, true),
      childPid: view.getUint32(body + 8, true),
      seq: Number(view.getBigUint64(body + 12, true)),
    });
    const padded = (len + 7) & ~7;
    for (let i = len; i < padded; i++) assert.equal(view.getUint8(body + i), 0, 'padding is zero');
    at = body + padded;
  }
  assert.equal(at, batch.byteLength, 'batch ends on a record boundary');
  return out;
}

function openConfigured(): BpfObject {
  const obj = native.openObject(FIXTURE);
  const rodata = Buffer.alloc(8);
  rodata.writeUInt32LE(process.pid, 0); // target_tgid
  rodata.writeUInt32LE(TAG, 4); // tag
  obj.setInitialValue('.rodata', rodata);
  return obj;
}

/** Forks n short-lived children from this process; returns their pids. */
function forkChildren(n: number): number[] {
  const pids: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = spawnSync('/bin/true');
    assert.equal(r.status, 0);
    pids.push(r.pid);
  }
  return pids;
}

async function waitFor(what: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

function sumPerCpu(value: Buffer): number {
  assert.equal(value.length % 8, 0);
  let sum = 0n;
  for (let i = 0; i < value.length; i += 8) sum += value.readBigUInt64LE(i);
  return Number(sum);
}

function assertNativeError(err: unknown, errno: number, code: string, message?: RegExp): true {
  const e = err as NativeError;
  assert.ok(e instanceof Error);
  assert.equal(e.errno, errno);
  assert.equal(e.code, code);
  if (message) assert.match(e.message, message);
  return true;
}

test('module surface', () => {
  assert.match(native.libbpfVersion(), /^\d+\.\d+(\.\d+)?$/);
  assert.equal(native.PROC_RECORD_SIZE, PROC_EVENT_SIZE);
  assert.equal(PROC_EVENT_SIZE, 40);
});

test('open: programs, maps and initial values before load', () => {
  const obj = native.openObject(FIXTURE);
  try {
    assert.deepEqual(obj.programs(), ['on_fork', 'bad_attach', 'bad_verifier', 'allow_egress']);
    assert.deepEqual([...obj.maps()].sort(), ['.bss', '.data', '.rodata', 'dump_array', 'dump_hash', 'dump_trie', 'events', 'forks', 'percpu_forks']);
    assert.deepEqual(obj.getInitialValue('.rodata'), Buffer.alloc(8));
    assert.deepEqual(obj.getInitialValue('.bss'), Buffer.alloc(8));
    assert.equal(obj.getInitialValue('.data').readUInt32LE(0), 0xc0ffee);

    obj.setInitialValue('.data', u32(42));
    assert.equal(obj.getInitialValue('.data').readUInt32LE(0), 42);
    assert.throws(() => obj.setInitialValue('.rodata', Buffer.alloc(3)), {
      name: 'TypeError',
      message: /must be 8 bytes, got 3/,
    });
    assert.throws(() => obj.getInitialValue('forks'), /has no initial value/);
    assert.throws(() => obj.setAutoload('nope', true), { message: "unknown BPF program 'nope'" });
    assert.throws(() => obj.getInitialValue('nope'), { message: "unknown BPF map 'nope'" });
    assert.throws(() => obj.mapLookup('forks', u32(1)), /not loaded/);
  } finally {
    obj.close();
  }
});

test('load, attach, ring buffer batches, live .bss and map ops', async () => {
  const obj = openConfigured();
  try {
    obj.load();
    // .rodata after load is the frozen kernel map's contents.
    assert.equal(obj.getInitialValue('.rodata').readUInt32LE(0), process.pid);
    assert.throws(() => obj.setInitialValue('.rodata', Buffer.alloc(8)), (e) => assertNativeError(e, 16, 'EBUSY'));

    const events: ForkEvent[] = [];
    let batches = 0;
    obj.startRingBuffer('events', (batch) => {
      batches++;
      events.push(...decodeBatch(batch));
    }, { pollMs: 20, maxQueuedBatches: 2, maxBatchBytes: 4 << 20 });
    assert.throws(
      () => obj.startRingBuffer('events', () => {}, { pollMs: 20, maxQueuedBatches: 2, maxBatchBytes: 4 << 20 }),
      /already running/,
    );

    const link = obj.attach('on_fork');
    assert.equal(typeof link, 'number');
    const N = 25;
    const pids = forkChildren(N);
    // The program submits with BPF_RB_NO_WAKEUP: these arrive through the poll timeout alone.
    await waitFor(`${N} ring buffer records`, () => events.length >= N);
    assert.ok(batches >= 1);
    assert.equal(events.length, N);
    assert.deepEqual(events.map((e) => e.childPid), pids);
    assert.deepEqual(events.map((e) => e.seq), pids.map((_, i) => i + 1));
    for (const e of events) {
      assert.equal(e.tag, TAG);
      assert.equal(e.parentTgid, process.pid);
    }

    // Global data read live from the kernel map.
    assert.equal(Number(obj.getInitialValue('.bss').readBigUInt64LE(0)), N);

    const dump = obj.mapDump('forks');
    assert.equal(dump.count, N);
    assert.equal(dump.keySize, 4);
    assert.equal(dump.valueSize, 8);
    assert.equal(dump.keys.length, N * 4);
    assert.equal(dump.values.length, N * 8);
    const dumped = new Map<number, number>();
    for (let i = 0; i < dump.count; i++) {
      dumped.set(dump.keys.readUInt32LE(i * 4), Number(dump.values.readBigUInt64LE(i * 8)));
    }
    assert.deepEqual(dumped, new Map(pids.map((pid, i) => [pid, i + 1])));

    // Per-CPU: one 8-byte slot per possible CPU, summing to the fork count.
    const percpu = obj.mapLookup('percpu_forks', u32(0));
    assert.ok(percpu);
    assert.equal(sumPerCpu(percpu), N);
    const percpuDump = obj.mapDump('percpu_forks');
    assert.equal(percpuDump.count, 1);
    assert.equal(percpuDump.valueSize, percpu.length);
    assert.equal(sumPerCpu(percpuDump.values), N);

    // Point operations on the hash map.
    assert.equal(obj.mapLookup('forks', u32(pids[0]))?.readBigUInt64LE(0), 1n);
    assert.equal(obj.mapLookup('forks', u32(0xfffffff0)), null);
    obj.mapUpdate('forks', u32(0xfffffff0), u64(7));
    assert.throws(() => obj.mapUpdate('forks', u32(0xfffffff0), u64(8), 1), (e) => assertNativeError(e, 17, 'EEXIST'));
    obj.mapUpdate('forks', u32(0xfffffff0), u64(9), 2);
    assert.deepEqual(obj.mapLookupAndDelete('forks', u32(0xfffffff0)), u64(9));
    assert.equal(obj.mapLookupAndDelete('forks', u32(0xfffffff0)), null);
    assert.equal(obj.mapDelete('forks', u32(pids[0])), true);
    assert.equal(obj.mapDelete('forks', u32(pids[0])), false);
    assert.equal(obj.mapDump('forks').count, N - 1);
    assert.throws(() => obj.mapLookup('forks', Buffer.alloc(8)), { name: 'TypeError', message: /key .* must be 4 bytes/ });
    assert.throws(() => obj.mapUpdate('forks', u32(1), u32(1)), { name: 'TypeError', message: /value .* must be 8 bytes/ });
    assert.throws(() => obj.mapDump('events'), { name: 'TypeError' });

    // Dumps past one batch (a hash map of 3000, an array of 4096: BPF_MAP_LOOKUP_BATCH, 1024 a call) and
    // of a map type without batches (an LPM trie: the keys are walked): every element once, exact.
    const hashWant = new Map<number, bigint>();
    for (let i = 0; i < 3000; i++) {
      const key = (i * 2654435761) >>> 0;
      hashWant.set(key, BigInt(i) * 7n);
      obj.mapUpdate('dump_hash', u32(key), u64(i * 7));
    }
    const hd = obj.mapDump('dump_hash');
    const hashGot = new Map<number, bigint>();
    for (let i = 0; i < hd.count; i++) hashGot.set(hd.keys.readUInt32LE(i * 4), hd.values.readBigUInt64LE(i * 8));
    assert.equal(hd.count, 3000);
    assert.deepEqual(hashGot, hashWant);
    for (const i of [0, 1, 1023, 1024, 4095]) obj.mapUpdate('dump_array', u32(i), u64(i + 1));
    const ad = obj.mapDump('dump_array');
    assert.equal(ad.count, 4096);
    for (let i = 0; i < 4096; i++) {
      assert.equal(ad.keys.readUInt32LE(i * 4), i);
      assert.equal(ad.values.readBigUInt64LE(i * 8), [0, 1, 1023, 1024, 4095].includes(i) ? BigInt(i + 1) : 0n);
    }
    const prefix = (len: number, addr: number) => {
      const b = Buffer.alloc(8);
      b.writeUInt32LE(len, 0);
      b.writeUInt32BE(addr, 4);
      return b;
    };
    const trieWant = [prefix(8, 0x0a000000), prefix(16, 0xc0a80000), prefix(32, 0x7f000001)];
    trieWant.forEach((k, i) => obj.mapUpdate('dump_trie', k, u64(i + 100)));
    const td = obj.mapDump('dump_trie');
    assert.equal(td.count, 3);
    const trieGot = new Set<string>();
    for (let i = 0; i < td.count; i++) trieGot.add(`${td.keys.subarray(i * 8, i * 8 + 8).toString('hex')}=${td.values.readBigUInt64LE(i * 8)}`);
    assert.deepEqual(trieGot, new Set(trieWant.map((k, i) => `${k.toString('hex')}=${i + 100}`)));

    // Detached: further forks are not recorded.
    obj.detach(link);
    obj.detach(link); // unknown handles are ignored
    obj.detach(123456);
    forkChildren(3);
    await obj.stopRingBuffer();
    assert.equal(events.length, N);
    assert.equal(Number(obj.getInitialValue('.bss').readBigUInt64LE(0)), N);
  } finally {
    obj.close();
  }
});

test('stopRingBuffer drains everything into one batch before resolving', async () => {
  const obj = openConfigured();
  try {
    obj.load();
    obj.attach('on_fork');
    const events: ForkEvent[] = [];
    let batches = 0;
    // A poll period far beyond the test: only the final drain in stopRingBuffer can deliver.
    obj.startRingBuffer('events', (batch) => {
      batches++;
      events.push(...decodeBatch(batch));
    }, { pollMs: 600_000, maxQueuedBatches: 1, maxBatchBytes: 4 << 20 });
    const M = 40;
    const pids = forkChildren(M);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(events.length, 0);
    const stopping = obj.stopRingBuffer();
    const again = obj.stopRingBuffer();
    await stopping;
    assert.equal(batches, 1, 'one JS call for the whole drain');
    assert.deepEqual(events.map((e) => e.childPid), pids);
    await again;
    await obj.stopRingBuffer(); // already stopped: resolves at once

    // A stopped ring buffer can be started again.
    obj.startRingBuffer('events', (batch) => events.push(...decodeBatch(batch)), { pollMs: 10, maxQueuedBatches: 4, maxBatchBytes: 4 << 20 });
    forkChildren(2);
    await obj.stopRingBuffer();
    assert.equal(events.length, M + 2);
  } finally {
    obj.close();
  }
});

test('close is idempotent, stops a running ring buffer and invalidates the object', async () => {
  const obj = openConfigured();
  obj.load();
  obj.attach('on_fork');
  obj.startRingBuffer('events', () => {}, { pollMs: 5, maxQueuedBatches: 1, maxBatchBytes: 4 << 20 });
  forkChildren(2);
  const pending = obj.stopRingBuffer();
  obj.close();
  await pending; // close settles a pending stop
  obj.close();
  assert.throws(() => obj.programs(), /closed/);
  assert.throws(() => obj.load(), /closed/);
  await obj.stopRingBuffer();
});

test('load errors carry errno, code and the verifier log tail', () => {
  const verifier = native.openObject(FIXTURE);
  try {
    verifier.setAutoload('bad_verifier', true);
    assert.throws(() => verifier.load(), (e) => {
      assertNativeError(e, 13, 'EACCES', /^bpf_object__load 'native_smoke': Permission denied \(EACCES\)\n/);
      const message = (e as Error).message;
      assert.match(message, /invalid mem access 'map_value_or_null'/);
      const lines = message.split('\n');
      assert.ok(lines.length > 5 && lines.length <= 21, `tail is bounded (${lines.length} lines)`);
      return true;
    });
  } finally {
    verifier.close();
  }

  const attachPoint = native.openObject(FIXTURE);
  try {
    attachPoint.setAutoload('bad_attach', true);
    assert.throws(() => attachPoint.load(), (e) => assertNativeError(e, 3, 'ESRCH', /proctap_no_such_tracepoint/));
  } finally {
    attachPoint.close();
  }

  const unloaded = native.openObject(FIXTURE);
  try {
    assert.throws(() => unloaded.attach('on_fork'), (e) => assertNativeError(e, 22, 'EINVAL', /bpf_program__attach 'on_fork'/));
    assert.throws(() => unloaded.attach('nope'), { message: "unknown BPF program 'nope'" });
    unloaded.setMapMaxEntries('forks', 2);
    unloaded.load();
    assert.throws(() => unloaded.setAutoload('on_fork', false), (e) => assertNativeError(e, 16, 'EBUSY', /after load\(\)/));
    assert.throws(() => unloaded.load(), (e) => assertNativeError(e, 16, 'EBUSY'));
    assert.throws(() => unloaded.setMapMaxEntries('forks', 4), (e) => assertNativeError(e, 16, 'EBUSY'));
    unloaded.mapUpdate('forks', u32(1), u64(1));
    unloaded.mapUpdate('forks', u32(2), u64(2));
    assert.throws(() => unloaded.mapUpdate('forks', u32(3), u64(3)), (e) => assertNativeError(e, 7, 'E2BIG'));
  } finally {
    unloaded.close();
  }

  assert.throws(() => native.openObject('/nonexistent/x.bpf.o'), (e) => assertNativeError(e, 2, 'ENOENT'));
});

test('attachCgroup attaches to a cgroup v2 directory', (t) => {
  const mount = findCgroup2Mount(fs.readFileSync('/proc/self/mountinfo', 'utf8'));
  if (!mount) {
    t.skip('no cgroup v2 hierarchy mounted');
    return;
  }
  const dir = path.join(mount, ownedCgroupName(process.pid, 'native-test'));
  fs.mkdirSync(dir);
  const obj = native.openObject(FIXTURE);
  try {
    obj.load();
    const link = obj.attachCgroup('allow_egress', dir);
    assert.equal(typeof link, 'number');
    obj.detach(link);
    const again = obj.attachCgroup('allow_egress', dir);
    assert.notEqual(again, link);
    assert.throws(() => obj.attachCgroup('allow_egress', path.join(dir, 'missing')), (e) => assertNativeError(e, 2, 'ENOENT'));
  } finally {
    obj.close(); // destroys the remaining link
    fs.rmdirSync(dir);
  }
});

test('proc connector reports fork, exec and exit of a child', async () => {
  const records: ProcEvent[] = [];
  const connector = native.openProcConnector((batch) => {
    assert.ok(batch instanceof ArrayBuffer);
    assert.equal(batch.byteLength % PROC_EVENT_SIZE, 0);
    records.push(...decodeProcEvents(batch));
  }, { receiveBufferBytes: 4 << 20, maxQueuedBatches: 64 });
  try {
    const before = Number(process.hrtime.bigint());
    const child = spawnSync('/bin/sh', ['-c', 'exit 3']);
    const after = Number(process.hrtime.bigint());
    assert.equal(child.status, 3);
    const mine = () => records.filter((r) => r.kind !== 'overflow' && r.tgid === child.pid);
    await waitFor('fork, exec and exit of the child', () =>
      ['fork', 'exec', 'exit'].every((k) => mine().some((r) => r.kind === k)),
    );
    const fork = mine().find((r) => r.kind === 'fork')!;
    assert.ok(fork.kind === 'fork');
    assert.equal(fork.pid, child.pid);
    assert.equal(fork.parentTgid, process.pid);
    const exit = mine().find((r) => r.kind === 'exit')!;
    assert.ok(exit.kind === 'exit');
    assert.equal(exit.waitStatus, 3 << 8, 'wait status');
    assert.equal(exit.parentTgid, process.pid);
    // Kernel timestamps share CLOCK_MONOTONIC with process.hrtime.
    for (const r of mine()) assert.ok(r.tsNs >= before && r.tsNs <= after, 'timestamp in range');
    assert.ok(!records.some((r) => r.kind === 'overflow'));
  } finally {
    connector.close();
    connector.close();
  }
  const seen = records.length;
  spawnSync('/bin/true');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(records.length, seen, 'nothing delivered after close');
});
