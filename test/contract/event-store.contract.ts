/**
 * The contract every EventStore adapter must pass. An adapter's test file calls
 * describeEventStoreContract once; see postgres.test.ts and kurrentdb.test.ts.
 *
 * (Body written by the PostgreSQL event store work; the exported shape below is fixed.)
 *
 * One subject (one log) serves the whole suite. Tests on the global log start from a marker
 * event they append themselves and only look at their own streams, so they hold on a log that
 * other tests (or other runs, on a shared KurrentDB) have written to.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { concatMap, filter, from as fromPromise, lastValueFrom, take, timeout, toArray } from 'rxjs';
import { z } from 'zod';
import { eventStoreMigration } from '../../adapters/eventstore/postgres/schema';
import { readCheckpoint, saveCheckpoint } from '../../src/read-models/checkpoints';
import { migrate } from '../../adapters/postgres/migrate';
import {
  comparePositions,
  DuplicateEventIdError,
  EventDecodeError,
  VersionConflictError,
  type EncodedEvent,
  type EventCodec,
  type EventStore,
  type LogPosition,
  type NewEvent,
  type RecordedEvent,
} from '../../src/ports/event-store';
import { createTestDatabase } from '../support/database';
import { until } from '../support/wait';

/** The events the contract suite appends: small, with a bigint to prove encoding. */
export type TestEvent = { type: 'Deposited'; data: { amount: bigint; note: string } } | { type: 'Withdrawn'; data: { amount: bigint } };

export interface ContractSubject {
  /** A store over an empty log, using the given codec. */
  store: EventStore<TestEvent>;
  /**
   * Writes an event whose `type`/`data` the codec will refuse, bypassing the codec,
   * to simulate schema drift. Returns the stream it wrote to.
   */
  writeUndecodable(streamId: string): Promise<void>;
  /**
   * Optional: begins an append and holds its transaction open until `commit` is called, so
   * a test can make a slow writer hold a lower position while a fast one commits a higher one.
   * Adapters where positions are assigned at commit (KurrentDB) leave it undefined, and the
   * test prints why it does not apply.
   */
  beginSlowAppend?(streamId: string, events: readonly NewEvent<TestEvent>[]): Promise<{ commit(): Promise<void> }>;
  /** Releases connections; the suite calls it in afterAll. */
  dispose(): Promise<void>;
}

export interface ContractFactory {
  /** Each call gives a fresh, empty log. */
  create(codec: EventCodec<TestEvent>): Promise<ContractSubject>;
}

const amount = z
  .string()
  .regex(/^-?\d+$/)
  .transform((s) => BigInt(s));
const storedTestEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('Deposited'), data: z.object({ amount, note: z.string() }).strict() }),
  z.object({ type: z.literal('Withdrawn'), data: z.object({ amount }).strict() }),
]);

/** Bigints travel as decimal strings; decode validates with zod, as the real catalogue does. */
export const testEventCodec: EventCodec<TestEvent> = {
  encode(event): EncodedEvent {
    switch (event.type) {
      case 'Deposited':
        return { type: event.type, data: { amount: event.data.amount.toString(), note: event.data.note }, metadata: { v: 1 } };
      case 'Withdrawn':
        return { type: event.type, data: { amount: event.data.amount.toString() }, metadata: { v: 1 } };
    }
  },
  decode(stored) {
    return storedTestEvent.parse({ type: stored.type, data: stored.data });
  },
};

