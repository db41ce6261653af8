/**
 * The generic plans of the per-batch statements that PostgreSQL keeps planning per call (custom
 * plans), and of the log's tail read, on empty tables and on tables of --rows rows (before and after
 * ANALYZE): why those statements stay unnamed, and that the tail read's cached plan uses the index.
 *
 *   npx tsx bench/plan-cache.ts [--rows 200000]
 *
 * Which statements are planned per call: run bench/gateway.ts with BENCH_PG_STAT_STATEMENTS=<file>
 * (pg_stat_statements' calls and plans per statement, written when its PostgreSQL stops).
 */
import { Pool } from 'pg';
import { migrate } from '../adapters/postgres/migrate';
import { migrations } from '../adapters/postgres/migrations';
import { KNOWN_REVISIONS_SQL, ONE_EVENT_EXISTING_SQL } from '../adapters/eventstore/postgres/append';
import { TAIL_SQL } from '../adapters/eventstore/postgres/store';
import { flag, startBenchPostgres } from './support/embedded-postgres';

if (process.argv.includes('--help')) {
  console.log(`Generic (cached) plans of the statements PostgreSQL keeps re-planning, on small and large tables.

  npx tsx bench/plan-cache.ts [--rows 200000]

  --rows N   rows put in each table (events, expiries, usage_open_reservations, low-balance tables)

Prints EXPLAIN of each statement under plan_cache_mode = force_generic_plan: on empty tables, then
with N rows before and after ANALYZE. A generic plan is built once per connection and kept until a
table's statistics change; where it differs from the per-call plan (a seq scan on an empty table),
the statement stays unnamed. For planning counts per statement under load, run bench/gateway.ts with
BENCH_PG_STAT_STATEMENTS=<file>.`);
  process.exit(0);
}

const STATEMENTS: [string, string][] = [
  [
    'lba_balances',
    `PREPARE s1(text[]) AS SELECT account_id, available::text, last_top_up::text, below FROM low_balance_alert_balances WHERE account_id = ANY($1)`,
  ],
  ['lba_settings', `PREPARE s2(text[]) AS SELECT account_id, thresholds FROM low_balance_alert_settings WHERE account_id = ANY($1)`],
  [
    'expiries_done',
    `PREPARE s3(text[], text[], text[]) AS DELETE FROM expiries e USING unnest($1::text[], $2::text[], $3::text[]) AS d(kind, stream_id, item_id)
          WHERE e.kind = d.kind AND e.stream_id = d.stream_id AND e.item_id = d.item_id`,
  ],
  ['tail_read', `PREPARE s5(text, bigint, int) AS ${TAIL_SQL}`],
  ['append_batch', `PREPARE s6 AS ${KNOWN_REVISIONS_SQL}`],
  ['append_one', `PREPARE s7 AS ${ONE_EVENT_EXISTING_SQL}`],
  [
    'usage_end',
    `PREPARE s4(text[], text[]) AS DELETE FROM usage_open_reservations o USING unnest($1::text[], $2::text[]) AS d(account_id, request_id)
          WHERE o.account_id = d.account_id AND o.request_id = d.request_id
          RETURNING o.account_id, o.request_id, o.key_id, o.model, o.operation`,
  ],
];
const EXEC = [
  "EXPLAIN EXECUTE s1(ARRAY['acct-5'])",
  "EXPLAIN EXECUTE s2(ARRAY['acct-5'])",
  "EXPLAIN EXECUTE s3(ARRAY['reservation'], ARRAY['acct-5'], ARRAY['r-5'])",
  "EXPLAIN EXECUTE s4(ARRAY['acct-5'], ARRAY['r-5'])",
  "EXPLAIN EXECUTE s5('0', 0, 1000)",
  "EXPLAIN EXECUTE s6('{}', '{}', '{s-5}', '{0}', '{1}', '{00000000-0000-0000-0000-000000000001}', '{s-5}', '{1}', '{E}', '{\"{}\"}', '{\"{}\"}')",
  "EXPLAIN EXECUTE s7('s-5', '0', '1', '00000000-0000-0000-0000-000000000001', 'E', '{}', '{}')",
];

async function explainAll(pool: Pool, label: string) {
  const c = await pool.connect();
  try {
    await c.query('SET plan_cache_mode = force_generic_plan');
    for (const [, sql] of STATEMENTS) await c.query(sql);
    for (const e of EXEC) {
      const { rows } = await c.query(e);
      console.log(`--- ${label}: ${e}`);
      for (const r of rows) console.log(r['QUERY PLAN']);
    }
  } finally {
    c.release(true);
  }
}

async function main(): Promise<void> {
  const pg = await startBenchPostgres();
  const pool = new Pool({ connectionString: pg.url });
  try {
    await migrate(pool, migrations);
    await explainAll(pool, 'empty tables');
    const n = flag('--rows', 200_000);
    await pool.query(`INSERT INTO low_balance_alert_balances (account_id, available) SELECT 'acct-' || i, i FROM generate_series(1, ${n}) i`);
    await pool.query(
      `INSERT INTO low_balance_alert_settings (account_id, url, thresholds, secret_ciphertext) SELECT 'acct-' || i, 'https://x', '[]', 'x' FROM generate_series(1, ${n / 10}) i`,
    );
    await pool.query(
      `INSERT INTO expiries (kind, stream_id, item_id, expires_at) SELECT 'reservation', 'acct-' || (i % 1000), 'r-' || i, now() + i * interval '1 second' FROM generate_series(1, ${n}) i`,
    );
    await pool.query(
      `INSERT INTO usage_open_reservations (account_id, request_id, key_id, model, operation) SELECT 'acct-' || (i % 1000), 'r-' || i, 'k', 'm', 'chat' FROM generate_series(1, ${n}) i`,
    );
    await pool.query(`INSERT INTO streams (stream_id, revision) SELECT 's-' || i, 0 FROM generate_series(1, ${n}) i`);
    await pool.query(
      `INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata) SELECT gen_random_uuid(), 's-' || i, 0, 'E', '{}', '{}' FROM generate_series(1, ${n}) i`,
    );
    await explainAll(pool, `${n} rows, before ANALYZE`);
    await pool.query('ANALYZE');
    await explainAll(pool, `${n} rows, analyzed`);
  } finally {
    await pool.end();
    await pg.stop();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
