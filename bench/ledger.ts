/**
 * Reservation + settlement pairs per second through the account decider and group commit,
 * against the usual mutable-balance approach of LLM gateways, in one run:
 *   npx tsx bench/ledger.ts [--seconds 5]
 * Fresh embedded PostgreSQL, durable commits. Shapes: (a) one account, 64 concurrent
 * requesters; (b) 1,000 accounts, 64 concurrent requesters. Baseline per pair:
 *   UPDATE balances SET available = available - $1 WHERE id = $2 AND available >= $1
 *   UPDATE balances SET available = available + $1 - $2 WHERE id = $3   (reconcile)
 * each its own transaction, on a pool of 64 connections.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { accountDecider, accountStreamId, DEFAULT_ACCOUNT_POLICY, type AccountCommand } from '../domain/account';
import { domainEventCodec, type DomainEvent } from '../domain/events';
import type { CommandMetadata } from '../domain/events/metadata';
import { createPostgresEventStore } from '../adapters/eventstore/postgres';
import { migrate } from '../adapters/postgres/migrate';
import { migrations } from '../adapters/postgres/migrations';
import { createPool } from '../adapters/postgres/pool';
import { createGroupCommitHandler } from '../src/handlers/group-commit';
import { printTable, ratePerSecond, startBenchPostgres } from './support/embedded-postgres';

const secondsFlag = process.argv.indexOf('--seconds');
const seconds = secondsFlag > 0 ? Number(process.argv[secondsFlag + 1]) : 5;
const REQUESTERS = 64;
const RESERVE = 2_000n; // micro-USD held per request
const PRICE = { version: 1, inputPerMillion: 1_000_000n, outputPerMillion: 2_000_000n };

function meta(requestId: string): CommandMetadata {
  return { now: new Date().toISOString(), correlationId: requestId, causationId: requestId, actor: { kind: 'customer_key', keyId: 'key-bench' } };
}

async function baseline(pool: Pool, accounts: number): Promise<number> {
  await pool.query('DROP TABLE IF EXISTS balances; CREATE TABLE balances (id int PRIMARY KEY, available bigint NOT NULL)');
  await pool.query('INSERT INTO balances SELECT g, 1000000000000 FROM generate_series(0, $1::int - 1) g', [accounts]);
  return ratePerSecond(REQUESTERS, seconds, async () => {
    const id = Math.floor(Math.random() * accounts);
    const reserved = await pool.query('UPDATE balances SET available = available - $1 WHERE id = $2 AND available >= $1', [RESERVE.toString(), id]);
    if (reserved.rowCount !== 1) throw new Error('baseline reservation declined');
    await pool.query('UPDATE balances SET available = available + $1 - $2 WHERE id = $3', [RESERVE.toString(), '250', id]);
  });
}

async function tollgate(pool: Pool, accounts: number): Promise<number> {
  const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);
  // The bench moves far more money than the service terms allow on one account.
  const decider = accountDecider({ ...DEFAULT_ACCOUNT_POLICY, maximumBalance: 10n ** 15n });
  const handler = createGroupCommitHandler(store, decider);
  const handle = (accountId: string, command: AccountCommand) => handler.handle(accountStreamId(accountId), command);
  const ids = Array.from({ length: accounts }, () => randomUUID());
  await Promise.all(
    ids.map(async (accountId) => {
      const id = randomUUID();
      await handle(accountId, { type: 'OpenAccount', data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' }, metadata: meta(id) });
      const topUp = await handle(accountId, { type: 'CompleteTopUp', data: { paymentReference: `pi_${id}`, amount: 10n ** 12n }, metadata: meta(id) });
      if (!topUp.ok) throw new Error(`bench top-up refused: ${topUp.error.error}`);
    }),
  );
  const rate = await ratePerSecond(REQUESTERS, seconds, async () => {
    const accountId = ids[Math.floor(Math.random() * accounts)]!;
    const requestId = randomUUID();
    const placed = await handle(accountId, {
      type: 'PlaceReservation',
      data: { requestId, keyId: 'key-bench', model: 'llama-3.1-8b', operation: 'chat', amount: RESERVE, priceVersion: 1 },
      metadata: meta(requestId),
    });
    if (!placed.ok) throw new Error(`bench reservation refused: ${placed.error.error}`);
    const settled = await handle(accountId, {
      type: 'SettleReservation',
      data: { requestId, usage: { inputTokens: 100n, outputTokens: 50n, estimated: false }, price: PRICE, outcome: 'completed' },
      metadata: meta(requestId),
    });
    if (!settled.ok) throw new Error(`bench settlement refused: ${settled.error.error}`);
  });
  await store.close();
  return rate;
}

async function main(): Promise<void> {
  const pg = await startBenchPostgres();
  const pool = createPool({ connectionString: pg.url, max: REQUESTERS });
  try {
    await migrate(pool, migrations);
    console.log(`reservation + settlement pairs/s, ${REQUESTERS} concurrent requesters, ${seconds}s per figure, durable commits\n`);
    const rows: string[][] = [['shape', 'baseline pairs/s', 'tollgate pairs/s', 'ratio', 'target']];
    for (const [shape, accounts, target] of [
      ['(a) one account', 1, 2],
      ['(b) 1,000 accounts', 1_000, 1],
    ] as const) {
      const base = await baseline(pool, accounts);
      const ours = await tollgate(pool, accounts);
      const ratio = ours / base;
      rows.push([shape, base.toFixed(0), ours.toFixed(0), `${ratio.toFixed(2)}x`, `>= ${target}x ${ratio >= target ? 'met' : 'NOT met'}`]);
    }
    printTable(rows);
  } finally {
    await pool.end();
    await pg.stop();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
