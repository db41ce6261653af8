/** PostgreSQL-specific behaviour beyond the shared contract (test/contract/postgres.test.ts). */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { firstValueFrom } from 'rxjs';
import {
  createPostgresEventStore,
  eventStoreMigration,
  readCheckpoint,
  saveCheckpoint,
  type PostgresEventStore,
} from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { createPool } from '../../../adapters/postgres/pool';
import { DuplicateEventIdError, START, VersionConflictError, type NewEvent } from '../../../src/ports/event-store';
import { testEventCodec, type TestEvent } from '../../contract/event-store.contract';
import { createTestDatabase } from '../../support/database';
import { until, within } from '../../support/wait';

let pool: Pool;
let store: PostgresEventStore<TestEvent>;

beforeAll(async () => {
  pool = createPool({ connectionString: await createTestDatabase('esunit'), max: 6 });
  await migrate(pool, [eventStoreMigration]);
  // A poll far longer than any wait below: a live event arriving in time proves NOTIFY woke it.
  store = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000 });
});
afterAll(async () => {
  await store.close();
  await pool.end();
});

const deposited = (amount: bigint): NewEvent<TestEvent> => ({ id: randomUUID(), event: { type: 'Deposited', data: { amount, note: '' } } });
const stream = (label: string) => `${label}-${randomUUID()}`;

/** Connections of this database whose last statement was the subscription's LISTEN. */
async function listeners(): Promise<number> {
  const result = await pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN tollgate_events' AND state = 'idle'",
  );
  return Number(result.rows[0]!.n);
}

test('one batch may append to the same stream twice: the second request is checked against the first', async () => {
  const id = stream('twice');
  const results = await store.appendToStreams([
    { streamId: id, events: [deposited(1n)], expectedVersion: 'no_stream' },
    { streamId: id, events: [deposited(2n), deposited(3n)], expectedVersion: 0n },
    { streamId: id, events: [deposited(4n)], expectedVersion: 0n },
  ]);
  expect(results[0]).toMatchObject({ nextExpectedVersion: 0n, written: true });
  expect(results[1]).toMatchObject({ nextExpectedVersion: 2n, written: true });
  expect(results[2]).toBeInstanceOf(VersionConflictError);
  expect((await store.readStream(id)).events.map((e) => e.revision)).toEqual([0n, 1n, 2n]);
});

test('an event id already stored in another stream is a DuplicateEventIdError, not a retry', async () => {
  const event = deposited(1n);
  await store.appendToStream(stream('first-home'), [event], { expectedVersion: 'no_stream' });
  const other = stream('second-home');
  await expect(store.appendToStream(other, [event], { expectedVersion: 'any' })).rejects.toBeInstanceOf(DuplicateEventIdError);
  expect(await store.readStream(other)).toEqual({ revision: null, events: [] });
});

test('an empty append only checks the expected version', async () => {
  const id = stream('empty');
  await expect(store.appendToStream(id, [], { expectedVersion: 'stream_exists' })).rejects.toBeInstanceOf(VersionConflictError);
  expect(await store.appendToStream(id, [], { expectedVersion: 'no_stream' })).toEqual({ nextExpectedVersion: -1n, lastPosition: START, written: false });
  expect(await store.readStream(id)).toEqual({ revision: null, events: [] });
});

test('a live subscriber is woken by NOTIFY after the append commits, long before its fallback poll', async () => {
  const position = (await store.appendToStream(stream('notify-marker'), [deposited(0n)], { expectedVersion: 'no_stream' })).lastPosition;
  const id = stream('notify');
  const arrival = firstValueFrom(store.subscribe(position));
  // Waiting: its LISTEN is in place. The fallback poll is a minute away, beyond this test's own
  // timeout, so the event arriving at all means NOTIFY woke the subscriber.
  await until(async () => ((await listeners()) === 1 ? true : undefined), { what: 'the subscriber to LISTEN' });
  await store.appendToStream(id, [deposited(1n)], { expectedVersion: 'no_stream' });
  const event = await within(arrival, 'the event (only NOTIFY can bring it before the 60 s poll)', 20_000);
  expect(event.streamId).toBe(id);
});

test('close() completes live subscriptions and returns their LISTEN connection to the pool', async () => {
  const local = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000 });
  let completed = false;
  local.subscribe(START).subscribe({ complete: () => (completed = true), error: () => {} });
  await until(async () => ((await listeners()) === 1 ? true : undefined), { what: 'the subscription to LISTEN' });
  await local.close();
  expect(completed).toBe(true);
  // UNLISTEN runs as the connection is released: wait for that, then every client is idle.
  await until(() => (pool.idleCount === pool.totalCount ? true : undefined), { what: 'the LISTEN connection to return to the pool' });
  const after = await pool.query<{ n: string }>(
    "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN tollgate_events'",
  );
  expect(Number(after.rows[0]!.n)).toBe(0);
});

test('checkpoints: START until one is saved, then the last saved position', async () => {
  const name = `projection-${randomUUID()}`;
  expect(await readCheckpoint(pool, name)).toEqual(START);
  await saveCheckpoint(pool, name, { tx: 18_446_744_073_709_551_615n, seq: 7n }); // the largest unsigned 64-bit value fits
  expect(await readCheckpoint(pool, name)).toEqual({ tx: 18_446_744_073_709_551_615n, seq: 7n });
  await saveCheckpoint(pool, name, { tx: 12n, seq: 9n });
  expect(await readCheckpoint(pool, name)).toEqual({ tx: 12n, seq: 9n });
});

test('events are append-only: UPDATE and DELETE are refused', async () => {
  await store.appendToStream(stream('immutable'), [deposited(1n)], { expectedVersion: 'no_stream' });
  await expect(pool.query("UPDATE events SET type = 'Withdrawn'")).rejects.toThrow(/append-only/);
  await expect(pool.query('DELETE FROM events')).rejects.toThrow(/append-only/);
});
