/** PostgreSQL-specific behaviour beyond the shared contract (test/contract/postgres.test.ts). */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { firstValueFrom, type Subscription } from 'rxjs';
import { createPostgresEventStore, eventStoreMigrations, type PostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { readCheckpoint, saveCheckpoint } from '../../../src/read-models/checkpoints';
import { createPool } from '../../../adapters/postgres/pool';
import { comparePositions, DuplicateEventIdError, START, VersionConflictError, type NewEvent, type StreamAnnouncement } from '../../../src/ports/event-store';
import { testEventCodec, type TestEvent } from '../../contract/event-store.contract';
import { createTestDatabase } from '../../support/database';
import { openBlockingTransaction } from '../../support/blocking-transaction';
import { until, within } from '../../support/wait';

let pool: Pool;
let databaseUrl: string;
let store: PostgresEventStore<TestEvent>;

beforeAll(async () => {
  databaseUrl = await createTestDatabase('esunit');
  pool = createPool({ connectionString: databaseUrl, max: 6 });
  await migrate(pool, eventStoreMigrations);
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
  await expect(store.appendToStream(other, [event], { expectedVersion: 'no_stream' })).rejects.toBeInstanceOf(DuplicateEventIdError);
  expect(await store.readStream(other)).toEqual({ revision: null, events: [] });
});

test('an empty append only checks the expected version', async () => {
  const id = stream('empty');
  await expect(store.appendToStream(id, [], { expectedVersion: 0n })).rejects.toBeInstanceOf(VersionConflictError);
  expect(await store.appendToStream(id, [], { expectedVersion: 'no_stream' })).toEqual({ nextExpectedVersion: -1n, lastPosition: START, written: false });
  expect(await store.readStream(id)).toEqual({ revision: null, events: [] });
});

test('a live subscriber is woken by NOTIFY after another process appends, long before its fallback poll', async () => {
  const position = (await store.appendToStream(stream('notify-marker'), [deposited(0n)], { expectedVersion: 'no_stream' })).lastPosition;
  const id = stream('notify');
  const arrival = firstValueFrom(store.subscribe(position));
  // Waiting: its LISTEN is in place. The fallback poll is a minute away, beyond this test's own
  // timeout, so the event arriving at all means NOTIFY woke the subscriber. The writer is another
  // store (as another process): a store's own appends wake its subscribers in the process.
  await until(async () => ((await listeners()) === 1 ? true : undefined), { what: 'the subscriber to LISTEN' });
  const other = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000 });
  try {
    await other.appendToStream(id, [deposited(1n)], { expectedVersion: 'no_stream' });
    const event = await within(arrival, 'the event (only NOTIFY can bring it before the 60 s poll)', 20_000);
    expect(event.streamId).toBe(id);
  } finally {
    await other.close();
  }
});

test("a store's own appends wake its own subscribers in the process, without any NOTIFY", async () => {
  // No NOTIFY at all, and a poll a minute away: only the in-process wake-up can bring the events.
  const silent = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000, idlePollMaxMs: 60_000, notify: false });
  const id = stream('own');
  const seen: bigint[] = [];
  let subscription: Subscription | undefined;
  try {
    subscription = silent.subscribe(await silent.headPosition()).subscribe((event) => {
      if (event.streamId === id) seen.push(event.revision);
    });
    await until(async () => ((await listeners()) >= 1 ? true : undefined), { what: 'the subscriber to LISTEN' });
    for (let i = 0; i < 5; i++) {
      await silent.appendToStream(id, [deposited(BigInt(i))], { expectedVersion: i === 0 ? 'no_stream' : BigInt(i - 1) });
      await until(async () => (seen.length === i + 1 ? true : undefined), { what: `event ${i} (the poll is a minute away)`, timeoutMs: 20_000 });
    }
    expect(seen).toEqual([0n, 1n, 2n, 3n, 4n]);
  } finally {
    subscription?.unsubscribe();
    await silent.close();
  }
});

