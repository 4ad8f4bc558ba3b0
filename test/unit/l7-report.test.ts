// SPDX-License-Identifier: MIT
// The report's `l7` section (report/l7.ts), its terminal section (render/table.ts) and the NDJSON
// exchange lines (render/l7-events.ts), from exchanges decoded through the model's L7 view.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DataRecord, FlowKey } from '../../src/kernel/records';
import { TraceModel } from '../../src/model/model';
import type { L7Endpoint, L7Event } from '../../src/model/l7';
import { L7Aggregator } from '../../src/analysis/l7-aggregate';
import { l7Section, type L7Inputs } from '../../src/report/l7';
import { renderReport } from '../../src/render/table';
import { exchangeEvent } from '../../src/render/l7-events';
import type { LostCounters, Report } from '../../src/schema/report';
import { emptyReport } from './synthreport';
import { bytes } from './l7wire';

const PID = 42;

function key(cookie: bigint, port: number, remoteAddr = '127.0.0.1'): FlowKey {
  return { id: `${cookie}/${PID}/0/6/${remoteAddr}/${port}`, cookie, tgid: PID, startTime: 0n, family: 2, proto: 6, remoteAddr, remotePort: port, raw: new Uint8Array(40) };
}

/** The model fed one flow's calls; the session's part (aggregator, endpoint labels) done here. */
function decode(flows: Array<{ k: FlowKey; calls: Array<['tx' | 'rx', string]> }>, lost = 0): { inputs: L7Inputs; lostCounters: LostCounters; events: L7Event[] } {
  const m = new TraceModel();
  const aggregator = new L7Aggregator();
  const endpoints = new Map<string, L7Endpoint>();
  const events: L7Event[] = [];
  m.enableL7({
    fromStart: true,
    onExchange: (e) => {
      events.push(e);
      aggregator.add({ pid: e.pid, endpoint: e.endpoint.label, connection: String(e.socket), exchange: e.exchange });
      endpoints.set(e.endpoint.label, e.endpoint);
    },
  });
  for (const { k, calls } of flows) {
    const offset = { tx: 0, rx: 0 };
    calls.forEach(([direction, text], i) => {
      const b = bytes(text);
      const r: DataRecord = { type: 'data', tgid: PID, tsNs: 1e9 + i * 2e6, startTime: 0n, key: k, offset: offset[direction], length: b.length, tid: PID, direction, source: 'socket', flags: [], kernelClass: 'http1', bytes: b };
      offset[direction] += b.length;
      m.onRecord(r);
    });
  }
  m.l7!.finish(2e9);
  const lostCounters: LostCounters = { records: lost, recordsByKind: { data: lost }, flowTableFullCalls: 0, flowTableFullBytes: 0, tracedTableFull: 0, procConnectorOverflows: 0 };
  return { inputs: { snaplen: 4096, summary: aggregator.summary(), evidence: aggregator.evidence(), counts: m.l7!.counts, endpoints, maxDecoders: 2048 }, lostCounters, events };
}

