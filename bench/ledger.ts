/**
 * Reservation + settlement pairs per second through the account decider and group commit,
 * against the usual mutable-balance approach of LLM gateways, in one run:
 *   npx tsx bench/ledger.ts [--seconds 5] [--flushes 1,4]
 * Fresh embedded PostgreSQL, durable commits. Shapes: (a) one account, 64 concurrent
 * requesters; (b) 1,000 accounts, 64 concurrent requesters. Baseline per pair:
 *   UPDATE balances SET available = available - $1 WHERE id = $2 AND available >= $1
 *   UPDATE balances SET available = available + $1 - $2 WHERE id = $3   (reconcile)
 * each its own transaction, on a pool of 64 connections.
 *
 * Tollgate runs once per `--flushes` value (maxFlushesInFlight of the group commit: 1 is one
 * flush at a time, more pipelines flushes of different accounts). Beside pairs/s, the CPU this
 * process and PostgreSQL spent per pair (ms, from /proc): on a shared, busy machine requests/s
 * move with the neighbours' load, CPU per pair much less.
 */
import { readdirSync, readFileSync } from 'node:fs';
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
const flushesFlag = process.argv.indexOf('--flushes');
const FLUSHES = (flushesFlag > 0 ? process.argv[flushesFlag + 1]! : '1,4').split(',').map(Number);
const REQUESTERS = 64;

/**
 * CPU ticks (1/100 s) of this process and of every postgres process under it, by pid: each its
 * own and its reaped children's (a backend that ends counts in the postmaster's).
 */
function cpuTicks(): Map<number, number> {
  const all = readdirSync('/proc').flatMap((name) => {
    if (!/^\d+$/.test(name)) return [];
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const fields = stat.slice(close + 2).split(' ');
      return [
        {
          pid: Number(name),
          ppid: Number(fields[1]),
          comm: stat.slice(stat.indexOf('(') + 1, close),
          ticks: Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]),
        },
      ];
    } catch {
      return [];
    }
  });
  const children = new Map<number, number[]>();
  for (const p of all) (children.get(p.ppid) ?? children.set(p.ppid, []).get(p.ppid)!).push(p.pid);
  const mine = new Set<number>();
  const walk = (pid: number): void => {
    mine.add(pid);
    for (const child of children.get(pid) ?? []) walk(child);
  };
  walk(process.pid);
  return new Map(all.filter((p) => p.pid === process.pid || (mine.has(p.pid) && p.comm === 'postgres')).map((p) => [p.pid, p.ticks]));
}

function ticksSince(before: Map<number, number>): number {
  let spent = 0;
  for (const [pid, ticks] of cpuTicks()) spent += ticks - (before.get(pid) ?? 0);
  return spent;
}
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

async function tollgate(pool: Pool, accounts: number, maxFlushesInFlight: number): Promise<{ rate: number; cpuMsPerPair: number }> {
  const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);
  // The bench moves far more money than the service terms allow on one account.
  const decider = accountDecider({ ...DEFAULT_ACCOUNT_POLICY, maximumBalance: 10n ** 15n });
  const handler = createGroupCommitHandler(store, decider, { maxFlushesInFlight });
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
  const ticksBefore = cpuTicks();
  let pairs = 0;
  const rate = await ratePerSecond(REQUESTERS, seconds, async () => {
    pairs += 1;
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
  const cpuMsPerPair = (ticksSince(ticksBefore) * 10) / Math.max(1, pairs);
  await store.close();
  return { rate, cpuMsPerPair };
}

async function main(): Promise<void> {
  const pg = await startBenchPostgres();
  const pool = createPool({ connectionString: pg.url, max: REQUESTERS });
  try {
    await migrate(pool, migrations);
    console.log(`reservation + settlement pairs/s, ${REQUESTERS} concurrent requesters, ${seconds}s per figure, durable commits\n`);
    const rows: string[][] = [['shape', 'baseline pairs/s', 'flushes', 'tollgate pairs/s', 'CPU ms/pair', 'ratio', 'target']];
    for (const [shape, accounts, target] of [
      ['(a) one account', 1, 2],
      ['(b) 1,000 accounts', 1_000, 1],
    ] as const) {
      const base = await baseline(pool, accounts);
      for (const flushes of FLUSHES) {
        const ours = await tollgate(pool, accounts, flushes);
        const ratio = ours.rate / base;
        rows.push([
          shape,
          base.toFixed(0),
          String(flushes),
          ours.rate.toFixed(0),
          ours.cpuMsPerPair.toFixed(2),
          `${ratio.toFixed(2)}x`,
          `>= ${target}x ${ratio >= target ? 'met' : 'NOT met'}`,
        ]);
      }
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
