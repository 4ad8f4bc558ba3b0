// SPDX-License-Identifier: MIT
// The L7 view of PostgreSQL against a real server (issue 15): a cluster of the test's own on loopback,
// pgbench's TPC-B script over the simple and the extended protocol and psql traced with `--l7`; the
// report's rows per normalised query equal pg_stat_statements' calls (the server's own count of each
// statement it ran), a query on a missing table is an error row with as many 42P01 ErrorResponses as the
// server log has, and the startup exchanges are the connections the server log authorised.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { normalizeQuery } from '../../src/l7/sql';
import { proctapRun, tempDir } from './harness';
import { alive, bump, l7Of, machineState, ndjson, startPostgres } from './l7-servers';

const TRANSACTIONS = 500; // per client; 2 clients, 7 statements each (BEGIN .. END)

test('pgbench (simple, extended) and psql: per query the L7 rows equal pg_stat_statements calls; 42P01 errors as the server log has them', async (t) => {
  const before = machineState();
  const pg = await startPostgres();
  const dir = tempDir();
  fs.chmodSync(dir, 0o777);
  try {
    pg.psql('postgres', 'CREATE DATABASE bench');
    const conn = ['-h', '127.0.0.1', '-p', String(pg.port), '-U', 'postgres'];
    const init = spawnSync('pgbench', [...conn, '-i', '-q', 'bench'], { encoding: 'utf8' });
    assert.equal(init.status, 0, init.stderr);
    pg.psql('postgres', 'SELECT pg_stat_statements_reset()');
    const logFrom = pg.log().length;

    const bench = (mode: string) => `pgbench ${conn.join(' ')} -n -c 2 -t ${TRANSACTIONS} -M ${mode} bench > /dev/null`;
    const psql = (sql: string) => `psql -X -q ${conn.join(' ')} -d bench -c "${sql}"`;
    const script = [
      bench('simple'),
      bench('extended'),
      psql('SELECT count(*) FROM pgbench_accounts WHERE bid = 1'),
      // psql exits 1 when the server answered with an error: that is the expected outcome here
      `{ ${psql('SELECT * FROM missing_table')} 2>/dev/null; test $? -eq 1; }`,
      `{ ${psql('SELECT * FROM missing_table')} 2>/dev/null; test $? -eq 1; }`,
    ].join(' && ');
    const events = path.join(dir, 'events.ndjson');
    const run = await proctapRun(['-q', '--l7', '--events', events, '--', 'sh', '-c', script]);
    const serverLog = pg.log().slice(logFrom);
    assert.equal(run.code, 0, `proctap run failed: ${run.stderr}`);
    assert.ok(run.report, 'no JSON report');
    const { records, notes } = l7Of(run.report);
    t.diagnostic(`l7 records ${JSON.stringify(records)}; notes: ${notes.join(' | ')}`);
    assert.equal(records.lost, 0, 'no data record lost in the kernel');
    const l7 = l7Of(run.report);
    const rows = l7.rows.filter((r) => r.protocol === 'postgres');
    assert.ok(rows.length > 0, `no postgres rows: ${JSON.stringify(l7)}`);
    for (const r of rows) {
      assert.equal(r.endpoint, `127.0.0.1:${pg.port}`, `endpoint of ${r.operation}`);
      assert.equal(r.role, 'client', `role of ${r.operation}`);
      assert.equal(r.partial, 0, `partial exchanges in ${r.operation}`);
    }

    // the server's count per statement: pg_stat_statements only counts statements that completed
    const server = new Map<string, number>();
    for (const s of pg.statements('bench')) bump(server, normalizeQuery(s.query), s.calls);
    const decoded = new Map<string, number>();
    const session = new Set(['startup', 'SSLRequest']); // per connection, not statements
    for (const r of rows.filter((x) => !session.has(x.operation))) if (r.count > r.errors) bump(decoded, r.operation, r.count - r.errors);
    t.diagnostic(`pg_stat_statements: ${JSON.stringify([...server].sort())}`);
    t.diagnostic(`report.l7 (count - errors): ${JSON.stringify([...decoded].sort())}`);
    assert.deepEqual([...decoded].sort(), [...server].sort(), 'per normalised query: decoded exchanges without error == pg_stat_statements calls');
    // and that is pgbench's script, so the counts can be told in advance too
    const update = normalizeQuery('UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;');
    assert.equal(server.get(update), 2 * 2 * TRANSACTIONS, 'the server ran 2 modes x 2 clients x TRANSACTIONS account updates');

    // errors: the server logs each ErrorResponse it sent with its SQLSTATE first (log_line_prefix '%e ')
    const logged = serverLog.split('\n').filter((l) => /^42P01 ERROR: /.test(l)).length;
    assert.equal(logged, 2, `server log: ${serverLog}`);
    const missing = rows.filter((r) => r.operation === normalizeQuery('SELECT * FROM missing_table'));
    assert.equal(missing.reduce((n, r) => n + r.count, 0), logged, 'exchanges of the failing query');
    assert.equal(missing.reduce((n, r) => n + r.errors, 0), logged, 'errors of the failing query == ErrorResponses the server logged');
    assert.equal(rows.reduce((n, r) => n + r.errors, 0), logged, 'no other errors');

    // startup exchanges: one per connection the server authorised while traced, each after an SSLRequest
    // (libpq's sslmode=prefer) the server declined (ssl is off)
    const connections = serverLog.split('\n').filter((l) => /connection authorized: user=postgres database=bench/.test(l)).length;
    const count = (op: string) => rows.filter((r) => r.operation === op).reduce((n, r) => n + r.count, 0);
    t.diagnostic(`connections authorised ${connections}, startup exchanges ${count('startup')}, SSLRequest ${count('SSLRequest')}`);
    assert.equal(connections, 2 * 3 + 3, 'connections logged: pgbench 1 + 2 per run, psql 3');
    assert.equal(count('startup'), connections, 'startup exchanges == connections the server authorised');
    assert.equal(count('SSLRequest'), connections, 'SSLRequest exchanges == connections');

    // latency: every exchange has a request and a response
    for (const r of rows) {
      assert.equal(r.latencyFirst?.count, r.count, `latencies of ${r.operation}`);
      const l = r.latencyLast!;
      assert.ok(l.p50Ms > 0 && l.p50Ms <= l.p90Ms && l.p90Ms <= l.p99Ms && l.p99Ms <= l.maxMs, `latency of ${r.operation}: ${JSON.stringify(l)}`);
    }

    // the NDJSON event stream has one exchange line per exchange counted
    const exchanges = ndjson(events).filter((e) => e.type === 'exchange' && e.protocol === 'postgres');
    assert.equal(exchanges.length, rows.reduce((n, r) => n + r.count, 0), 'exchange events == exchanges in the rows');
  } finally {
    await pg.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(alive(pg.pid), false, 'postgres stopped');
  assert.deepEqual(machineState(), before, 'links, namespaces, nft, cgroups and BPF programs as before');
});