function deposited(amount: bigint, note = ''): NewEvent<TestEvent> {
  return { id: randomUUID(), event: { type: 'Deposited', data: { amount, note } } };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function describeEventStoreContract(adapterName: string, factory: ContractFactory): void {
  describe(`${adapterName} event store contract`, () => {
    let subject: ContractSubject;
    let store: EventStore<TestEvent>;
    const run = randomUUID().slice(0, 8);
    let streamCount = 0;
    /** A stream name no other test (or run) uses. */
    const stream = (label: string) => `${label}-${run}-${++streamCount}`;

    /** Appends a marker and returns its position: a test's own start of the global log. */
    async function marker(): Promise<LogPosition> {
      const result = await store.appendToStream(stream('marker'), [deposited(0n, 'marker')], { expectedVersion: 'no_stream' });
      return result.lastPosition;
    }

    /**
     * Waits until global-log readers can see `position`. On PostgreSQL any transaction still open
     * in the cluster (another test's, in another database) holds the horizon back for a moment.
     */
    async function visible(position: LogPosition): Promise<void> {
      const deadline = Date.now() + 15_000;
      while (comparePositions(await store.headPosition(), position) < 0) {
        if (Date.now() > deadline) throw new Error('the appended events did not become visible to global-log readers within 15 s');
        await sleep(20);
      }
    }

    beforeAll(async () => {
      subject = await factory.create(testEventCodec);
      store = subject.store;
    });
    afterAll(async () => {
      await subject?.dispose();
    });

    test('appended events read back equal, bigints intact, with revisions from 0 and rising positions', async () => {
      const id = stream('round-trip');
      const big = 123_456_789_012_345_678_901_234_567_890n;
      const events = [deposited(big, 'first'), { id: randomUUID(), event: { type: 'Withdrawn', data: { amount: -5n } } } as NewEvent<TestEvent>];
      const result = await store.appendToStream(id, events, { expectedVersion: 'no_stream' });
      expect(result.written).toBe(true);
      expect(result.nextExpectedVersion).toBe(1n);

      const read = await store.readStream(id);
      expect(read.revision).toBe(1n);
      expect(read.events.map((e) => e.event)).toEqual(events.map((e) => e.event));
      expect(read.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
      expect(read.events.map((e) => e.revision)).toEqual([0n, 1n]);
      expect(read.events.every((e) => e.streamId === id && e.recordedAt instanceof Date)).toBe(true);
      expect(read.events.map((e) => e.type)).toEqual(['Deposited', 'Withdrawn']);
      expect(comparePositions(read.events[0]!.position, read.events[1]!.position)).toBe(-1);
      expect(comparePositions(read.events[1]!.position, result.lastPosition)).toBe(0);

      const tail = await store.readStream(id, { fromRevision: 1n, maxCount: 5 });
      expect(tail.revision).toBe(1n);
      expect(tail.events.map((e) => e.revision)).toEqual([1n]);
      const head = await store.readStream(id, { maxCount: 1 });
      expect(head.events.map((e) => e.revision)).toEqual([0n]);

      expect(await store.readStream(stream('never-written'))).toEqual({ revision: null, events: [] });
    });

    test('expected version: no_stream and an exact revision; a mismatch is a typed conflict that stores nothing', async () => {
      const id = stream('versions');
      const conflict = (promise: Promise<unknown>) => expect(promise).rejects.toBeInstanceOf(VersionConflictError);

      await conflict(store.appendToStream(id, [deposited(1n)], { expectedVersion: 0n }));
      expect((await store.readStream(id)).revision).toBeNull();

      expect((await store.appendToStream(id, [deposited(1n)], { expectedVersion: 'no_stream' })).nextExpectedVersion).toBe(0n);
      const again = await store.appendToStream(id, [deposited(2n)], { expectedVersion: 'no_stream' }).catch((e: unknown) => e);
      expect(again).toBeInstanceOf(VersionConflictError);
      expect(again).toMatchObject({ streamId: id, expected: 'no_stream', actual: 0n });

      expect((await store.appendToStream(id, [deposited(3n)], { expectedVersion: 0n })).nextExpectedVersion).toBe(1n);
      expect((await store.appendToStream(id, [deposited(4n)], { expectedVersion: 1n })).nextExpectedVersion).toBe(2n);
      const stale = await store.appendToStream(id, [deposited(5n)], { expectedVersion: 1n }).catch((e: unknown) => e);
      expect(stale).toBeInstanceOf(VersionConflictError);
      expect(stale).toMatchObject({ streamId: id, expected: 1n, actual: 2n });
      expect((await store.appendToStream(id, [deposited(6n)], { expectedVersion: 2n })).nextExpectedVersion).toBe(3n);

      const read = await store.readStream(id);
      expect(read.events.map((e) => (e.event.data as { amount: bigint }).amount)).toEqual([1n, 3n, 4n, 6n]);
    });

    test('an exact retry of the same event ids stores nothing twice and reports the first positions', async () => {
      const id = stream('retry');
      const events = [deposited(10n), deposited(20n)];
      const first = await store.appendToStream(id, events, { expectedVersion: 'no_stream' });
      const retry = await store.appendToStream(id, events, { expectedVersion: 'no_stream' });
      expect(retry).toEqual({ ...first, written: false });
      // A retry after a lost reply may come with another expected version, even the stream's
      // current one (which would let new events in): it is still only a retry.
      const retryAtHead = await store.appendToStream(id, events, { expectedVersion: 1n });
      expect(retryAtHead.written).toBe(false);
      const read = await store.readStream(id);
      expect(read.revision).toBe(1n);
      expect(read.events.map((e) => e.id)).toEqual(events.map((e) => e.id));
    });

    test('an append whose ids are only partly stored fails with DuplicateEventIdError and stores nothing', async () => {
      const id = stream('partial-duplicate');
      const [a, b, c] = [deposited(1n), deposited(2n), deposited(3n)];
      await store.appendToStream(id, [a!, b!], { expectedVersion: 'no_stream' });
      // At the stream's current revision: the version check alone would let it through.
      const error = await store.appendToStream(id, [b!, c!], { expectedVersion: 1n }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DuplicateEventIdError);
      expect(error).toMatchObject({ streamId: id, eventId: b!.id });
      expect((await store.readStream(id)).events.map((e) => e.id)).toEqual([a!.id, b!.id]);
    });

    test('appendToStreams: one conflicting request gets its VersionConflictError, the others commit', async () => {
      const [existing, fresh, stale] = [stream('batch-a'), stream('batch-b'), stream('batch-c')];
      await store.appendToStream(existing, [deposited(1n)], { expectedVersion: 'no_stream' });
      await store.appendToStream(stale, [deposited(1n), deposited(2n)], { expectedVersion: 'no_stream' });

      const results = await store.appendToStreams([
        { streamId: existing, events: [deposited(3n)], expectedVersion: 0n },
        { streamId: stale, events: [deposited(9n)], expectedVersion: 5n },
        { streamId: fresh, events: [deposited(4n), deposited(5n)], expectedVersion: 'no_stream' },
      ]);
      expect(results).toHaveLength(3);
      expect(results[0]).toMatchObject({ nextExpectedVersion: 1n, written: true });
      expect(results[1]).toBeInstanceOf(VersionConflictError);
      expect(results[1]).toMatchObject({ streamId: stale, expected: 5n, actual: 1n });
      expect(results[2]).toMatchObject({ nextExpectedVersion: 1n, written: true });

      expect((await store.readStream(existing)).revision).toBe(1n);
      expect((await store.readStream(fresh)).revision).toBe(1n);
      expect((await store.readStream(stale)).events).toHaveLength(2);
    });

    test('fifty concurrent appends with the same expected version: exactly one succeeds, the rest conflict, nothing partial is stored', async () => {
      for (const [label, expectedVersion, before] of [
        ['race-existing', 0n, 1],
        ['race-new', 'no_stream', 0],
      ] as const) {
        const id = stream(label);
        if (before > 0) await store.appendToStream(id, [deposited(0n)], { expectedVersion: 'no_stream' });
        const attempts = Array.from({ length: 50 }, (_, i) => [deposited(BigInt(i)), deposited(BigInt(i))]);
        // Warm the adapter's connections first so the fifty appends really overlap.
        await Promise.all(attempts.map(() => store.readStream(id)));
        const settled = await Promise.allSettled(attempts.map((events) => store.appendToStream(id, events, { expectedVersion })));

        const winners = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [i] : []));
        expect(winners).toHaveLength(1);
        const losers = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
        expect(losers).toHaveLength(49);
        for (const loser of losers) expect(loser.reason).toBeInstanceOf(VersionConflictError);

        const read = await store.readStream(id);
        expect(read.events).toHaveLength(before + 2);
        expect(read.events.slice(before).map((e) => e.id)).toEqual(attempts[winners[0]!]!.map((e) => e.id));
      }
    });

    test('readAll pages through the global log from any position, in append order, each event once', async () => {
      const from = await marker();
      const appended: string[] = [];
      const streams = [stream('page'), stream('page'), stream('page')];
      let last = from;
      for (let round = 0; round < 5; round++) {
        for (const id of streams) {
          const events = [deposited(BigInt(round)), deposited(BigInt(round))];
          last = (await store.appendToStream(id, events, { expectedVersion: round === 0 ? 'no_stream' : BigInt(2 * round - 1) })).lastPosition;
          appended.push(...events.map((e) => e.id));
        }
      }
      await visible(last);

      const seen: RecordedEvent<TestEvent>[] = [];
      let position = from;
      for (;;) {
        const page = await store.readAll(position, { maxCount: 7 });
        expect(page.length).toBeLessThanOrEqual(7);
        if (page.length === 0) break;
        seen.push(...page);
        position = page[page.length - 1]!.position;
      }
      const ours = seen.filter((e) => streams.includes(e.streamId));
      expect(ours.map((e) => e.id)).toEqual(appended);
      for (let i = 1; i < seen.length; i++) expect(comparePositions(seen[i - 1]!.position, seen[i]!.position)).toBe(-1);

      // Reading from the middle gives exactly the rest.
      const middle = ours[11]!.position;
      const rest = (await store.readAll(middle, { maxCount: 100 })).filter((e) => streams.includes(e.streamId));
      expect(rest.map((e) => e.id)).toEqual(appended.slice(12));
    });

    test('headPosition reaches the last committed append, and nothing of it lies beyond', async () => {
      const id = stream('head');
      const appended = await store.appendToStream(id, [deposited(1n), deposited(2n)], { expectedVersion: 'no_stream' });
      await visible(appended.lastPosition);
      const head = await store.headPosition();
      expect(comparePositions(head, appended.lastPosition)).toBeGreaterThanOrEqual(0);
      expect((await store.readAll(head, { maxCount: 100 })).filter((e) => e.streamId === id)).toEqual([]);
    });

    test('latestPosition is the last committed append, which a reader waiting for its writes can target', async () => {
      const id = stream('latest');
      const appended = await store.appendToStream(id, [deposited(1n)], { expectedVersion: 'no_stream' });
      expect(comparePositions(await store.latestPosition(), appended.lastPosition)).toBe(0);
    });

    test('a global-log subscriber never passes a slow transaction: it sees both writers in commit-safe order and its checkpoint waits', async () => {
      if (!subject.beginSlowAppend) {
        // Known only at run time (the subject is made in beforeAll), so this test cannot be test.skip.
        console.log(
          `[${adapterName}] NOT RUN: slow-writer test does not apply (no beginSlowAppend: positions are assigned at commit, so no writer can hold a lower one open)`,
        );
        return;
      }
      const from = await marker();
      const [slowStream, fastStream] = [stream('slow'), stream('fast')];
      const seen: RecordedEvent<TestEvent>[] = [];
      const checkpoints: LogPosition[] = [];
      const subscription = store.subscribe(from).subscribe({
        next: (event) => {
          checkpoints.push(event.position);
          if (event.streamId === slowStream || event.streamId === fastStream) seen.push(event);
        },
      });
      try {
        const slowEvents = [deposited(1n, 'slow')];
        const slow = await subject.beginSlowAppend(slowStream, slowEvents);
        const fast = await store.appendToStream(fastStream, [deposited(2n, 'fast')], { expectedVersion: 'no_stream' });
        expect((await store.readStream(fastStream)).events).toHaveLength(1); // committed and readable by stream

        await sleep(600); // several poll intervals and notifications: the subscriber had every chance
        expect(seen).toEqual([]);
        for (const checkpoint of checkpoints) expect(comparePositions(checkpoint, fast.lastPosition)).toBe(-1);
        expect((await store.readAll(from, { maxCount: 100 })).filter((e) => e.streamId === fastStream)).toEqual([]);

        await slow.commit();
        await until(() => (seen.length === 2 ? true : undefined), { what: 'both writers to reach the subscriber', timeoutMs: 10_000, intervalMs: 10 });
        expect(seen.map((e) => e.streamId)).toEqual([slowStream, fastStream]);
        expect(seen[0]!.id).toBe(slowEvents[0]!.id);
        for (let i = 1; i < checkpoints.length; i++) expect(comparePositions(checkpoints[i - 1]!, checkpoints[i]!)).toBe(-1);
      } finally {
        subscription.unsubscribe();
      }
    }, 30_000);

    test('a subscriber that stops and resumes from its checkpoint receives every event exactly once', async () => {
      // The subscriber's work and its checkpoint commit in one transaction, in a database of its own.
      const pool = new Pool({ connectionString: await createTestDatabase('subscriber'), max: 2 });
      try {
        await migrate(pool, [eventStoreMigration]);
        await pool.query('CREATE TABLE processed (event_id uuid NOT NULL, stream_id text NOT NULL)');
        const name = `contract-${run}`;
        await saveCheckpoint(pool, name, await marker());

        const streams = [stream('resume'), stream('resume'), stream('resume')];
        const revisions = new Map<string, bigint>();
        const appendRound = async (rounds: number) => {
          for (let round = 0; round < rounds; round++) {
            const results = await store.appendToStreams(
              streams.map((streamId) => ({
                streamId,
                events: [deposited(1n), deposited(2n)],
                expectedVersion: revisions.get(streamId) ?? ('no_stream' as const),
              })),
            );
            results.forEach((result, i) => {
              if (result instanceof Error) throw result;
              revisions.set(streams[i]!, result.nextExpectedVersion);
            });
          }
        };
        const work = async (event: RecordedEvent<TestEvent>) => {
          const client = await pool.connect();
          try {
            await client.query('BEGIN');
            await client.query('INSERT INTO processed (event_id, stream_id) VALUES ($1, $2)', [event.id, event.streamId]);
            await saveCheckpoint(client, name, event.position);
            await client.query('COMMIT');
          } catch (error) {
            await client.query('ROLLBACK');
            throw error;
          } finally {
            client.release();
          }
          return event;
        };
        const runUntil = async (count: number) =>
          lastValueFrom(
            store.subscribe(await readCheckpoint(pool, name)).pipe(
              concatMap((event) => fromPromise(work(event))),
              take(count),
              timeout({ each: 10_000 }),
              toArray(),
            ),
          );

        await appendRound(3); // 18 events
        const firstRun = await runUntil(11); // stops part-way through an append's events
        expect(firstRun).toHaveLength(11);

        await appendRound(2); // 12 more while the subscriber is away
        // Resume, and keep appending while it runs, so it must catch up and then follow live.
        const secondRun = runUntil(7 + 12 + 12);
        await sleep(100);
        await appendRound(2);
        expect(await secondRun).toHaveLength(31);

        const all: string[] = [];
        for (const stream of streams) all.push(...(await store.readStream(stream)).events.map((e) => e.id));
        expect(all).toHaveLength(42);
        const rows = await pool.query<{ event_id: string }>('SELECT event_id FROM processed');
        const processed = rows.rows.map((r) => r.event_id);
        expect(processed).toHaveLength(42);
        expect(new Set(processed)).toEqual(new Set(all));
      } finally {
        await pool.end();
      }
    });

    test('a stream keeps the maximum age it is given; a stream never given one is kept forever', async () => {
      const [kept, aging] = [stream('wallet-like'), stream('request-log-like')];
      await store.appendToStream(kept, [deposited(1n)], { expectedVersion: 'no_stream' });
      await store.appendToStream(aging, [deposited(1n)], { expectedVersion: 'no_stream' });
      expect(await store.streamMaxAge(kept)).toBeNull();
      await store.setStreamMaxAge(aging, 90 * 86_400);
      expect(await store.streamMaxAge(aging)).toBe(90 * 86_400);
      await store.setStreamMaxAge(aging, 30 * 86_400);
      expect(await store.streamMaxAge(aging)).toBe(30 * 86_400);
      expect(await store.streamMaxAge(kept)).toBeNull();
      await expect(store.setStreamMaxAge(aging, 0)).rejects.toThrow(RangeError);
      await expect(store.setStreamMaxAge(aging, 1.5)).rejects.toThrow(RangeError);
    });

    /** Stores that expire events themselves (KurrentDB) have no scavenge to drive with a clock. */
    function scavengeOf(label: string): ((now: Date) => ReturnType<NonNullable<EventStore<TestEvent>['scavenge']>>) | undefined {
      if (store.scavenge) return (now) => store.scavenge!(now);
      console.log(`[${adapterName}] NOT RUN: ${label}: this store has no scavenge (it expires max-age events itself, on its own clock)`);
      return undefined;
    }
    const hoursFromNow = (hours: number) => new Date(Date.now() + hours * 3_600_000);

    test('a scavenge deletes only the expired events of max-age streams; the revision stays and appends continue after it', async () => {
      const scavenge = scavengeOf('scavenge of expired events');
      if (!scavenge) return;
      const [wallet, expiring, young] = [stream('wallet'), stream('request-log'), stream('request-log-young')];
      const walletEvents = [deposited(10n, 'kept'), deposited(20n, 'kept')];
      await store.appendToStream(wallet, walletEvents, { expectedVersion: 'no_stream' });
      await store.appendToStream(expiring, [deposited(1n, 'a'), deposited(2n, 'b'), deposited(3n, 'c')], { expectedVersion: 'no_stream' });
      await store.appendToStream(young, [deposited(4n, 'young')], { expectedVersion: 'no_stream' });
      await store.setStreamMaxAge(expiring, 3_600);
      await store.setStreamMaxAge(young, 86_400);

      // Nothing has expired yet at the real now.
      expect(await scavenge(new Date())).toEqual({ deletedEvents: 0, streams: 0 });
      expect((await store.readStream(expiring)).events).toHaveLength(3);

      // Two hours on: the one-hour stream's events are past their age, the one-day stream's are not.
      expect(await scavenge(hoursFromNow(2))).toEqual({ deletedEvents: 3, streams: 1 });
      expect(await store.readStream(expiring)).toEqual({ revision: 2n, events: [] });
      expect((await store.readStream(wallet)).events.map((e) => e.id)).toEqual(walletEvents.map((e) => e.id));
      expect((await store.readStream(young)).events).toHaveLength(1);

      // The stream goes on from its last revision ever written; an append at an old revision still conflicts.
      await expect(store.appendToStream(expiring, [deposited(5n)], { expectedVersion: 'no_stream' })).rejects.toBeInstanceOf(VersionConflictError);
      const next = await store.appendToStream(expiring, [deposited(5n, 'd')], { expectedVersion: 2n });
      expect(next.nextExpectedVersion).toBe(3n);
      expect((await store.readStream(expiring)).events.map((e) => [e.revision, e.event.data])).toEqual([[3n, { amount: 5n, note: 'd' }]]);

      // Half an hour on, the new event is still young and the old ones are gone already: nothing to do.
      expect(await scavenge(hoursFromNow(0.5))).toEqual({ deletedEvents: 0, streams: 0 });
      expect((await store.readStream(expiring)).events).toHaveLength(1);
      // Wallet events never go, however late the scavenge.
      await scavenge(hoursFromNow(24 * 365 * 10));
      expect((await store.readStream(wallet)).events.map((e) => e.id)).toEqual(walletEvents.map((e) => e.id));
      expect(await store.readStream(young)).toEqual({ revision: 0n, events: [] });
    });

    test('global-log readers and subscribers positioned before, inside or after a scavenged range go on with the next event still there', async () => {
      const scavenge = scavengeOf('readers across a scavenged range');
      if (!scavenge) return;
      const from = await marker();
      const [wallet, expiring] = [stream('wallet'), stream('request-log')];
      const a = await store.appendToStream(wallet, [deposited(1n, 'A')], { expectedVersion: 'no_stream' });
      await store.appendToStream(expiring, [deposited(1n, 'L1'), deposited(2n, 'L2'), deposited(3n, 'L3')], { expectedVersion: 'no_stream' });
      const b = await store.appendToStream(wallet, [deposited(2n, 'B')], { expectedVersion: a.nextExpectedVersion });
      await store.appendToStream(expiring, [deposited(4n, 'L4'), deposited(5n, 'L5')], { expectedVersion: 2n });
      const c = await store.appendToStream(wallet, [deposited(3n, 'C')], { expectedVersion: b.nextExpectedVersion });
      await store.setStreamMaxAge(expiring, 60);
      await visible(c.lastPosition);

      const ours = (events: readonly RecordedEvent<TestEvent>[]) =>
        events.filter((e) => e.streamId === wallet || e.streamId === expiring).map((e) => (e.event.type === 'Deposited' ? e.event.data.note : '?'));
      const before = await store.readAll(from, { maxCount: 100 });
      expect(ours(before)).toEqual(['A', 'L1', 'L2', 'L3', 'B', 'L4', 'L5', 'C']);
      const inside = before.find((e) => e.streamId === expiring && e.revision === 1n)!.position; // L2
      const lastDeleted = before.find((e) => e.streamId === expiring && e.revision === 4n)!.position; // L5

      // A live subscriber that has read everything so far, from before the range.
      const live: RecordedEvent<TestEvent>[] = [];
      let liveError: unknown;
      const subscription = store.subscribe(from).subscribe({ next: (e) => live.push(e), error: (e: unknown) => (liveError = e) });
      try {
        await until(() => ours(live).includes('C') || undefined, { timeoutMs: 10_000, what: 'the live subscriber to reach C' });

        expect(await scavenge(hoursFromNow(1))).toEqual({ deletedEvents: 5, streams: 1 });

        // Before the range, inside it, at its last deleted event: each reader goes on with what is still there.
        expect(ours(await store.readAll(from, { maxCount: 100 }))).toEqual(['A', 'B', 'C']);
        expect(ours(await store.readAll(inside, { maxCount: 100 }))).toEqual(['B', 'C']);
        expect(ours(await store.readAll(lastDeleted, { maxCount: 100 }))).toEqual(['C']);
        // A page boundary inside the deleted range skips nothing that is left.
        const paged: RecordedEvent<TestEvent>[] = [];
        for (let position = from; ; ) {
          const page = await store.readAll(position, { maxCount: 1 });
          if (page.length === 0) break;
          paged.push(...page);
          position = page[0]!.position;
        }
        expect(ours(paged)).toEqual(['A', 'B', 'C']);

        // A subscriber resuming from a checkpoint inside the deleted range.
        const resumed = await lastValueFrom(
          store.subscribe(inside).pipe(
            filter((e) => e.streamId === wallet),
            take(2),
            timeout({ each: 10_000 }),
            toArray(),
          ),
        );
        expect(ours(resumed)).toEqual(['B', 'C']);

        // The live subscriber, positioned after the range, carries on with new events and never failed.
        await store.appendToStream(wallet, [deposited(4n, 'D')], { expectedVersion: c.nextExpectedVersion });
        await until(() => ours(live).includes('D') || undefined, { timeoutMs: 10_000, what: 'the live subscriber to reach D' });
        expect(liveError).toBeUndefined();
        expect(ours(live)).toEqual(['A', 'L1', 'L2', 'L3', 'B', 'L4', 'L5', 'C', 'D']);
      } finally {
        subscription.unsubscribe();
      }
    });

    test('a stored event that no longer parses fails readStream, readAll and subscribe with EventDecodeError, never dropped', async () => {
      const from = await marker();
      const [before, broken, after] = [stream('before-broken'), stream('broken'), stream('after-broken')];
      const good = deposited(1n, 'before');
      await store.appendToStream(before, [good], { expectedVersion: 'no_stream' });
      await subject.writeUndecodable(broken);
      await visible((await store.appendToStream(after, [deposited(2n, 'after')], { expectedVersion: 'no_stream' })).lastPosition);

      const expectDecodeError = (error: unknown) => {
        expect(error).toBeInstanceOf(EventDecodeError);
        const decodeError = error as EventDecodeError;
        expect(decodeError.streamId).toBe(broken);
        expect(decodeError.revision).toBe(0n);
        expect(typeof decodeError.position.tx).toBe('bigint');
        expect(decodeError.eventType.length).toBeGreaterThan(0);
        expect(decodeError.message).toContain(broken);
        expect(decodeError.message).toContain(decodeError.eventType);
      };

      expectDecodeError(await store.readStream(broken).catch((e: unknown) => e));
      expectDecodeError(await store.readAll(from).catch((e: unknown) => e));
      // The events before it still read; the page that reaches it fails instead of skipping it.
      expect((await store.readAll(from, { maxCount: 1 })).map((e) => e.id)).toEqual([good.id]);

      const delivered: RecordedEvent<TestEvent>[] = [];
      const failure = await new Promise<unknown>((resolve) => {
        const timer = setTimeout(() => resolve(new Error('subscription neither failed nor completed in 10 s')), 10_000);
        const settle = (outcome: unknown) => {
          clearTimeout(timer);
          resolve(outcome);
        };
        store.subscribe(from).subscribe({
          next: (event) => delivered.push(event),
          error: settle,
          complete: () => settle(new Error('subscription completed instead of failing')),
        });
      });
      expectDecodeError(failure);
      expect(delivered.map((e) => e.streamId)).toEqual([before]);
    });
  });
}
