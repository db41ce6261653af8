/**
 * The PostgreSQL event store against plain SQL on the same server, in one run:
 *   npx tsx bench/event-store.ts [--seconds 3]
 * Starts a fresh embedded PostgreSQL with durable commits (fsync on, synchronous_commit on) in a
 * temp dir. Each shape alternates baseline and adapter rounds (best of three each) and prints
 * their ratio. The machine is shared: expect +-15% between runs.
 * The baseline writes the same rows (same columns, a bigserial key, no other index) with plain
 * INSERT and reads them with SELECT ... ORDER BY id paging.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { createPostgresEventStore, eventStoreMigration } from '../adapters/eventstore/postgres';
import { migrate } from '../adapters/postgres/migrate';
import { createPool } from '../adapters/postgres/pool';
import { startBenchPostgres } from './support/embedded-postgres';
import { START, type EventCodec, type EncodedEvent, type EventStore, type LogPosition, type NewEvent } from '../src/ports/event-store';

const secondsFlag = process.argv.indexOf('--seconds');
const seconds = secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 3;
const CONCURRENT_STREAMS = 100;
const BIG_APPEND = 1_000;
const GROUP = 100;

type BenchEvent = { type: 'Charged'; data: { amount: bigint; requestId: string } };

// A codec as cheap as the real one can be, so the figures are the store's.
const codec: EventCodec<BenchEvent> = {
  encode: (event): EncodedEvent => ({
    type: event.type,
    data: { amount: event.data.amount.toString(), requestId: event.data.requestId },
    metadata: { model: 'llama-3.1-8b' },
  }),
  decode: (stored) => {
    const data = stored.data as { amount: string; requestId: string };
    return { type: 'Charged', data: { amount: BigInt(data.amount), requestId: data.requestId } };
  },
};

function newEvent(): NewEvent<BenchEvent> {
  return { id: randomUUID(), event: { type: 'Charged', data: { amount: 1_234n, requestId: randomUUID() } } };
}

/**
 * Baseline and adapter in alternating rounds (B A B A B A), best round of each: other load on a
 * shared machine then hurts both sides alike instead of whichever ran during a spike.
 */
async function compare(baseline: () => Promise<number>, adapter: () => Promise<number>): Promise<{ baseline: number; adapter: number }> {
  let best = { baseline: 0, adapter: 0 };
  for (let round = 0; round < 3; round++) {
    const b = await baseline();
    const a = await adapter();
    best = { baseline: Math.max(best.baseline, b), adapter: Math.max(best.adapter, a) };
  }
  return best;
}

/** Runs `op` in `workers` loops for half the configured time (one round); returns operations per second. */
async function rate(workers: number, op: (worker: number) => Promise<number>): Promise<number> {
  const deadline = performance.now() + (seconds * 1_000) / 2;
  const started = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < deadline) {
        const count = await op(worker); // not `done += await`: that reads `done` before awaiting
        done += count;
      }
    }),
  );
  return done / ((performance.now() - started) / 1_000);
}

// The baseline table has the same columns as `events`, keyed by a bigserial, no other index.
const PLAIN_TABLE = `CREATE TABLE plain_events (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL,
  stream_id text NOT NULL,
  stream_revision bigint NOT NULL,
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
)`;
const PLAIN_INSERT = `INSERT INTO plain_events (event_id, stream_id, stream_revision, type, data, metadata)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[], $6::jsonb[])`;

