/** The projection runner's transaction: what a batch is applied in. */
import { randomUUID } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { createPostgresEventStore, eventStoreMigrations } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { createPool } from '../../../adapters/postgres/pool';
import { runProjection, type SqlProjection } from '../../../src/read-models/runner';
import { inTransaction } from '../../../src/read-models/transaction';
import { testEventCodec, type TestEvent } from '../../contract/event-store.contract';
import { createTestDatabase } from '../../support/database';

let pool: Pool;

beforeAll(async () => {
  pool = createPool({ connectionString: await createTestDatabase('projtx'), max: 6 });
  await migrate(pool, eventStoreMigrations);
});
afterAll(() => pool.end());

const setting = async (client: PoolClient) => (await client.query<{ synchronous_commit: string }>('SHOW synchronous_commit')).rows[0]!.synchronous_commit;

test('inTransaction commits asynchronously only when asked, and only that transaction', async () => {
  expect(await inTransaction(pool, setting)).toBe('on');
  const client = await pool.connect();
  try {
    await client.query('BEGIN; SET LOCAL synchronous_commit = off');
    await client.query('COMMIT');
    // SET LOCAL ends with its transaction: the pooled connection is as it was.
    expect(await setting(client)).toBe('on');
  } finally {
    client.release();
  }
  expect(await inTransaction(pool, setting, { asynchronousCommit: true })).toBe('off');
  expect(await inTransaction(pool, setting)).toBe('on');
});

test('a projection batch is applied in an asynchronously committed transaction (SET LOCAL holds only inside one)', async () => {
  const store = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 50 });
  const seen: string[] = [];
  const projection: SqlProjection<TestEvent> = {
    name: `probe-${randomUUID()}`,
    async apply(client, events) {
      if (events.length > 0) seen.push(await setting(client));
    },
    async reset() {},
  };
  const running = runProjection(pool, store, projection, { batchMs: 20 });
  try {
    const { lastPosition } = await store.appendToStream(
      `probe-${randomUUID()}`,
      [{ id: randomUUID(), event: { type: 'Deposited', data: { amount: 1n, note: '' } } }],
      {
        expectedVersion: 'no_stream',
      },
    );
    await running.reached(lastPosition, 20_000);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((s) => s === 'off')).toBe(true);
  } finally {
    await running.stop();
    await store.close();
  }
});