const http = {
  k: key(1n, 80),
  calls: [
    ['tx', 'GET /users?id=7 HTTP/1.1\r\nHost: api.test\r\n\r\n'],
    ['rx', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'],
    ['tx', 'GET /users?id=8 HTTP/1.1\r\nHost: api.test\r\n\r\n'],
    ['rx', 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}'],
    ['tx', 'DELETE /users/1 HTTP/1.1\r\nHost: api.test\r\n\r\n'],
    ['rx', 'HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n'],
    ['tx', 'GET /never HTTP/1.1\r\nHost: api.test\r\n\r\n'],
  ] as Array<['tx' | 'rx', string]>,
};
const redis = { k: key(2n, 6379), calls: [['tx', '*2\r\n$3\r\nGET\r\n$1\r\nk\r\n'], ['rx', '$-1\r\n'], ['tx', '*1\r\n$5\r\nPINGX\r\n'], ['rx', '-ERR unknown command\r\n']] as Array<['tx' | 'rx', string]> };
const junk = { k: key(3n, 9000), calls: [['tx', '\x00\x01\x02 not a protocol'], ['rx', '\xff\xff']] as Array<['tx' | 'rx', string]> };

test('rows: counts, errors, bytes and latency per operation; method and path, command; endpoint fields and name source', () => {
  const { inputs, lostCounters } = decode([http, redis, junk]);
  const l7 = l7Section(inputs, lostCounters);
  assert.equal(l7.exchanges, 6);
  const get = l7.rows.find((r) => r.operation === 'GET /users?id=?')!;
  assert.deepEqual(
    { count: get.count, errors: get.errors, method: get.method, path: get.path, status: get.status, endpoint: get.endpoint, remoteAddr: get.remoteAddr, remotePort: get.remotePort, remoteName: get.remoteName, nameSource: get.nameSource, proto: get.proto },
    { count: 2, errors: 0, method: 'GET', path: '/users?id=?', status: '200', endpoint: 'api.test:80', remoteAddr: '127.0.0.1', remotePort: 80, remoteName: 'api.test', nameSource: 'host', proto: 'tcp' },
  );
  assert.equal(get.requestBytes, 2 * 'GET /users?id=7 HTTP/1.1\r\nHost: api.test\r\n\r\n'.length);
  assert.equal(get.latencyFirst!.count, 2);
  assert.equal(get.latencyFirst!.maxMs, 2, 'request at t, answer 2 ms later');
  const del = l7.rows.find((r) => r.method === 'DELETE')!;
  assert.deepEqual([del.status, del.errors], ['503', 1]);
  const never = l7.rows.find((r) => r.path === '/never')!;
  assert.deepEqual([never.status, never.latencyFirst], ['', null]);
  const cmds = l7.rows.filter((r) => r.protocol === 'redis').map((r) => `${r.command} ${r.count} ${r.errors} ${r.endpoint}`).sort();
  assert.deepEqual(cmds, ['get 1 0 127.0.0.1:6379', 'pingx 1 1 127.0.0.1:6379']);
  assert.deepEqual(l7.connections, { total: 3, decoded: 2, unknown: 1, undecodable: 0, opaque: 0, evicted: 0, tlsPlaintext: 0 });
  assert.equal(l7.records.total, 13);
});

test('notes say what was not decoded and what was lost; none when everything was', () => {
  const clean = decode([{ k: http.k, calls: http.calls.slice(0, 4) }]);
  assert.deepEqual(l7Section(clean.inputs, clean.lostCounters).notes, []);
  const { inputs, lostCounters } = decode([http, junk], 3);
  const notes = l7Section(inputs, lostCounters).notes;
  assert.ok(notes.some((n) => /3 data records lost/.test(n)), notes.join('\n'));
  assert.ok(notes.some((n) => /1 connection looked like a decoded protocol .* matched none/.test(n)), notes.join('\n'));
  assert.equal(l7Section(inputs, lostCounters).records.lost, 3);
});

test('terminal: an L7 section with its rows and notes when --l7 was on, none otherwise', () => {
  const base: Report = emptyReport();
  assert.doesNotMatch(renderReport(base, { color: false }), /L7 exchanges/);
  const { inputs, lostCounters } = decode([http, redis, junk]);
  const text = renderReport({ ...base, l7: l7Section(inputs, lostCounters) }, { color: false, width: 120 });
  assert.match(text, /L7 exchanges \(6; /);
  assert.match(text, /api\.test:80 \(host\) +http1 +DELETE \/users\/1 +503 +1 +1/);
  assert.match(text, /127\.0\.0\.1:6379 +redis +pingx +- +1 +1/);
  assert.match(text, /• L7: 1 connection looked like/);
  const none = l7Section(decode([]).inputs, decode([]).lostCounters);
  assert.match(renderReport({ ...base, l7: none }, { color: false }), /L7 exchanges: none/);
});

test('NDJSON: one exchange line with the common fields (type, tMs, pid), the endpoint and the exchange', () => {
  const { events } = decode([{ k: http.k, calls: http.calls.slice(0, 2) }]);
  assert.equal(events.length, 1);
  const line = JSON.parse(JSON.stringify(exchangeEvent(events[0], 0.5e9)));
  assert.deepEqual(
    { type: line.type, tMs: line.tMs, pid: line.pid, socket: line.socket, endpoint: line.endpoint, remoteName: line.remoteName, nameSource: line.nameSource, protocol: line.protocol, role: line.role, operation: line.operation, status: line.status, latencyFirstMs: line.latencyFirstMs, method: line.detail.method },
    { type: 'exchange', tMs: 500, pid: PID, socket: '1', endpoint: 'api.test:80', remoteName: 'api.test', nameSource: 'host', protocol: 'http1', role: 'client', operation: 'GET /users?id=?', status: '200', latencyFirstMs: 2, method: 'GET' },
  );
  assert.equal('startTimeNs' in line, false, 'start time unknown: no field, as the other lines');
});