test('a burst of appends sends one NOTIFY at once and at most one per spacing after it; the one still due is sent at close', async () => {
  // Counted by what a listener hears: each wake-up NOTIFY is a transaction of its own, delivered
  // in commit order. A spacing of ten minutes: the burst is over long before it.
  const listener = await pool.connect();
  const wakes: string[] = [];
  let markerHeard!: () => void;
  const marker = new Promise<void>((resolve) => (markerHeard = resolve));
  const wakesAtClose = { count: -1 };
  listener.on('notification', (message) => {
    if (message.payload === 'test-marker') markerHeard();
    else if (message.payload?.startsWith('wake:')) wakes.push(message.payload);
  });
  await listener.query('LISTEN tollgate_events');
  const writer = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000, notifySpacingMs: 600_000 });
  try {
    const id = stream('burst');
    for (let i = 0; i < 20; i++) await writer.appendToStream(id, [deposited(BigInt(i))], { expectedVersion: i === 0 ? 'no_stream' : BigInt(i - 1) });
    // Everything sent before this marker is heard before it.
    await pool.query("SELECT pg_notify('tollgate_events', 'test-marker')");
    await within(marker, 'the marker', 20_000);
    expect(wakes).toHaveLength(1);
    // The appends after the first are announced once more, by the close (not ten minutes later).
    await writer.close();
    await until(async () => (wakes.length >= 2 ? true : undefined), { what: 'the NOTIFY still due at close' });
    wakesAtClose.count = wakes.length;
    expect(new Set(wakes).size).toBe(1);
  } finally {
    await writer.close();
    await listener.query('UNLISTEN tollgate_events').catch(() => undefined);
    listener.release();
  }
  expect(wakesAtClose.count).toBe(2);
});

test('a quiet subscription backs its fallback poll off, each poll one statement', async () => {
  // The store's own queries, counted on a pool of its own (this file's other stores share `pool`).
  const counted = createPool({ connectionString: databaseUrl, max: 3 });
  const texts: string[] = [];
  const query = counted.query.bind(counted) as (...args: unknown[]) => unknown;
  (counted as { query: unknown }).query = (...args: unknown[]) => {
    const first = args[0];
    texts.push(typeof first === 'string' ? first : String((first as { text?: string }).text));
    return query(...args);
  };
  const quiet = createPostgresEventStore(counted, testEventCodec, { pollIntervalMs: 20, idlePollMaxMs: 60_000 });
  const reads = () => texts.filter((t) => t.includes('FROM events e') && t.includes('pg_snapshot_xmin')).length;
  const others = () => texts.filter((t) => !(t.includes('FROM events e') && t.includes('pg_snapshot_xmin')) && !t.includes('LISTEN')).length;
  let subscription: Subscription | undefined;
  try {
    subscription = quiet.subscribe(await store.headPosition()).subscribe();
    // 20, 40, 80, 160, 320 ms apart: six reads within about 0.6 s (the first at once).
    await until(async () => (reads() >= 6 ? true : undefined), { what: 'six quiet reads' });
    const after = reads();
    // Without the back-off a 20 ms poll reads about 75 times in 1.5 s; backed off (640 ms, then
    // 1,280 ms), at most 2. A slow machine only reads less.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(reads() - after).toBeLessThanOrEqual(2);
    // Each read also tells whether events are hidden behind the horizon: no statement besides the reads.
    expect(others()).toBe(0);
  } finally {
    subscription?.unsubscribe();
    await quiet.close();
    await counted.end();
  }
});

