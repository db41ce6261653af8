import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { accountDecider, accountStreamId, availableOf, balanceOf, evolveAccount, initialAccountState, type AccountCommand } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { usd } from '../../../domain/money';
import { createGroupCommitHandler } from '../../../src/handlers/group-commit';
import type { EventStore } from '../../../src/ports/event-store';
import { createTestDatabase } from '../../support/database';

const PRICE = { version: 1, inputPerMillion: usd('1'), outputPerMillion: usd('2') };

function meta(): CommandMetadata {
  const id = randomUUID();
  return { now: new Date().toISOString(), correlationId: id, causationId: id, actor: { kind: 'system', process: 'test' } };
}
const open = (accountId: string): AccountCommand => ({
  type: 'OpenAccount',
  data: { accountId, displayNameCiphertext: 'n', emailCiphertext: 'e' },
  metadata: meta(),
});
const topUp = (amount: bigint, paymentReference = `pi_${randomUUID()}`): AccountCommand => ({
  type: 'CompleteTopUp',
  data: { paymentReference, amount },
  metadata: meta(),
});
const reserve = (requestId: string, amount: bigint): AccountCommand => ({
  type: 'PlaceReservation',
  data: { requestId, keyId: 'key-1', model: 'm', operation: 'chat', amount, priceVersion: 1 },
  metadata: meta(),
});
const settle = (requestId: string, inputTokens: bigint, outputTokens: bigint): AccountCommand => ({
  type: 'SettleReservation',
  data: { requestId, usage: { inputTokens, outputTokens, estimated: false }, price: PRICE, outcome: 'completed' },
  metadata: meta(),
});

describe('group commit of account commands on PostgreSQL', () => {
  let pool: Pool;
  let store: EventStore<DomainEvent>;

  beforeAll(async () => {
    pool = new Pool({ connectionString: await createTestDatabase('ledger'), max: 10 });
    await migrate(pool, migrations);
    store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);
  });
  afterAll(async () => {
    await store.close();
    await pool.end();
  });

  async function foldedState(accountId: string) {
    const { events } = await store.readStream(accountStreamId(accountId));
    return events.reduce((s, e) => evolveAccount(s, e.event as never), initialAccountState());
  }

  test('two requests can never both spend the same credit: 100 concurrent reservations, credit for 10', async () => {
    const handler = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await handler.handle(stream, open(accountId));
    await handler.handle(stream, topUp(usd('10')));
    const results = await Promise.all(Array.from({ length: 100 }, () => handler.handle(stream, reserve(randomUUID(), usd('1')))));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const refusals = results.filter((r) => !r.ok).map((r) => (r.ok ? '' : r.error.error));
    expect(new Set(refusals)).toEqual(new Set(['exceeds_available_balance']));
    const state = await foldedState(accountId);
    expect(availableOf(state)).toBe(0n);
    expect(state.openReservations.size).toBe(10);
  });

  test('commands for one account are decided in arrival order within a batch', async () => {
    const handler = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    const requestId = randomUUID();
    const [opened, toppedUp, placed, settled] = await Promise.all([
      handler.handle(stream, open(accountId)),
      handler.handle(stream, topUp(usd('10'))),
      handler.handle(stream, reserve(requestId, usd('0.5'))),
      handler.handle(stream, settle(requestId, 1_000n, 500n)),
    ]);
    expect([opened.ok, toppedUp.ok, placed.ok, settled.ok]).toEqual([true, true, true, true]);
    const state = await foldedState(accountId);
    // 1,000 input tokens at USD 1/M + 500 output at USD 2/M = USD 0.002
    expect(balanceOf(state)).toBe(usd('10') - usd('0.002'));
  });

  test('two processes on one account: conflicts are retried on fresh state and nothing is spent twice', async () => {
    const first = createGroupCommitHandler(store, accountDecider());
    const second = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await first.handle(stream, open(accountId));
    await first.handle(stream, topUp(usd('20')));
    await second.load(stream);
    // Credit for exactly 20 reservations of USD 1; 30 requests split over the two processes.
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? first : second).handle(stream, reserve(randomUUID(), usd('1')))));
    expect(results.filter((r) => r.ok)).toHaveLength(20);
    const state = await foldedState(accountId);
    expect(state.openReservations.size).toBe(20);
    expect(availableOf(state)).toBe(0n);
  });

  test('a refusal decided on cached state is confirmed on a fresh read: credit added by another process counts', async () => {
    const gateway = createGroupCommitHandler(store, accountDecider());
    const payments = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await gateway.handle(stream, open(accountId));
    expect((await gateway.handle(stream, reserve(randomUUID(), usd('1')))).ok).toBe(false);
    await payments.handle(stream, topUp(usd('10'))); // the gateway's cache does not know
    const placed = await gateway.handle(stream, reserve(randomUUID(), usd('1')));
    expect(placed.ok).toBe(true);
  });

  test('a redelivered payment reference credits once', async () => {
    const handler = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await handler.handle(stream, open(accountId));
    const results = await Promise.all([1, 2, 3].map(() => handler.handle(stream, topUp(usd('10'), 'pi_same'))));
    expect(results.every((r) => r.ok)).toBe(true);
    expect(balanceOf(await foldedState(accountId))).toBe(usd('10'));
  });

  test('a database failure rejects the waiting commands and drops the optimistic state', async () => {
    const brokenPool = new Pool({ connectionString: 'postgres://nobody:x@127.0.0.1:1/none', connectionTimeoutMillis: 1_000 });
    const broken = createPostgresEventStore<DomainEvent>(brokenPool, domainEventCodec);
    const handler = createGroupCommitHandler(broken, accountDecider());
    const accountId = randomUUID();
    await expect(handler.handle(accountStreamId(accountId), open(accountId))).rejects.toThrow();
    await broken.close();
    await brokenPool.end();
  });
});
