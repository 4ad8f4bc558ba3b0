// SPDX-License-Identifier: MIT
// The L7 view of PostgreSQL against a real server (issue 15): a cluster of the test's own on loopback.
// From the client side, pgbench's TPC-B script over the simple and the extended protocol and psql traced
// with `run --l7`; from the server side, `attach --l7` to the postmaster while untraced pgbench runs.
// Either way the report's rows per normalised query equal pg_stat_statements' calls (the server's own
// count of each statement it completed), a query on a missing table is an error row with as many
// 42P01 ErrorResponses as the server log has, and the startup exchanges are the connections the server
// log authorised.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeQuery } from '../../src/l7/sql';
import type { L7RowReport } from '../../src/schema/l7';
import { proctapRun, tempDir } from './harness';
import { alive, attachL7, bump, l7Of, machineState, ndjson, startPostgres, type Postgres } from './l7-servers';

const TRANSACTIONS = 500; // per client; 2 clients, 7 statements each (BEGIN .. END)
const UPDATE = normalizeQuery('UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;');
const MISSING = 'SELECT * FROM missing_table';
/** Exchanges per connection, not statements. */
const SESSION = new Set(['startup', 'SSLRequest']);

let pg: Postgres;
let dir = '';
let stateBefore: ReturnType<typeof machineState>;
let conn: string[] = [];

before(async () => {
  stateBefore = machineState();
  pg = await startPostgres();
  dir = tempDir();
  fs.chmodSync(dir, 0o777);
  pg.psql('postgres', 'CREATE DATABASE bench');
  conn = ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres'];
  const init = spawnSync('pgbench', [...conn, '-i', '-q', 'bench'], { encoding: 'utf8' });
  assert.equal(init.status, 0, init.stderr);
});

after(async () => {
  await pg?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  assert.equal(alive(pg.pid), false, 'postgres stopped');
  assert.deepEqual(machineState(), stateBefore, 'links, namespaces, nft, cgroups and BPF programs as before');
});

/** The shell commands of the workload: pgbench in both modes, psql once fine and `failing` times on a missing table. */
function workload(failing: number): string {
  const bench = (mode: string) => `pgbench ${conn.join(' ')} -n -c 2 -t ${TRANSACTIONS} -M ${mode} bench > /dev/null`;
  const psql = (sql: string) => `psql -X -q ${conn.join(' ')} -d bench -c "${sql}"`;
  return [
    bench('simple'),
    bench('extended'),
    psql('SELECT count(*) FROM pgbench_accounts WHERE bid = 1') + ' > /dev/null',
    // psql exits 1 when the server answered with an error: that is the expected outcome here
    ...Array.from({ length: failing }, () => `{ ${psql(MISSING)} 2>/dev/null; test $? -eq 1; }`),
  ].join(' && ');
}

/** Every check against the server's counters, for rows of `role` ('client' under run, 'server' under attach). */
function checkAgainstServer(t: { diagnostic: (s: string) => void }, rows: L7RowReport[], role: 'client' | 'server', serverLog: string, failing: number): void {
  assert.ok(rows.length > 0, 'no postgres rows');
  for (const r of rows) {
    assert.equal(r.role, role, `role of ${r.operation}`);
    assert.equal(r.partial, 0, `partial exchanges in ${r.operation}`);
  }
  // the server's count per statement: pg_stat_statements only counts statements that completed
  const server = new Map<string, number>();
  for (const s of pg.statements('bench')) bump(server, normalizeQuery(s.query), s.calls);
  const decoded = new Map<string, number>();
  for (const r of rows.filter((x) => !SESSION.has(x.operation))) if (r.count > r.errors) bump(decoded, r.operation, r.count - r.errors);
  t.diagnostic(`pg_stat_statements: ${JSON.stringify([...server].sort())}`);
  t.diagnostic(`report.l7 (count - errors): ${JSON.stringify([...decoded].sort())}`);
  assert.deepEqual([...decoded].sort(), [...server].sort(), 'per normalised query: decoded exchanges without error == pg_stat_statements calls');
  // and that is pgbench's script, so the counts can be told in advance too
  assert.equal(server.get(UPDATE), 2 * 2 * TRANSACTIONS, 'the server ran 2 modes x 2 clients x TRANSACTIONS account updates');
  for (const r of rows.filter((x) => x.operation === UPDATE)) assert.equal(r.query, UPDATE, 'the row names its query');

  // errors: the server logs each ErrorResponse it sent with its SQLSTATE first (log_line_prefix '%e ')
  const logged = serverLog.split('\n').filter((l) => /^42P01 ERROR: /.test(l)).length;
  assert.equal(logged, failing, `server log: ${serverLog}`);
  const missing = rows.filter((r) => r.operation === normalizeQuery(MISSING));
  assert.equal(missing.reduce((n, r) => n + r.count, 0), logged, 'exchanges of the failing query');
  assert.equal(missing.reduce((n, r) => n + r.errors, 0), logged, 'errors of the failing query == ErrorResponses the server logged');
  assert.equal(rows.reduce((n, r) => n + r.errors, 0), logged, 'no other errors');

  // startup exchanges: one per connection the server authorised while traced, each after an SSLRequest
  // (libpq's sslmode=prefer) the server declined (ssl is off)
  const connections = serverLog.split('\n').filter((l) => /connection authorized: user=postgres database=bench/.test(l)).length;
  const count = (op: string) => rows.filter((r) => r.operation === op).reduce((n, r) => n + r.count, 0);
  t.diagnostic(`connections authorised ${connections}, startup exchanges ${count('startup')}, SSLRequest ${count('SSLRequest')}`);
  assert.equal(connections, 2 * 3 + 1 + failing, 'connections logged: pgbench 1 + 2 per run, psql 1 + failing');
  assert.equal(count('startup'), connections, 'startup exchanges == connections the server authorised');
  assert.equal(count('SSLRequest'), connections, 'SSLRequest exchanges == connections');

  // latency: every exchange has a request and a response
  for (const r of rows) {
    assert.equal(r.latencyFirst?.count, r.count, `latencies of ${r.operation}`);
    const l = r.latencyLast!;
    assert.ok(l.p50Ms > 0 && l.p50Ms <= l.p90Ms && l.p90Ms <= l.p99Ms && l.p99Ms <= l.maxMs, `latency of ${r.operation}: ${JSON.stringify(l)}`);
  }
}