test('reads after notifications are spaced: many writers notifying cost a subscriber one read per spacing, and every event arrives', async () => {
  const counted = createPool({ connectionString: databaseUrl, max: 3 });
  let reads = 0;
  const query = counted.query.bind(counted) as (...args: unknown[]) => unknown;
  (counted as { query: unknown }).query = (...args: unknown[]) => {
    const first = args[0];
    const text = typeof first === 'string' ? first : String((first as { text?: string }).text);
    if (text.includes('FROM events e') && text.includes('pg_snapshot_xmin')) reads += 1;
    return query(...args);
  };
  const SPACING_MS = 300;
  const reader = createPostgresEventStore(counted, testEventCodec, { pollIntervalMs: 60_000, notifiedReadSpacingMs: SPACING_MS });
  // Three writers, as three instances: each notifies on its own (every 25 ms at most).
  const writers = [0, 1, 2].map(() => createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000 }));
  const ids = writers.map(() => stream('spaced'));
  const seen = new Set<string>();
  let subscription: Subscription | undefined;
  try {
    let all!: () => void;
    const arrived = new Promise<void>((resolve) => (all = resolve));
    subscription = reader.subscribe(await store.headPosition()).subscribe((event) => {
      if (ids.includes(event.streamId)) seen.add(event.id);
      if (seen.size === 90) all();
    });
    await until(async () => (reads >= 1 ? true : undefined), { what: 'the first read' });
    const started = performance.now();
    const readsBefore = reads;
    await Promise.all(
      writers.map(async (writer, w) => {
        for (let i = 0; i < 30; i++) await writer.appendToStream(ids[w]!, [deposited(BigInt(i))], { expectedVersion: i === 0 ? 'no_stream' : BigInt(i - 1) });
      }),
    );
    await within(arrived, 'all 90 events', 30_000);
    const elapsed = performance.now() - started;
    // Unspaced, each notification (dozens) is a read; spaced, one per 300 ms of the burst, and a few at its edges.
    expect(reads - readsBefore).toBeLessThanOrEqual(Math.ceil(elapsed / SPACING_MS) + 3);
    expect(seen.size).toBe(90);
  } finally {
    subscription?.unsubscribe();
    for (const writer of writers) await writer.close();
    await reader.close();
    await counted.end();
  }
});

test('live subscribers at the same position share each read of the log, and each receives every event once, in order', async () => {
  // A store whose global-log reads are counted, on a pool of its own.
  const countedStore = () => {
    const counted = createPool({ connectionString: databaseUrl, max: 4 });
    const tally = { reads: 0 };
    const query = counted.query.bind(counted) as (...args: unknown[]) => unknown;
    (counted as { query: unknown }).query = (...args: unknown[]) => {
      const first = args[0];
      const text = typeof first === 'string' ? first : String((first as { text?: string }).text);
      if (text.includes('FROM events e') && text.includes('pg_snapshot_xmin')) tally.reads += 1;
      return query(...args);
    };
    return { pool: counted, tally, store: createPostgresEventStore(counted, testEventCodec, { pollIntervalMs: 60_000, notifiedReadSpacingMs: 5 }) };
  };
  // Three subscribers of one store, and one alone on another: the three together should read as
  // often as the one (hidden events retried while another test's transaction holds the horizon
  // inflate both alike); reading each for itself, they would read three times as often.
  const shared = countedStore();
  const solo = countedStore();
  const id = stream('shared');
  const ROUNDS = 12;
  const seen: string[][] = [[], [], [], []];
  const subscriptions: Subscription[] = [];
  try {
    const from = await store.headPosition();
    const collect = (list: string[]) => (event: { streamId: string; id: string }) => event.streamId === id && list.push(event.id);
    for (const list of seen.slice(0, 3)) subscriptions.push(shared.store.subscribe(from).subscribe(collect(list)));
    subscriptions.push(solo.store.subscribe(from).subscribe(collect(seen[3]!)));
    await until(async () => (shared.tally.reads >= 3 && solo.tally.reads >= 1 && (await listeners()) >= 2 ? true : undefined), { what: 'the first reads' });
    const sharedBefore = shared.tally.reads;
    const soloBefore = solo.tally.reads;
    const written: string[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const event = deposited(BigInt(i));
      written.push(event.id);
      await store.appendToStream(id, [event], { expectedVersion: i === 0 ? 'no_stream' : BigInt(i - 1) });
      await until(async () => (seen.every((list) => list.length === i + 1) ? true : undefined), { what: `event ${i} at every subscriber` });
    }
    for (const list of seen) expect(list).toEqual(written);
    const soloReads = solo.tally.reads - soloBefore;
    expect(soloReads).toBeGreaterThanOrEqual(ROUNDS);
    expect(shared.tally.reads - sharedBefore).toBeLessThanOrEqual(soloReads + 4);
  } finally {
    for (const subscription of subscriptions) subscription.unsubscribe();
    for (const { store: s, pool: p } of [shared, solo]) {
      await s.close();
      await p.end();
    }
  }
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
  await expect(pool.query('TRUNCATE events')).rejects.toThrow(/append-only/);
});

