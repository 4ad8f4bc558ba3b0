// SPDX-License-Identifier: MIT
// attach to a real server (issue 13), the parts without a kernel: titles read as ps reads them, the
// subtree and the listeners taken at the attach, accepted connections seen in mid-life, the report's
// attach line and notes, and the server's side of the patterns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseChildren, parseCmdline, parseProcNet, type ProcNetSocket } from '../../src/proc/procfs';
import { ConnectionTracker, TCP_STATE } from '../../src/model/connections';
import { FlowTable } from '../../src/model/flows';
import { ProcessTree } from '../../src/model/tree';
import { assembleReport, type ReportInputs } from '../../src/report/assemble';
import { childrenLeftOutNotes, markPreexisting } from '../../src/report/attach';
import { attachedLine, processTitle, renderReport } from '../../src/render/table';
import { ListenerRegistry } from '../../src/trace/listeners';
import { TitleReader } from '../../src/trace/titles';
import type { FlowKey, TraceRecord } from '../../src/kernel/records';
import * as L from '../../src/native/layout.generated';
import { runCli } from '../../src/cli/program';

// ---------------------------------------------------------------- titles

test('cmdline: rewritten titles lose their NUL or space padding; real arguments stay as they are', () => {
  const pad = (s: string, c: string, n: number) => s + c.repeat(n);
  // nginx's master writes its title over argv and ends it with one NUL; its workers pad with NULs
  assert.deepEqual(parseCmdline('nginx: master process /usr/sbin/nginx -p /tmp/x -c /tmp/x/nginx.conf\0'), ['nginx: master process /usr/sbin/nginx -p /tmp/x -c /tmp/x/nginx.conf']);
  assert.deepEqual(parseCmdline(pad('nginx: worker process', '\0', 50)), ['nginx: worker process']);
  assert.deepEqual(parseCmdline(pad('redis-server 127.0.0.1:6379', '\0', 90)), ['redis-server 127.0.0.1:6379']);
  // space padding (PS_PADDING ' ' on some systems, setproctitle on some paths), then the terminating NUL
  assert.deepEqual(parseCmdline(pad('postgres: checkpointer ', ' ', 40) + '\0'), ['postgres: checkpointer']);
  assert.deepEqual(parseCmdline('python3\0-c\0\0print(1)\0'), ['python3', '-c', '', 'print(1)']);
  assert.deepEqual(parseCmdline('sh\0-c\0echo a b\0'), ['sh', '-c', 'echo a b']);
  assert.deepEqual(parseCmdline(''), []);
  assert.deepEqual(parseCmdline('\0\0\0'), []);
});

