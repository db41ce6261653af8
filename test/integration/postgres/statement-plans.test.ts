/**
 * Plans of the statements that run per request or per projection batch: a named statement is
 * parsed once per connection and, after PostgreSQL's five custom plans, runs on a cached generic
 * plan; the tail read's generic plan must walk the global-order index however large the log.
 */
import type { Pool, PoolClient } from 'pg';
import { eventStoreMigrations } from '../../../adapters/eventstore/postgres';
import { TAIL_SQL } from '../../../adapters/eventstore/postgres/store';
import { migrate } from '../../../adapters/postgres/migrate';
import { createPool } from '../../../adapters/postgres/pool';
import { saveCheckpoints } from '../../../src/read-models/checkpoints';
import { createTestDatabase } from '../../support/database';

let pool: Pool;

beforeAll(async () => {
  pool = createPool({ connectionString: await createTestDatabase('plans'), max: 2 });
  await migrate(pool, eventStoreMigrations);
});
afterAll(() => pool.end());

async function withClient<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await work(client);
  } finally {
    client.release(true); // a fresh session for the next test: no prepared statements or settings carried over
  }
}

test('the per-batch checkpoint save is a named statement: after five custom plans PostgreSQL reuses one generic plan', async () => {
  const counts = await withClient(async (client) => {
    for (let i = 1; i <= 8; i++) await saveCheckpoints(client, ['plans-a', 'plans-b'], { tx: BigInt(i), seq: BigInt(i) });
    const { rows } = await client.query<{ generic_plans: string; custom_plans: string }>(
      "SELECT generic_plans::text, custom_plans::text FROM pg_prepared_statements WHERE name = 'tollgate_save_checkpoints'",
    );
    return rows;
  });
  // Unnamed, it would be parsed and planned on each of the 8 calls (and be in no such view).
  expect(counts).toEqual([{ generic_plans: '3', custom_plans: '5' }]);
  const saved = await pool.query<{ name: string; tx: string }>("SELECT name, tx::text AS tx FROM checkpoints WHERE name LIKE 'plans-%' ORDER BY name");
  expect(saved.rows).toEqual([
    { name: 'plans-a', tx: '8' },
    { name: 'plans-b', tx: '8' },
  ]);
});

async function tailReadGenericPlan(): Promise<string> {
  return withClient(async (client) => {
    // What PostgreSQL runs once it switches the named tail read to its generic plan.
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(`PREPARE tail_read(text, bigint, int) AS ${TAIL_SQL}`);
    const { rows } = await client.query<{ 'QUERY PLAN': string }>("EXPLAIN EXECUTE tail_read('0', 0, 1000)");
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  });
}

test("the tail read's generic plan walks events_global_order on an empty log and on a 100k-event one, never a seq scan of events", async () => {
  const plans = [await tailReadGenericPlan()];
  await pool.query("INSERT INTO streams (stream_id, revision) SELECT 'plans-' || i, 0 FROM generate_series(1, 100000) i");
  await pool.query(
    "INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata) SELECT gen_random_uuid(), 'plans-' || i, 0, 'E', '{}', '{}' FROM generate_series(1, 100000) i",
  );
  plans.push(await tailReadGenericPlan());
  await pool.query('ANALYZE events');
  plans.push(await tailReadGenericPlan());
  for (const plan of plans) {
    expect(plan).toMatch(/Index Scan using events_global_order on events e/);
    expect(plan).not.toMatch(/Seq Scan on events/);
  }
});
