// SPDX-License-Identifier: MIT
// Query normalisation as pg_stat_statements does it (PostgreSQL 15), on the texts pgbench and psql send
// and the normalised texts the server showed for them (test/e2e/l7-postgres.test.ts compares live).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeQuery } from '../../src/l7/sql';

test('a unary minus is part of its constant; a binary one is not', () => {
  assert.equal(normalizeQuery('UPDATE pgbench_accounts SET abalance = abalance + -4213 WHERE aid = 52;'), 'update pgbench_accounts set abalance = abalance + $1 where aid = $2');
  assert.equal(normalizeQuery('UPDATE pgbench_accounts SET abalance = abalance + 4213 WHERE aid = 52;'), 'update pgbench_accounts set abalance = abalance + $1 where aid = $2');
  assert.equal(normalizeQuery('select -1, - 2.5, (-3), a-4, a - 5 from t where x = -6'), 'select $1, $2, ($3), a-$4, a - $5 from t where x = $6');
});

test('a trailing semicolon is not part of the statement', () => {
  assert.equal(normalizeQuery('BEGIN;'), 'begin');
  assert.equal(normalizeQuery('END; \n'), 'end');
  assert.equal(normalizeQuery('select 1; select 2;'), 'select $1; select $2');
});

test('TRUE and FALSE are constants, except after IS; GROUP BY and ORDER BY ordinals stay', () => {
  // pgbench's partition probe, and what pg_stat_statements showed for it
  const probe =
    'select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = \'pgbench_accounts\' and o.n is not null group by 1, 2 order by 1 asc limit 1';
  const shown =
    'select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas($1), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = $2 and o.n is not null group by 1, 2 order by 1 asc limit $3';
  assert.equal(normalizeQuery(probe), shown);
  assert.equal(normalizeQuery(shown), shown);
  assert.equal(normalizeQuery('select * from t where b is true and c is not false and d = FALSE'), 'select * from t where b is true and c is not false and d = $1');
  assert.equal(normalizeQuery('select f(1, 2) from t group by x + 1 order by f(3, 4), 2 desc nulls last'), 'select f($1, $2) from t group by x + $3 order by f($4, $5), 2 desc nulls last');
  assert.equal(normalizeQuery('select a from t order by 1) limit 3'), 'select a from t order by 1) limit $1');
});
