/**
 * Replay speed against the raw global-log read rate, in one run:
 *   npx tsx bench/replay.ts [--events 1000000] [--page-size 5000]
 * Fresh embedded PostgreSQL (durable commits). Writes sample account histories (about 100 events
 * per account, decided by the real account decider, so every event is a valid domain event)
 * with appendToStreams in large batches; then measures
 *   raw:    readAll paging from the start to the end, decode included, nothing applied;
 *   replay: replayProjections (reset, then every page applied in one transaction per page with
 *           the checkpoints), first into the finance projections, then into every registered one.
 * Target: replay >= 0.3x raw.
 */
import { randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { createPostgresEventStore } from '../adapters/eventstore/postgres';
import { migrate } from '../adapters/postgres/migrate';
import { migrations } from '../adapters/postgres/migrations';
import { accountStreamId, decideAccount, evolveAccount, initialAccountState } from '../domain/account';
import { domainEventCodec, type DomainEvent } from '../domain/events';
import { replayProjections } from '../src/finance/replay';
import { runScriptInMemory, sampleAccountScript } from '../src/finance/sample-history';
import { START, type AppendRequest } from '../src/ports/event-store';
import { balancesProjection } from '../src/read-models/balances';
import { journalProjection } from '../src/read-models/journal';
import { projections } from '../src/read-models/registry';
import { usageProjection } from '../src/read-models/usage';
import { printTable, startBenchPostgres } from './support/embedded-postgres';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}
const targetEvents = flag('events', 1_000_000);
const pageSize = flag('page-size', 5_000);
const STEPS = 100;
const ACCOUNTS_PER_APPEND = 100;
const CONCURRENT_APPENDS = 4;

async function main(): Promise<void> {
  const pg = await startBenchPostgres();
  const pool = new Pool({ connectionString: pg.url, max: 12 });
  try {
    await migrate(pool, migrations);
    const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec, { notify: false });

    // 1. Write the log.
    let t = performance.now();
    let written = 0;
    let account = 0;
    const nextRequests = (): AppendRequest<DomainEvent>[] => {
      const requests: AppendRequest<DomainEvent>[] = [];
      while (requests.length < ACCOUNTS_PER_APPEND && written < targetEvents) {
        const accountId = `bench-${String(account).padStart(6, '0')}`;
        const script = sampleAccountScript(accountId, { seed: account + 1, steps: STEPS, startAt: '2025-01-01T00:00:00.000Z' });
        account += 1;
        const { events } = runScriptInMemory(script, (c, s) => decideAccount(c, s), evolveAccount, initialAccountState());
        const kept = events.slice(0, targetEvents - written);
        written += kept.length;
        requests.push({ streamId: accountStreamId(accountId), expectedVersion: 'no_stream', events: kept.map((event) => ({ id: randomUUID(), event })) });
      }
      return requests;
    };
    await Promise.all(
      Array.from({ length: CONCURRENT_APPENDS }, async () => {
        for (let requests = nextRequests(); requests.length > 0; requests = nextRequests()) {
          for (const result of await store.appendToStreams(requests)) if (result instanceof Error) throw result;
        }
      }),
    );
    const writeSeconds = (performance.now() - t) / 1_000;
    console.log(`wrote ${written.toLocaleString('en-US')} events over ${account.toLocaleString('en-US')} accounts in ${writeSeconds.toFixed(1)} s`);
    await pool.query('VACUUM ANALYZE events');

    // 2. Raw global-log read rate: page through readAll, decode included, apply nothing.
    t = performance.now();
    let read = 0;
    let position = START;
    let next = store.readAll(position, { maxCount: pageSize });
    for (;;) {
      const page = await next;
      if (page.length === 0) break;
      position = page[page.length - 1]!.position;
      next = store.readAll(position, { maxCount: pageSize });
      read += page.length;
    }
    const rawSeconds = (performance.now() - t) / 1_000;
    const rawRate = read / rawSeconds;

    // 3. Replays.
    const finance = await replayProjections(pool, store, [balancesProjection, usageProjection, journalProjection], { pageSize });
    const all = await replayProjections(pool, store, projections, { pageSize });

    const rate = (r: number) => `${Math.round(r).toLocaleString('en-US')} events/s`;
    console.log('');
    printTable([
      ['run', 'events', 'seconds', 'rate', 'x raw read'],
      ['raw global-log read (readAll + decode)', read.toLocaleString('en-US'), rawSeconds.toFixed(1), rate(rawRate), '1.00x'],
      [
        `replay: ${finance.projections.join(', ')}`,
        finance.events.toLocaleString('en-US'),
        finance.seconds.toFixed(1),
        rate(finance.eventsPerSecond),
        `${(finance.eventsPerSecond / rawRate).toFixed(2)}x`,
      ],
      [
        `replay: all registered (${all.projections.join(', ')})`,
        all.events.toLocaleString('en-US'),
        all.seconds.toFixed(1),
        rate(all.eventsPerSecond),
        `${(all.eventsPerSecond / rawRate).toFixed(2)}x`,
      ],
    ]);
    console.log(`\ntarget: replay >= 0.30x raw read; page size ${pageSize}`);
    await store.close();
  } finally {
    await pool.end();
    await pg.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
