/**
 * The account directory (src/ports/account-directory.ts) answers the same on the same log
 * whichever implementation the composition root picks: SQL on the PostgreSQL events table, or
 * reading streams and scanning the global log (what a KurrentDB gateway uses).
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { postgresAccountDirectory } from '../../../adapters/eventstore/postgres/account-directory';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { accountStreamId } from '../../../domain/account';
import { apiKeyStreamId } from '../../../domain/api-key';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import { scanningAccountDirectory } from '../../../src/account-directory';
import type { AccountDirectory } from '../../../src/ports/account-directory';
import { comparePositions, type EventStore } from '../../../src/ports/event-store';
import { createTestDatabase } from '../../support/database';
import { until } from '../../support/wait';

const AT = '2025-01-01T00:00:00.000Z';
const metadata = { correlationId: 'c', causationId: 'c', actor: { kind: 'admin', adminId: 'ada' }, occurredAt: AT } as DomainEvent['metadata'];

let pool: Pool;
let store: EventStore<DomainEvent>;
let directories: [string, AccountDirectory][];

async function append(streamId: string, events: Omit<DomainEvent, 'metadata'>[]): Promise<void> {
  const { revision } = await store.readStream(streamId);
  await store.appendToStream(
    streamId,
    events.map((event) => ({ id: randomUUID(), event: { ...event, metadata } as DomainEvent })),
    { expectedVersion: revision ?? 'no_stream' },
  );
}

const opened = (accountId: string, name: string) =>
  ({ type: 'AccountOpened', data: { accountId, displayNameCiphertext: `name:${name}`, emailCiphertext: `mail:${name}` } }) as Omit<DomainEvent, 'metadata'>;
const issued = (keyId: string, accountId: string) =>
  ({ type: 'ApiKeyIssued', data: { keyId, accountId, prefix: `tg_${keyId}`, secretHash: '$2b$10$hash', name: keyId, scopes: ['inference'] } }) as Omit<
    DomainEvent,
    'metadata'
  >;

beforeAll(async () => {
  pool = new Pool({ connectionString: await createTestDatabase('accdir'), max: 4 });
  await migrate(pool, migrations);
  store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);
  await append(accountStreamId('acct_a'), [opened('acct_a', 'ann')]);
  await append(apiKeyStreamId('key_a1'), [issued('key_a1', 'acct_a')]);
  await append(accountStreamId('acct_b'), [opened('acct_b', 'bob')]);
  await append(apiKeyStreamId('key_b1'), [issued('key_b1', 'acct_b')]);
  await append(apiKeyStreamId('key_a2'), [issued('key_a2', 'acct_a')]);
  await append(accountStreamId('acct_a'), [
    { type: 'AccountSuspended', data: { reason: 'terms_violation' } } as Omit<DomainEvent, 'metadata'>,
    { type: 'PersonalDataCorrected', data: { displayNameCiphertext: 'name:anne', emailCiphertext: null } } as Omit<DomainEvent, 'metadata'>,
  ]);
  // The scanning directory reads the global log, which shows only what no slower transaction can
  // still precede; other test files share this server, so wait until all of the above is visible.
  const written = await store.latestPosition();
  await until(async () => (comparePositions(await store.headPosition(), written) >= 0 ? true : undefined), {
    what: 'the appends visible to global-log readers',
    timeoutMs: 60_000,
  });
  directories = [
    ['postgres', postgresAccountDirectory(pool)],
    ['scanning', scanningAccountDirectory(store)],
  ];
});

afterAll(async () => {
  await store.close();
  await pool.end();
});

test.each(['postgres', 'scanning'])('%s: accounts newest first', async (name) => {
  expect(await directories.find(([n]) => n === name)![1].accountIdsNewestFirst()).toEqual(['acct_b', 'acct_a']);
});

test.each(['postgres', 'scanning'])("%s: an account's keys, oldest first, no other account's", async (name) => {
  const directory = directories.find(([n]) => n === name)![1];
  expect(await directory.keyIdsOf('acct_a')).toEqual(['key_a1', 'key_a2']);
  expect(await directory.keyIdsOf('acct_b')).toEqual(['key_b1']);
  expect(await directory.keyIdsOf('acct_none')).toEqual([]);
});

test.each(['postgres', 'scanning'])("%s: an account's personal-data events, in stream order, nothing else", async (name) => {
  const directory = directories.find(([n]) => n === name)![1];
  expect(await directory.personalDataRecords('acct_a')).toEqual([
    { accountId: 'acct_a', displayNameCiphertext: 'name:ann', emailCiphertext: 'mail:ann' },
    { displayNameCiphertext: 'name:anne', emailCiphertext: null },
  ]);
  expect(await directory.personalDataRecords('acct_none')).toEqual([]);
});