test('only a scavenge deletes, and only expired events of max-age streams: a hand-made DELETE is refused, whatever it pretends', async () => {
  const [wallet, aging] = [stream('wallet'), stream('aging')];
  await store.appendToStream(wallet, [deposited(1n)], { expectedVersion: 'no_stream' });
  await store.appendToStream(aging, [deposited(2n)], { expectedVersion: 'no_stream' });
  await store.setStreamMaxAge(aging, 1);
  // Even an expired event of a max-age stream is refused outside a scavenge.
  await expect(pool.query("DELETE FROM events WHERE stream_id = $1 AND recorded_at < now() + interval '1 day'", [aging])).rejects.toThrow(/append-only/);
  // Borrowing the scavenge's horizon still never lets a wallet event go.
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query("SELECT set_config('tollgate.scavenge_at', (now() + interval '100 years')::text, true)");
    await expect(client.query('DELETE FROM events WHERE stream_id = $1', [wallet])).rejects.toThrow(/append-only/);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  const later = new Date(Date.now() + 3_600_000);
  expect(await store.scavenge(later)).toEqual({ deletedEvents: 1, streams: 1 });
  expect((await store.readStream(wallet)).events).toHaveLength(1);
  expect((await store.readStream(aging)).events).toHaveLength(0);
});