test('run: pgbench (simple, extended) and psql; per query the L7 rows equal pg_stat_statements calls; 42P01 errors as the server log has them', async (t) => {
  pg.psql('postgres', 'SELECT pg_stat_statements_reset()');
  const logFrom = pg.log().length;
  const events = path.join(dir, 'events.ndjson');
  const run = await proctapRun(['-q', '--l7', '--events', events, '--', 'sh', '-c', workload(2)]);
  const serverLog = pg.log().slice(logFrom);
  assert.equal(run.code, 0, `proctap run failed: ${run.stderr}`);
  assert.ok(run.report, 'no JSON report');
  const l7 = l7Of(run.report);
  t.diagnostic(`l7 records ${JSON.stringify(l7.records)}; notes: ${l7.notes.join(' | ')}`);
  assert.equal(l7.records.lost, 0, 'no data record lost in the kernel');
  const rows = l7.rows.filter((r) => r.protocol === 'postgres');
  for (const r of rows) assert.equal(r.endpoint, `127.0.0.1:${pg.port}`, `endpoint of ${r.operation}`);
  checkAgainstServer(t, rows, 'client', serverLog, 2);
  const c = l7.connections;
  assert.deepEqual([c.total, c.decoded, c.unknown, c.undecodable], [2 * 3 + 3, 2 * 3 + 3, 0, 0], `every connection decoded: ${JSON.stringify(c)}`);
  // the NDJSON event stream has one exchange line per exchange counted
  const exchanges = ndjson(events).filter((e) => e.type === 'exchange' && e.protocol === 'postgres');
  assert.equal(exchanges.length, rows.reduce((n, r) => n + r.count, 0), 'exchange events == exchanges in the rows');
});

test('attach to the postmaster: the backends forked for untraced pgbench and psql, server side, equal pg_stat_statements', async (t) => {
  pg.psql('postgres', 'SELECT pg_stat_statements_reset()');
  const proctap = await attachL7(pg.pid);
  const logFrom = pg.log().length;
  const client = spawn('sh', ['-c', workload(1)], { stdio: 'ignore' });
  const code = await new Promise<number | null>((resolve) => client.on('close', resolve));
  assert.equal(code, 0, 'the untraced workload ran');
  const report = await proctap.stop();
  const serverLog = pg.log().slice(logFrom);
  const l7 = l7Of(report);
  t.diagnostic(`l7 records ${JSON.stringify(l7.records)}; notes: ${l7.notes.join(' | ')}`);
  assert.equal(l7.records.lost, 0, 'no data record lost in the kernel');
  const rows = l7.rows.filter((r) => r.protocol === 'postgres');
  const backends = new Set(rows.map((r) => r.pid));
  for (const r of rows) {
    assert.equal(r.direction, 'inbound', `direction of ${r.operation}`);
    assert.equal(r.localPort, pg.port, `local port of ${r.operation}`);
    assert.notEqual(r.pid, pg.pid, 'the postmaster hands connections to its backends');
  }
  checkAgainstServer(t, rows, 'server', serverLog, 1);
  assert.equal(backends.size, 2 * 3 + 1 + 1, 'one backend per connection');
});