async function plainInsert(pool: Pool, streamId: string, count: number, firstRevision: number): Promise<number> {
  const ids: string[] = [];
  const streams: string[] = [];
  const revisions: number[] = [];
  const types: string[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  for (let i = 0; i < count; i++) {
    const encoded = codec.encode(newEvent().event);
    ids.push(randomUUID());
    streams.push(streamId);
    revisions.push(firstRevision + i);
    types.push(encoded.type);
    data.push(JSON.stringify(encoded.data));
    metadata.push(JSON.stringify(encoded.metadata));
  }
  if (count === 1) {
    await pool.query({
      name: 'plain_insert_one',
      text: 'INSERT INTO plain_events (event_id, stream_id, stream_revision, type, data, metadata) VALUES ($1, $2, $3, $4, $5, $6)',
      values: [ids[0], streams[0], revisions[0], types[0], data[0], metadata[0]],
    });
  } else {
    await pool.query({ name: 'plain_insert_many', text: PLAIN_INSERT, values: [ids, streams, revisions, types, data, metadata] });
  }
  return count;
}

interface Row {
  shape: string;
  unit: string;
  baseline: number;
  adapter: number;
  target?: number;
}

async function main(): Promise<void> {
  const server = await startBenchPostgres();
  const pool = createPool({ connectionString: server.url, max: CONCURRENT_STREAMS + 10 });
  const rows: Row[] = [];
  try {
    const settings = await pool.query<{ name: string; setting: string }>(
      "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'server_version')",
    );
    await migrate(pool, [eventStoreMigration]);
    await pool.query(PLAIN_TABLE);
    const store = createPostgresEventStore(pool, codec);
    const quietStore = createPostgresEventStore(pool, codec, { notify: false });
    // Open every connection first so no shape pays for connecting.
    const opened = await Promise.all(Array.from({ length: CONCURRENT_STREAMS + 10 }, () => pool.connect()));
    for (const client of opened) client.release();

    // (1) one stream, sequential single-event appends at the exact expected version
    {
      let revision = -1;
      const plain = () => rate(1, () => plainInsert(pool, 'plain-one', 1, ++revision));
      const sequential = (target: EventStore<BenchEvent>) => {
        const stream = `one-${randomUUID()}`;
        let expected: bigint | 'no_stream' = 'no_stream';
        return () =>
          rate(1, async () => {
            expected = (await target.appendToStream(stream, [newEvent()], { expectedVersion: expected })).nextExpectedVersion;
            return 1;
          });
      };
      rows.push({ shape: '1 stream, sequential 1-event appends', unit: 'appends/s', ...(await compare(plain, sequential(store))), target: 0.5 });
      rows.push({ shape: '  same, without NOTIFY (notify: false)', unit: 'appends/s', ...(await compare(plain, sequential(quietStore))) });
    }

    // (2) 100 streams appended concurrently, each writer sequential on its own stream
    {
      const revisions = new Array<number>(CONCURRENT_STREAMS).fill(-1);
      const plain = () => rate(CONCURRENT_STREAMS, (w) => plainInsert(pool, `plain-c-${w}`, 1, ++revisions[w]!));
      const concurrent = (target: EventStore<BenchEvent>) => {
        const streams = Array.from({ length: CONCURRENT_STREAMS }, () => `c-${randomUUID()}`);
        const expected = new Array<bigint | 'no_stream'>(CONCURRENT_STREAMS).fill('no_stream');
        return () =>
          rate(CONCURRENT_STREAMS, async (w) => {
            expected[w] = (await target.appendToStream(streams[w]!, [newEvent()], { expectedVersion: expected[w]! })).nextExpectedVersion;
            return 1;
          });
      };
      const shape = `${CONCURRENT_STREAMS} streams, concurrent 1-event appends`;
      rows.push({ shape, unit: 'appends/s', ...(await compare(plain, concurrent(store))), target: 0.5 });
      rows.push({ shape: '  same, without NOTIFY (notify: false)', unit: 'appends/s', ...(await compare(plain, concurrent(quietStore))) });
    }

    // (3) one append of 1,000 events, repeated
    {
      const plain = () => rate(1, () => plainInsert(pool, `plain-big-${randomUUID()}`, BIG_APPEND, 0));
      const big = () =>
        rate(1, async () => {
          const events = Array.from({ length: BIG_APPEND }, newEvent);
          await store.appendToStream(`big-${randomUUID()}`, events, { expectedVersion: 'no_stream' });
          return BIG_APPEND;
        });
      rows.push({ shape: `1 append of ${BIG_APPEND} events`, unit: 'events/s', ...(await compare(plain, big)), target: 0.5 });
    }

    // (5) group commit: appendToStreams of 100 accounts x 1 event at exact revisions (the ledger's hot path)
    {
      const streams = Array.from({ length: GROUP }, () => `g-${randomUUID()}`);
      const expected = new Array<bigint | 'no_stream'>(GROUP).fill('no_stream');
      const plain = () => rate(1, () => plainInsert(pool, `plain-g-${randomUUID()}`, GROUP, 0));
      const group = () =>
        rate(1, async () => {
          const results = await store.appendToStreams(streams.map((streamId, i) => ({ streamId, events: [newEvent()], expectedVersion: expected[i]! })));
          results.forEach((result, i) => {
            if (result instanceof Error) throw result;
            expected[i] = result.nextExpectedVersion;
          });
          return GROUP;
        });
      rows.push({ shape: `appendToStreams, ${GROUP} streams x 1 event`, unit: 'events/s', ...(await compare(plain, group)), target: 0.5 });
    }

    // (4) reading the whole global log in pages of 1,000
    {
      await pool.query('VACUUM ANALYZE events');
      await pool.query('VACUUM ANALYZE plain_events');
      const plainCount = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM plain_events')).rows[0]!.n);
      const eventCount = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM events')).rows[0]!.n);
      const readPlain = async () => {
        let last = 0;
        let read = 0;
        for (;;) {
          const page = await pool.query<{ id: string }>({
            name: 'plain_page',
            text: 'SELECT * FROM plain_events WHERE id > $1 ORDER BY id LIMIT 1000',
            values: [last],
          });
          if (page.rows.length === 0) return read;
          read += page.rows.length;
          last = Number(page.rows[page.rows.length - 1]!.id);
        }
      };
      const readAdapter = async () => {
        let position: LogPosition = START;
        let read = 0;
        for (;;) {
          const page = await store.readAll(position, { maxCount: 1_000 });
          if (page.length === 0) return read;
          read += page.length;
          position = page[page.length - 1]!.position;
        }
      };
      const shape = `read all in pages of 1,000 (${eventCount} events; plain ${plainCount} rows)`;
      rows.push({
        shape,
        unit: 'events/s',
        ...(await compare(
          () => rate(1, readPlain),
          () => rate(1, readAdapter),
        )),
        target: 0.5,
      });
    }

    // Live-tail latency: appended to delivered, with NOTIFY versus the fallback poll alone.
    const latency = async (target: EventStore<BenchEvent>, samples: number): Promise<number> => {
      const arrivals = new Map<string, number>();
      const tail = (await target.readAll(START, { maxCount: 1 })).length; // warm
      void tail;
      let position = START;
      for (;;) {
        const page = await target.readAll(position, { maxCount: 10_000 });
        if (page.length === 0) break;
        position = page[page.length - 1]!.position;
      }
      const subscription = target.subscribe(position).subscribe((event) => arrivals.set(event.id, performance.now()));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const delays: number[] = [];
      const stream = `lat-${randomUUID()}`;
      let expected: bigint | 'no_stream' = 'no_stream';
      for (let i = 0; i < samples; i++) {
        const event = newEvent();
        const sent = performance.now();
        expected = (await target.appendToStream(stream, [event], { expectedVersion: expected })).nextExpectedVersion;
        while (!arrivals.has(event.id)) await new Promise((resolve) => setTimeout(resolve, 0.2));
        delays.push(arrivals.get(event.id)! - sent);
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 50));
      }
      subscription.unsubscribe();
      delays.sort((a, b) => a - b);
      return delays[Math.floor(delays.length / 2)]!;
    };
    const notifyMedian = await latency(store, 40);
    const pollMedian = await latency(quietStore, 20);
    await store.close();
    await quietStore.close();

    print(rows, settings.rows);
    console.log(
      `\nlive tail, append start to delivery (median): NOTIFY ${notifyMedian.toFixed(1)} ms; poll only (250 ms interval) ${pollMedian.toFixed(1)} ms`,
    );
  } finally {
    await pool.end();
    await server.stop();
  }
}

function print(rows: Row[], settings: { name: string; setting: string }[]): void {
  console.log(`\nevent store benchmark: ${seconds} s per measurement, ${settings.map((s) => `${s.name}=${s.setting}`).join(', ')}\n`);
  const format = (n: number) => Math.round(n).toLocaleString('en-US');
  const table = rows.map((row) => {
    const ratio = row.adapter / row.baseline;
    return {
      shape: row.shape,
      unit: row.unit,
      'plain SQL': format(row.baseline),
      adapter: format(row.adapter),
      ratio: `${ratio.toFixed(2)}x`,
      target: row.target === undefined ? '' : `>= ${row.target}x ${ratio >= row.target ? 'met' : 'MISSED'}`,
    };
  });
  const columns = Object.keys(table[0]!) as (keyof (typeof table)[number])[];
  const widths = columns.map((c) => Math.max(c.length, ...table.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, i) => (i < 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const row of table) console.log(line(columns.map((c) => row[c])));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
