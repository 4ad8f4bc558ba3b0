// SPDX-License-Identifier: MIT
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeQuery, tagRows } from '../../src/l7/sql';
import { briefs, concat, everySplit, pieces, run, type Call } from './l7wire';

const i32 = (v: number) => [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const i16 = (v: number) => [(v >> 8) & 0xff, v & 0xff];
const cstr = (s: string) => [...Buffer.from(s, 'utf8'), 0];
/** A typed message: type byte, int32 length (itself included), payload. */
const msg = (type: string, payload: number[] = []) => new Uint8Array([type.charCodeAt(0), ...i32(payload.length + 4), ...payload]);
const startup = (user: string, db: string) => {
  const payload = [...i32(196608), ...cstr('user'), ...cstr(user), ...cstr('database'), ...cstr(db), 0];
  return new Uint8Array([...i32(payload.length + 4), ...payload]);
};
const sslRequest = new Uint8Array([...i32(8), ...i32(80877103)]);
const ready = (status = 'I') => msg('Z', [status.charCodeAt(0)]);
const complete = (tag: string) => msg('C', cstr(tag));
const rowDescription = msg('T', [...i16(1), ...cstr('abalance'), ...i32(0), ...i16(0), ...i32(23), ...i16(4), ...i32(-1), ...i16(0)]);
const dataRow = (v: string) => msg('D', [...i16(1), ...i32(v.length), ...Buffer.from(v)]);
const errorResponse = (code: string) => msg('E', [...Buffer.from('S'), ...cstr('ERROR'), ...Buffer.from('V'), ...cstr('ERROR'), ...Buffer.from('C'), ...cstr(code), ...Buffer.from('M'), ...cstr('relation "nope" does not exist'), 0]);
const query = (q: string) => msg('Q', cstr(q));
const parse = (name: string, q: string) => msg('P', [...cstr(name), ...cstr(q), ...i16(0)]);
const bind = (portal: string, stmt: string, value: string) => msg('B', [...cstr(portal), ...cstr(stmt), ...i16(0), ...i16(1), ...i32(value.length), ...Buffer.from(value), ...i16(0)]);
const describePortal = (portal: string) => msg('D', [0x50, ...cstr(portal)]);
const execute = (portal: string) => msg('E', [...cstr(portal), ...i32(0)]);
const sync = msg('S');

function session(): { calls: Call[]; sizes: Array<[number, number]> } {
  const server1 = concat(msg('R', i32(0)), msg('S', [...cstr('server_version'), ...cstr('16.4')]), msg('K', [...i32(1234), ...i32(5678)]), ready());
  const q1 = query('SELECT * FROM accounts WHERE id = 42 AND name = \'bob\'');
  const r1 = concat(rowDescription, dataRow('7'), complete('SELECT 1'), ready());
  const q2 = query('select * from nope');
  const r2 = concat(errorResponse('42P01'), ready());
  // pgbench -M extended: Parse/Bind/Describe/Execute/Sync, answered 1 2 T D C Z.
  const x1 = concat(parse('', 'SELECT abalance FROM pgbench_accounts WHERE aid = $1'), bind('', '', '17'), describePortal(''), execute(''), sync);
  const y1 = concat(msg('1'), msg('2'), rowDescription, dataRow('0'), complete('SELECT 1'), ready());
  // A named statement, bound twice in one group: two exchanges, the Sync with the second.
  const x2 = concat(parse('s1', 'UPDATE t SET v = v + $1 WHERE k = 5'), bind('', 's1', '1'), execute(''), bind('', 's1', '2'), execute(''), sync);
  const y2a = concat(msg('1'), msg('2'), complete('UPDATE 1'));
  const y2b = concat(msg('2'), complete('UPDATE 3'), ready());
  const calls: Call[] = [
    { dir: 'tx', bytes: startup('bench', 'pgbench'), tsNs: 1 },
    { dir: 'rx', bytes: server1, tsNs: 2 },
    { dir: 'tx', bytes: q1, tsNs: 3 },
    { dir: 'rx', bytes: r1, tsNs: 4 },
    { dir: 'tx', bytes: q2, tsNs: 5 },
    { dir: 'rx', bytes: r2, tsNs: 6 },
    { dir: 'tx', bytes: x1, tsNs: 7 },
    { dir: 'rx', bytes: y1, tsNs: 8 },
    { dir: 'tx', bytes: x2, tsNs: 9 },
    { dir: 'rx', bytes: concat(y2a, y2b), tsNs: 10 },
  ];
  const x2a = parse('s1', 'UPDATE t SET v = v + $1 WHERE k = 5').length + bind('', 's1', '1').length + execute('').length;
  const sizes: Array<[number, number]> = [
    [startup('bench', 'pgbench').length, server1.length], [q1.length, r1.length], [q2.length, r2.length], [x1.length, y1.length],
    [x2a, y2a.length], [x2.length - x2a, y2b.length],
  ];
  return { calls, sizes };
}

test('PostgreSQL: startup, simple and extended queries, tags, errors with SQLSTATE, exact sizes', () => {
  const { calls, sizes } = session();
  const { exchanges, decoder } = run(calls);
  assert.equal(decoder.status.protocol, 'postgres');
  assert.equal(decoder.status.role, 'client');
  assert.deepEqual(exchanges.map((x) => `${x.operation} | ${x.status}`), [
    'startup | OK',
    "select * from accounts where id = $1 and name = $2 | SELECT",
    'select * from nope | 42P01',
    'select abalance from pgbench_accounts where aid = $1 | SELECT',
    'update t set v = v + $1 where k = $2 | UPDATE',
    'update t set v = v + $1 where k = $2 | UPDATE',
  ]);
  assert.deepEqual(exchanges.map((x) => [x.requestBytes, x.responseBytes]), sizes);
  assert.equal(exchanges[2].error, true);
  const d = exchanges[2].detail;
  assert.ok(d.kind === 'postgres' && d.errorSeverity === 'ERROR' && d.errorCode === '42P01');
  const s = exchanges[0].detail;
  assert.ok(s.kind === 'postgres' && s.user === 'bench' && s.database === 'pgbench');
  const e = exchanges[5].detail;
  assert.ok(e.kind === 'postgres' && e.mode === 'extended' && e.rows === 3);
  assert.ok(exchanges.every((x) => !x.partial));
});

test('PostgreSQL: split at every byte boundary and in 1-byte pieces, the exchanges are the same', () => {
  const { calls } = session();
  const want = briefs(run(calls).exchanges);
  assert.equal(want.length, 6);
  const r = everySplit(calls);
  assert.equal(r.mismatch, null);
  assert.deepEqual(briefs(run(pieces(calls, 1)).exchanges), want);
});

test('PostgreSQL: SSLRequest answered N then a startup; answered S the connection is opaque (TLS)', () => {
  const no = run([
    { dir: 'tx', bytes: sslRequest, tsNs: 1 }, { dir: 'rx', bytes: new Uint8Array([0x4e]), tsNs: 2 },
    { dir: 'tx', bytes: startup('u', 'd'), tsNs: 3 }, { dir: 'rx', bytes: concat(msg('R', i32(0)), ready()), tsNs: 4 },
    { dir: 'tx', bytes: query('SELECT 1'), tsNs: 5 }, { dir: 'rx', bytes: concat(complete('SELECT 1'), ready()), tsNs: 6 },
  ]);
  assert.deepEqual(no.exchanges.map((x) => `${x.operation} ${x.status}`), ['SSLRequest N', 'startup OK', 'select $1 SELECT']);
  const yes = run([{ dir: 'tx', bytes: sslRequest, tsNs: 1 }, { dir: 'rx', bytes: new Uint8Array([0x53]), tsNs: 2 }, { dir: 'tx', bytes: new Uint8Array([0x16, 3, 1, 0, 5, 1, 0, 0, 1, 0]), tsNs: 3 }]);
  assert.deepEqual(yes.exchanges.map((x) => `${x.operation} ${x.status}`), ['SSLRequest S']);
  assert.equal(yes.decoder.status.state, 'opaque');
});

test('PostgreSQL server side and mid-stream: a run of whole messages tells the side', () => {
  const calls: Call[] = [
    { dir: 'rx', bytes: query('SELECT now()'), tsNs: 1 },
    { dir: 'tx', bytes: concat(rowDescription, dataRow('x'), complete('SELECT 1'), ready()), tsNs: 2 },
  ];
  const { exchanges, decoder } = run(calls, { transport: 'tcp', fromStart: false });
  assert.equal(decoder.status.role, 'server');
  assert.deepEqual(exchanges.map((x) => `${x.role} ${x.operation} ${x.status}`), ['server select now() SELECT']);
  // Extended error: the server skips to the Sync; the second Execute of the group is skipped.
  const err = run([
    { dir: 'tx', bytes: startup('u', 'd'), tsNs: 1 }, { dir: 'rx', bytes: concat(msg('R', i32(0)), ready()), tsNs: 2 },
    { dir: 'tx', bytes: concat(parse('', 'SELECT 1/0'), bind('', '', 'x'), execute(''), parse('', 'SELECT 2'), bind('', '', 'y'), execute(''), sync), tsNs: 3 },
    { dir: 'rx', bytes: concat(msg('1'), msg('2'), errorResponse('22012'), ready()), tsNs: 4 },
  ]);
  assert.deepEqual(err.exchanges.map((x) => `${x.operation} ${x.status}`), ['startup OK', 'select $1/$2 22012', 'select $1 skipped']);
});

test('PostgreSQL: a DataRow past the copy limit is skipped by length; a gap at a message header stops decoding', () => {
  const big = dataRow('z'.repeat(50_000));
  const calls: Call[] = [
    { dir: 'tx', bytes: query('SELECT big FROM t'), tsNs: 1 },
    { dir: 'rx', bytes: concat(rowDescription, big).subarray(0, 4096), length: rowDescription.length + big.length, tsNs: 2 },
    { dir: 'rx', bytes: concat(complete('SELECT 1'), ready()), tsNs: 3 },
  ];
  const [x] = run(calls, { transport: 'tcp', fromStart: false }).exchanges;
  assert.equal(x.status, 'SELECT');
  assert.equal(x.responseBytes, rowDescription.length + big.length + complete('SELECT 1').length + ready().length);
  const lost = run(session().calls, { transport: 'tcp' }, {}, new Set([3]));
  assert.equal(lost.decoder.status.state, 'undecodable');
  assert.deepEqual(lost.exchanges.map((e) => e.operation).slice(0, 1), ['startup']);
});

test('query normalisation: literals to $n after the existing parameters, comments and case folded', () => {
  assert.equal(normalizeQuery("SELECT * FROM t WHERE a = 'x''y' AND b = 3.5e2 /* id=9 */ -- tail\n AND c = $1"), 'select * from t where a = $2 and b = $3 and c = $1');
  assert.equal(normalizeQuery('INSERT INTO "Users"(id, n) VALUES (12, E\'a\\\'b\'), (0x1F, $$dollar$$)'), 'insert into "Users"(id, n) values ($1, $2), ($3, $4)');
  assert.equal(normalizeQuery('select   x1\n\tfrom t2'), 'select x1 from t2');
  assert.equal(normalizeQuery('SELECT $tag$ a $ b $tag$, 1'), 'select $1, $2');
  assert.equal(tagRows('INSERT 0 5'), 5);
  assert.equal(tagRows('CREATE TABLE'), null);
});