describe('announced appends (stream announcements)', () => {
  const withdrawn = (amount: bigint): NewEvent<TestEvent> => ({ id: randomUUID(), event: { type: 'Withdrawn', data: { amount } } });
  let announcing: PostgresEventStore<TestEvent>;
  let subscription: Subscription;
  const heard: Extract<StreamAnnouncement, { kind: 'appended' }>[] = [];
  let listeningTold = 0;

  beforeAll(async () => {
    announcing = createPostgresEventStore(pool, testEventCodec, { pollIntervalMs: 60_000, announcedTypes: ['Withdrawn'] });
    subscription = announcing.streamAnnouncements!().subscribe((announcement) => {
      if (announcement.kind === 'appended') heard.push(announcement);
      else listeningTold++;
    });
    // LISTEN starts asynchronously: announce a probe until one is heard.
    const probe = stream('probe');
    let revision = -1n;
    await until(
      async () => {
        await announcing.appendToStream(probe, [withdrawn(1n)], { expectedVersion: revision < 0n ? 'no_stream' : revision });
        revision++;
        return heard.some((a) => a.streamId === probe) ? true : undefined;
      },
      { what: 'the first announcement', intervalMs: 100 },
    );
  });
  afterAll(async () => {
    subscription.unsubscribe();
    await announcing.close();
  });

  test('an announced append is heard as it commits, even while an older transaction holds the global log back; others are not announced', async () => {
    const quiet = stream('quiet');
    const loud = stream('loud');
    const blocker = await openBlockingTransaction(databaseUrl, 'unit-blocker');
    try {
      await announcing.appendToStream(quiet, [deposited(1n)], { expectedVersion: 'no_stream' });
      const appended = await announcing.appendToStreams([
        { streamId: loud, events: [deposited(1n), withdrawn(2n)], expectedVersion: 'no_stream' },
        { streamId: quiet, events: [deposited(3n)], expectedVersion: 0n },
      ]);
      expect(appended.every((r) => !(r instanceof VersionConflictError))).toBe(true);
      const announcement = await until(() => heard.find((a) => a.streamId === loud), { what: 'the announcement of the loud stream' });
      // The stream and the revision of its last event: a reader reads the stream itself up to there.
      expect(announcement).toEqual({ kind: 'appended', streamId: loud, revision: 1n });
      // Heard while the global log cannot show it yet.
      expect(await blocker.stillOpen()).toBe(true);
      expect(comparePositions(await announcing.latestPosition(), await announcing.headPosition())).toBeGreaterThan(0);
      expect((await announcing.readStream(loud)).revision).toBe(1n);
    } finally {
      await blocker.end();
    }
    expect(heard.filter((a) => a.streamId === quiet)).toEqual([]);
  });

  test('a subscriber is told when announcements flow: at once when it joins a connection already listening', async () => {
    expect(listeningTold).toBe(1);
    const late: StreamAnnouncement[] = [];
    const joined = announcing.streamAnnouncements!().subscribe((announcement) => late.push(announcement));
    try {
      expect(late).toEqual([{ kind: 'listening' }]);
    } finally {
      joined.unsubscribe();
    }
  });

  test('an announced append keeps the append rules: a conflict stores and announces nothing, an exact retry is reported as already written', async () => {
    const id = stream('rules');
    const first = withdrawn(5n);
    expect(await announcing.appendToStream(id, [first], { expectedVersion: 'no_stream' })).toMatchObject({ nextExpectedVersion: 0n, written: true });
    await expect(announcing.appendToStream(id, [withdrawn(6n)], { expectedVersion: 'no_stream' })).rejects.toBeInstanceOf(VersionConflictError);
    expect(await announcing.appendToStream(id, [first], { expectedVersion: 'no_stream' })).toMatchObject({ nextExpectedVersion: 0n, written: false });
    const other = withdrawn(7n);
    await announcing.appendToStream(id, [other], { expectedVersion: 0n });
    await until(() => heard.find((a) => a.streamId === id && a.revision === 1n), { what: 'the second announcement' });
    // One announcement per written append: none for the conflict, none for the retry.
    expect(heard.filter((a) => a.streamId === id)).toEqual([
      { kind: 'appended', streamId: id, revision: 0n },
      { kind: 'appended', streamId: id, revision: 1n },
    ]);
    expect((await announcing.readStream(id)).events.map((e) => e.id)).toEqual([first.id, other.id]);
  });

  test('globalLogLag: a transaction holding readers back shows with its pid, application and state, never its query', async () => {
    const blocker = await openBlockingTransaction(databaseUrl, 'unit-lag-blocker');
    try {
      await announcing.appendToStream(stream('hidden'), [deposited(1n)], { expectedVersion: 'no_stream' });
      // Other test files share this server and write too: wait until the oldest blocker is ours.
      const lag = await until(
        async () => {
          const measured = await announcing.globalLogLag!();
          return measured.blocker?.pid === blocker.pid ? measured : undefined;
        },
        { what: 'the lag to name our blocker' },
      );
      expect(lag.hiddenEvents).toBeGreaterThanOrEqual(1);
      expect(lag.seconds).toBeGreaterThanOrEqual(0);
      expect(lag.blocker).toMatchObject({ applicationName: 'unit-lag-blocker', state: 'idle in transaction', preparedTransaction: null });
      expect(lag.blocker!.transactionAgeSeconds).toEqual(expect.any(Number));
      expect(JSON.stringify(lag)).not.toContain('pg_current_xact_id');
    } finally {
      await blocker.end();
    }
    await until(async () => ((await announcing.globalLogLag!()).blocker?.pid !== blocker.pid ? true : undefined), { what: 'our blocker to be gone' });
  });
});