test('terminal: a title is shown as ps shows it (no quotes, no basename of a path inside it)', () => {
  assert.equal(processTitle(['nginx: worker process']), 'nginx: worker process');
  assert.equal(processTitle(['redis-server 127.0.0.1:6379']), 'redis-server 127.0.0.1:6379');
  assert.equal(processTitle(['sh', '-c', 'a b']), null);
  assert.equal(processTitle(['curl']), null);
  assert.equal(processTitle(['evil\ttitle x']), 'evil?title x');
  const tree = new ProcessTree();
  tree.addRoot(100, 1, 'nginx', ['nginx: master process nginx -p /tmp/ngx -c /tmp/ngx/nginx.conf'], null);
  tree.addRoot(101, 100, 'nginx', ['nginx: worker process'], null);
  tree.addRoot(102, 100, 'python3', ['queue worker 3'], null);
  const report = assembleReport(inputs({ processes: tree.list() }));
  // by default, children without traffic are one line under their parent, named by their titles
  assert.match(renderReport(report, { color: false, width: 160 }), /└─… +2 without traffic: nginx: worker process, python3: queue worker 3/);
  const text = renderReport(report, { color: false, width: 160, allProcesses: true });
  assert.match(text, /nginx: master process nginx -p \/tmp\/ngx -c \/tmp\/ngx\/nginx\.conf/);
  assert.match(text, /├─101 +nginx: worker process +before/);
  assert.match(text, /└─102 +python3: queue worker 3 +before/);
  assert.doesNotMatch(text, /'nginx|^100 +nginx\.conf/m); // no stray quote, no basename of a path in the title
});

test('titles are read again once a batch with a fork or exec is handled, and at the end for the running', () => {
  const tree = new ProcessTree();
  tree.addRoot(100, 1, 'nginx', ['nginx', '-g', 'daemon off;'], 0);
  const cmdlines = new Map<number, string[]>([[100, ['nginx: master process nginx -g daemon off;']], [101, ['nginx: worker process']]]);
  const reads: number[] = [];
  const titles = new TitleReader(tree, (pid) => (reads.push(pid), cmdlines.get(pid) ?? []));
  tree.onFork(101, 100, 'nginx', 10, 'kernel', 5n);
  titles.onRecord({ type: 'fork', tgid: 101, tsNs: 10, ppid: 100, nspid: 101, comm: 'nginx', startTime: 5n } as TraceRecord);
  assert.deepEqual(tree.get(101)?.argv, ['nginx', '-g', 'daemon off;'], 'a child starts with its parent\'s argv');
  titles.afterBatch();
  assert.deepEqual(reads, [101, 100], 'the child, and its parent (titled before it forked)');
  assert.deepEqual(tree.get(101)?.argv, ['nginx: worker process']);
  assert.deepEqual(tree.get(100)?.argv, ['nginx: master process nginx -g daemon off;']);
  titles.onRecord({ type: 'flow', tgid: 101 } as TraceRecord);
  titles.onRecord({ type: 'flow', tgid: 101 } as TraceRecord);
  titles.afterBatch();
  titles.onRecord({ type: 'flow', tgid: 101 } as TraceRecord);
  titles.afterBatch();
  assert.deepEqual(reads, [101, 100, 101], 'read again at its first traffic only');
  tree.onExit(101, 20, 0);
  cmdlines.delete(101);
  titles.refreshRunning();
  assert.deepEqual(reads, [101, 100, 101, 100], 'only the running are read at the end');
  assert.deepEqual(tree.get(100)?.argv, ['nginx: master process nginx -g daemon off;']);
  assert.deepEqual(tree.get(101)?.argv, ['nginx: worker process'], 'a gone process keeps its last title');
});

test('children of every thread, from /proc/PID/task/TID/children', () => {
  assert.deepEqual(parseChildren('12 34 '), [12, 34]);
  assert.deepEqual(parseChildren(''), []);
});

// ---------------------------------------------------------------- listeners and accepted connections

const PROC_NET_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5001 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5002 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 5003 1 0000000000000000 20 4 30 10 -1
`;

test('the kernel is told each listener once (master and workers share it), with its bound address bytes', () => {
  const sockets: ProcNetSocket[] = parseProcNet(PROC_NET_TCP, 'tcp', 2);
  assert.deepEqual([...sockets[0].localBytes.subarray(0, 4)], [127, 0, 0, 1]);
  assert.deepEqual([...sockets[1].localBytes], new Array(16).fill(0), 'bound to any: all zero');
  const told: Array<[number, number, string, number]> = [];
  const ports: number[] = [];
  const registry = new ListenerRegistry(
    { addListener: (l, pid) => void told.push([l.netns, l.port, Buffer.from(l.addr).toString('hex').slice(0, 8), pid]) },
    { noteListener: (port) => void ports.push(port) },
  );
  registry.register(100, 4026531840, sockets);
  registry.register(101, 4026531840, sockets); // a worker holding the master's listeners
  registry.register(200, 4026532000, sockets.slice(1)); // the same port in another netns is another listener
  assert.deepEqual(told, [
    [4026531840, 8080, '7f000001', 100],
    [4026531840, 80, '00000000', 100],
    [4026532000, 80, '00000000', 200],
  ]);
  assert.ok(!ports.includes(50000), 'an established socket is no listener');
});

const state = (cookie: bigint, tsNs: number, oldState: number, newState: number, extra: Record<string, unknown> = {}) => ({
  tgid: 100, cookie, tsNs, oldState, newState, error: 0, localAddr: '127.0.0.1', localPort: 8080, remoteAddr: '127.0.0.1', remotePort: 50000, ...extra,
});

test('an accepted connection is passive and starts at SYN_RECV, however it ends', () => {
  const tracker = new ConnectionTracker();
  tracker.onState(state(1n, 1_000, TCP_STATE.LISTEN, TCP_STATE.SYN_RECV, { flags: L.SOCK_META_PASSIVE }));
  tracker.onState(state(1n, 1_200, TCP_STATE.SYN_RECV, TCP_STATE.ESTABLISHED, { flags: L.SOCK_META_PASSIVE }));
  tracker.onState(state(1n, 1_500_001_000, TCP_STATE.LAST_ACK, TCP_STATE.CLOSE, { flags: L.SOCK_META_PASSIVE }));
  const [c] = tracker.list();
  assert.deepEqual([c.role, c.startSeen, c.startNs, c.endNs, c.outcome], ['passive', true, 1_000, 1_500_001_000, 'closed']);
});

test('a socket first seen in mid-life: its role from the kernel, else from the ports traced processes listen on', () => {
  const tracker = new ConnectionTracker();
  tracker.noteListener(8080); // attach: a listener from /proc
  // close records of sockets claimed at their first I/O (flags 0): accepted on 8080, or connect()ed from 41000
  tracker.onState(state(1n, 5_000, TCP_STATE.ESTABLISHED, TCP_STATE.CLOSE_WAIT));
  tracker.onState(state(2n, 6_000, TCP_STATE.ESTABLISHED, TCP_STATE.FIN_WAIT1, { localPort: 41000, remotePort: 6379 }));
  tracker.onState(state(3n, 7_000, TCP_STATE.ESTABLISHED, TCP_STATE.FIN_WAIT1, { localPort: 41001, flags: L.SOCK_META_PASSIVE }));
  // a LISTEN record after the fact: the socket on 9090 is decided at list(), not when first seen
  tracker.onState(state(4n, 8_000, TCP_STATE.ESTABLISHED, TCP_STATE.CLOSE_WAIT, { localPort: 9090 }));
  tracker.onState(state(5n, 8_500, TCP_STATE.CLOSE, TCP_STATE.LISTEN, { localPort: 9090, remotePort: 0, remoteAddr: '*' }));
  const roles = new Map(tracker.list().map((c) => [c.cookie, [c.role, c.startSeen]]));
  assert.deepEqual(Object.fromEntries(roles), { 1: ['passive', false], 2: ['active', false], 3: ['passive', false], 4: ['passive', false] });
});

function key(tgid: number, cookie: bigint): FlowKey {
  return { id: `${cookie}/${tgid}`, cookie, tgid, startTime: 0n, family: 2, proto: 6, remoteAddr: '127.0.0.1', remotePort: 50000, raw: new Uint8Array(40) };
}

function inputs(over: Partial<ReportInputs>): ReportInputs {
  return {
    version: '0.0.0', mode: 'attach', backend: 'tracepoint', command: [], exitCode: null, startedAt: new Date(0), durationMs: 3000, originNs: 0,
    processes: [], flows: [], connections: [], packets: [], notes: [], statistics: { flowIntervalMs: 100 },
    lost: { records: 0, recordsByKind: {}, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 },
    ...over,
  };
}

test('a row seen in mid-life starts with its first byte, not with its close (redis: 0.02 ms before)', () => {
  const tree = new ProcessTree();
  tree.addRoot(100, 1, 'redis-server', ['redis-server 127.0.0.1:6379'], null);
  const flows = new FlowTable();
  flows.finalize(key(100, 1n), { txBytes: 14000, rxBytes: 28000, txCalls: 2000, rxCalls: 2000 }, 1_000_000_000, 1_383_000_000, '127.0.0.1', 8080);
  flows.markReleased(1n, 1_384_100_000);
  const tracker = new ConnectionTracker();
  tracker.noteListener(8080);
  tracker.onState(state(1n, 1_384_000_000, TCP_STATE.ESTABLISHED, TCP_STATE.CLOSE_WAIT));
  tracker.onState(state(1n, 1_384_010_000, TCP_STATE.CLOSE_WAIT, TCP_STATE.LAST_ACK));
  tracker.onState(state(1n, 1_384_030_000, TCP_STATE.LAST_ACK, TCP_STATE.CLOSE));
  const report = assembleReport(inputs({ processes: tree.list(), flows: flows.list(), connections: tracker.list() }));
  const [row] = report.connections;
  assert.deepEqual([row.role, row.startOffsetMs, row.durationMs, row.outcome], ['passive', 1000, 384.03, 'closed']);
});

test('connections open before the attach on a port the targets listen on were accepted', () => {
  const sockets = parseProcNet(PROC_NET_TCP, 'tcp', 2).map((s) => ({ ...s, pid: 100 }));
  const other = { ...sockets[2], localPort: 41000, remotePort: 6379, inode: 5004 };
  const rows = markPreexisting([], [...sockets, other]);
  assert.deepEqual(rows.map((r) => [r.localPort, r.remotePort, r.role, r.preexisting]), [[8080, 50000, 'passive', true], [41000, 6379, 'unknown', true]]);
});

// ---------------------------------------------------------------- the attach in the report

test('the report names what was taken at the attach, and what --no-children left out', () => {
  const attached = [
    { pid: 100, ppid: 1, comm: 'nginx', via: 'pid' as const },
    { pid: 101, ppid: 100, comm: 'nginx', via: 'descendant' as const },
    { pid: 102, ppid: 100, comm: 'nginx', via: 'descendant' as const },
  ];
  assert.equal(attachedLine(attached), '100 nginx + 2 descendants: 101, 102');
  assert.equal(attachedLine([{ pid: 7, ppid: 1, comm: 'redis-server', via: 'comm' }]), '7 redis-server (--comm)');
  assert.equal(attachedLine([]), 'nothing at the attach');
  assert.deepEqual(childrenLeftOutNotes([{ pid: 100, children: [101, 102] }]), ['pid 100 had 2 child processes at the attach (101, 102), not traced (--no-children).']);
  const report = assembleReport({ ...inputs({}), attach: { targets: [{ kind: 'pid', pid: 100, comm: 'nginx', argv: [] }], attached, childrenLeftOut: [], preexisting: [], namespaces: new Map() } });
  assert.deepEqual(report.attached, attached);
  assert.match(renderReport(report, { color: false }), /^attached  100 nginx \+ 2 descendants: 101, 102$/m);
});

// ---------------------------------------------------------------- the command line

test('run without --: the error says the command goes after --; --help says -o - moves its stdout', async () => {
  const never = async () => assert.fail('no action runs');
  const actions = { run: never, attach: never, report: never, doctor: never, cleanup: never };
  const cli = async (...argv: string[]) => {
    let out = '';
    let err = '';
    const code = await runCli(['node', 'proctap', ...argv], actions, { out: (s) => void (out += s), err: (s) => void (err += s) });
    return { code, out, err };
  };
  const missing = await cli('run', 'curl', '-s', 'http://127.0.0.1:1/');
  assert.equal(missing.code, 2);
  assert.equal(missing.err, "error: unknown option '-s'; the command goes after --, as in: proctap run [options] -- curl -s http://127.0.0.1:1/ (proctap --help for usage)\n");
  const own = await cli('run', '-s', '--', 'true'); // proctap's own option misspelt: no such hint
  assert.equal(own.err, "error: unknown option '-s' (proctap --help for usage)\n");
  const help = await cli('run', '--help');
  assert.match(help.out.replace(/\s+/g, ' '), /"-" for stdout; run then moves the command's own stdout to stderr/);
});
