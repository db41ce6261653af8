import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { appendThroughFunction, createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { accountDecider, accountStreamId, availableOf, balanceOf, evolveAccount, initialAccountState, type AccountCommand } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { usd } from '../../../domain/money';
import { createCommitGroup, createGroupCommitHandler } from '../../../src/handlers/group-commit';
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

  async function waitUntil(check: () => Promise<boolean>): Promise<void> {
    const deadline = Date.now() + 20_000; // a safety net only
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error('condition not reached');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

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

  test('flushes are pipelined: another account commits while one commit waits, and the waiting stream keeps its order', async () => {
    const handler = createGroupCommitHandler(store, accountDecider());
    const [held, free] = [randomUUID(), randomUUID()];
    for (const accountId of [held, free]) {
      await handler.handle(accountStreamId(accountId), open(accountId));
      expect((await handler.handle(accountStreamId(accountId), topUp(usd('10')))).ok).toBe(true);
    }
    // Another session holds the first account's stream row: its next commit waits on the lock.
    const blocker = await pool.connect();
    let released = false;
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT revision FROM streams WHERE stream_id = $1 FOR UPDATE', [accountStreamId(held)]);
      const first = handler.handle(accountStreamId(held), reserve('held-1', usd('6')));
      let firstAnswered = false;
      void first.then(() => (firstAnswered = true));
      // The first's commit is in flight, waiting for the row lock.
      await waitUntil(async () => {
        const { rows } = await pool.query<{ n: string }>(
          "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1",
          [(blocker as unknown as { processID: number }).processID],
        );
        return Number(rows[0]!.n) > 0;
      });
      // Queued behind the first in the same stream: decided on its committed state, so refused.
      const second = handler.handle(accountStreamId(held), reserve('held-2', usd('6')));
      // With one flush at a time this would wait for the held commit, that is, forever.
      const other = await handler.handle(accountStreamId(free), reserve('free-1', usd('6')));
      expect(other.ok ? 'ok' : other.error).toBe('ok');
      expect(firstAnswered).toBe(false);
      await blocker.query('ROLLBACK');
      released = true;
      expect((await first).ok).toBe(true);
      expect(await second).toMatchObject({ ok: false, error: { error: 'exceeds_available_balance' } });
    } finally {
      if (!released) await blocker.query('ROLLBACK');
      blocker.release();
    }
    const events = (await store.readStream(accountStreamId(held))).events.map((e) => e.event.type);
    expect(events).toEqual(['AccountOpened', 'TopUpCompleted', 'ReservationPlaced']);
    expect(availableOf(await foldedState(held))).toBe(usd('4'));
  });

  test('hooks: decided while the commit is in flight, undone when another writer moved the stream, decided again before the durable answer', async () => {
    const handler = createGroupCommitHandler(store, accountDecider());
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await handler.handle(stream, open(accountId));
    await handler.handle(stream, topUp(usd('10')));
    const { state, revision } = await handler.load(stream);
    const blocker = await pool.connect();
    const seen: string[] = [];
    let answered = false;
    try {
      await blocker.query('BEGIN');
      await blocker.query('SELECT revision FROM streams WHERE stream_id = $1 FOR UPDATE', [stream]);
      const placing = handler.handle(stream, reserve('mine', usd('2')), {
        decided: ({ events }) => seen.push(`decided ${events.map((e) => e.event.type).join()}${answered ? ' after the answer' : ''}`),
        undone: () => seen.push(answered ? 'undone after the answer' : 'undone'),
      });
      void placing.then(() => (answered = true));
      // Decided in memory, its append sent and waiting on the held row: not yet durable.
      await waitUntil(async () => seen.length > 0);
      expect(seen).toEqual(['decided ReservationPlaced']);
      expect(answered).toBe(false);
      // Another writer moves the stream first: the attempt fails its expected version.
      const other = accountDecider().decide(reserve('theirs', usd('3')), state);
      if (!other.ok) throw new Error('the other reservation was refused');
      await appendThroughFunction(
        blocker,
        [
          {
            streamId: stream,
            expectedVersion: revision!,
            events: other.events.map((event) => ({ id: randomUUID(), encoded: domainEventCodec.encode(event) })),
          },
        ],
        { notify: false },
      );
      await blocker.query('COMMIT');
      const placed = await placing;
      expect(placed.ok).toBe(true);
      expect(seen).toEqual(['decided ReservationPlaced', 'undone', 'decided ReservationPlaced']);
    } finally {
      await blocker.query('ROLLBACK').catch(() => undefined);
      blocker.release();
    }
    expect(availableOf(await foldedState(accountId))).toBe(usd('5'));
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
  test('a deferrable settlement waits for the next reservation on its account and shares its commit (one commit per request at one connection)', async () => {
    // deferMs of ten minutes: without the sharing, the settlement would still be waiting.
    const handler = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000 });
    const a = `acc-${randomUUID()}`;
    expect((await handler.handle(accountStreamId(a), open(a))).ok).toBe(true);
    expect((await handler.handle(accountStreamId(a), topUp(usd('10')))).ok).toBe(true);
    expect((await handler.handle(accountStreamId(a), reserve('r1', usd('1')))).ok).toBe(true);
    let settledFirst = false;
    const settled = handler.handle(accountStreamId(a), settle('r1', 10n, 10n), { deferrable: true }).then((r) => {
      settledFirst = true;
      return r;
    });
    // A turn of the event loop and more: the settlement is still waiting, not committed alone.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settledFirst).toBe(false);
    const reserved = await handler.handle(accountStreamId(a), reserve('r2', usd('1')));
    const settledResult = await settled;
    expect(reserved.ok && settledResult.ok).toBe(true);
    if (!reserved.ok || !settledResult.ok) return;
    // One transaction, the settlement first (arrival order).
    expect(settledResult.position!.tx).toBe(reserved.position!.tx);
    const { events } = await store.readStream(accountStreamId(a));
    const types = events.map((e) => e.event.type);
    expect(types.indexOf('ReservationSettled')).toBeLessThan(types.lastIndexOf('ReservationPlaced'));
    const state = await foldedState(a);
    expect([...state.openReservations.keys()]).toEqual(['r2']);
  });

  test('a deferrable command with nothing to share commits on its own after deferMs', async () => {
    const handler = createGroupCommitHandler(store, accountDecider(), { deferMs: 5 });
    const a = `acc-${randomUUID()}`;
    expect((await handler.handle(accountStreamId(a), open(a), { deferrable: true })).ok).toBe(true);
    expect((await foldedState(a)).status).toBe('open');
  });

  /** Two handlers of one commit group, each with an account opened: `accounts` defers for ten minutes, `others` for `othersDeferMs`. */
  async function groupOfTwo(othersDeferMs: number) {
    const group = createCommitGroup(store);
    const accounts = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const others = createGroupCommitHandler(store, accountDecider(), { deferMs: othersDeferMs, group });
    const a = `acc-${randomUUID()}`;
    const b = `acc-${randomUUID()}`;
    expect((await accounts.handle(accountStreamId(a), open(a))).ok).toBe(true);
    expect((await others.handle(accountStreamId(b), open(b))).ok).toBe(true);
    return { accounts, others, a, b };
  }

  test('handlers of one commit group share commits: a deferrable command of one rides with the next command of another', async () => {
    // Ten-minute deferrals: without the group, the deferred command would still be waiting.
    const { accounts, others, a, b } = await groupOfTwo(600_000);
    let deferredDone = false;
    const deferred = others.handle(accountStreamId(b), topUp(usd('10')), { deferrable: true }).then((r) => {
      deferredDone = true;
      return r;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(deferredDone).toBe(false);
    const urgent = await accounts.handle(accountStreamId(a), topUp(usd('20')));
    const rode = await deferred;
    expect(urgent.ok && rode.ok).toBe(true);
    if (!urgent.ok || !rode.ok) return;
    expect(rode.position!.tx).toBe(urgent.position!.tx);
    expect(balanceOf(await foldedState(b))).toBe(usd('10'));
  });

  test('a deferrable command whose stream is not in memory is read while it waits, and rides with the next commit of another handler', async () => {
    const group = createCommitGroup(store);
    const accounts = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const a = `acc-${randomUUID()}`;
    const b = `acc-${randomUUID()}`;
    expect((await accounts.handle(accountStreamId(a), open(a))).ok).toBe(true);
    // Opened by another process: this handler (in a fresh group member) has never read it.
    expect((await createGroupCommitHandler(store, accountDecider()).handle(accountStreamId(b), open(b))).ok).toBe(true);
    const fresh = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const deferred = fresh.handle(accountStreamId(b), topUp(usd('10')), { deferrable: true });
    // The command waits; its stream is read meanwhile (the wait is for that read, not for a time).
    await waitUntil(async () => (await fresh.load(accountStreamId(b))).revision === 0n);
    const urgent = await accounts.handle(accountStreamId(a), topUp(usd('20')));
    const rode = await deferred;
    expect(urgent.ok && rode.ok && rode.position!.tx === urgent.position!.tx).toBe(true);
  });

  test('after riding with another handler, the deferral it cut short does not fire later and leave the next deferrable command undeferred', async () => {
    const { accounts, others, a, b } = await groupOfTwo(300);
    const first = others.handle(accountStreamId(b), topUp(usd('10')), { deferrable: true });
    expect((await accounts.handle(accountStreamId(a), topUp(usd('10')))).ok).toBe(true);
    expect((await first).ok).toBe(true);
    // Past the moment the first command's deferral would have fired, had it been left running.
    await new Promise((resolve) => setTimeout(resolve, 400));
    // The next deferrable command waits again (a turn of the event loop later it has not committed
    // alone), and rides with the next command somebody waits on.
    const second = others.handle(accountStreamId(b), topUp(usd('10')), { deferrable: true });
    await new Promise((resolve) => setImmediate(resolve));
    const urgent = await accounts.handle(accountStreamId(a), topUp(usd('10')));
    const rode = await second;
    expect(urgent.ok && rode.ok && rode.position!.tx === urgent.position!.tx).toBe(true);
  });

  test('hurry: while someone waits for deferred commands, they are not deferred', async () => {
    const group = createCommitGroup(store);
    const handler = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const a = `acc-${randomUUID()}`;
    expect((await handler.handle(accountStreamId(a), open(a))).ok).toBe(true);
    // Waiting on a command already deferred ends its deferral...
    const first = handler.handle(accountStreamId(a), topUp(usd('10')), { deferrable: true });
    expect((await group.hurry(first)).ok).toBe(true);
    // ...and a command deferred while someone waits is not deferred at all.
    let release!: () => void;
    const waiting = group.hurry(new Promise<void>((resolve) => (release = resolve)));
    expect((await handler.handle(accountStreamId(a), topUp(usd('10')), { deferrable: true })).ok).toBe(true);
    release();
    await waiting;
    expect(balanceOf(await foldedState(a))).toBe(usd('20'));
  });

  test('a participant of a shared commit that writes nothing does not hold it up', async () => {
    const group = createCommitGroup(store);
    const accounts = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const others = createGroupCommitHandler(store, accountDecider(), { deferMs: 600_000, group });
    const a = `acc-${randomUUID()}`;
    const b = `acc-${randomUUID()}`;
    expect((await accounts.handle(accountStreamId(a), open(a))).ok).toBe(true);
    expect((await others.handle(accountStreamId(b), open(b))).ok).toBe(true);
    // Refused (the account is open already), nothing to write: it joins the next commit and leaves it.
    const refused = others.handle(accountStreamId(b), open(b), { deferrable: true });
    expect((await accounts.handle(accountStreamId(a), topUp(usd('10')))).ok).toBe(true);
    // Its refusal is confirmed on a fresh read in a flush of its own, which is not deferred again.
    expect((await group.hurry(refused)).ok).toBe(false);
  });
});
