import { resolve } from 'node:path';
import { Client } from 'pg';
import type { AccountEvent } from '../../domain/account';
import { formatUsd } from '../../domain/money';
import { repoRoot, runToCompletion, type Finished } from './processes';
import { until } from './wait';

/**
 * What the fault suite checks after every fault: each reservation ended exactly once, the
 * money adds up from the events, the balances projection agrees, and `tollgate verify` passes.
 */

export interface ReservationEndings {
  readonly placed: number;
  readonly settled: number;
  readonly released: number;
  readonly expired: number;
  /** placed, with no ending yet */
  readonly open: string[];
  /** ended more than once, or ended without being placed */
  readonly wrong: string[];
}

export function reservationEndings(events: readonly AccountEvent[]): ReservationEndings {
  const endings = new Map<string, string[]>();
  const counts = { placed: 0, settled: 0, released: 0, expired: 0 };
  const wrong: string[] = [];
  for (const event of events) {
    switch (event.type) {
      case 'ReservationPlaced':
        counts.placed++;
        if (endings.has(event.data.requestId)) wrong.push(`${event.data.requestId} placed twice`);
        endings.set(event.data.requestId, []);
        break;
      case 'ReservationSettled':
      case 'ReservationReleased':
      case 'ReservationExpired': {
        const kind = event.type === 'ReservationSettled' ? 'settled' : event.type === 'ReservationReleased' ? 'released' : 'expired';
        counts[kind]++;
        const list = endings.get(event.data.requestId);
        if (!list) wrong.push(`${event.data.requestId} ${kind} but never placed`);
        else list.push(kind);
        break;
      }
      default:
        break;
    }
  }
  const open: string[] = [];
  for (const [requestId, list] of endings) {
    if (list.length === 0) open.push(requestId);
    if (list.length > 1) wrong.push(`${requestId} ended ${list.length} times: ${list.join(', ')}`);
  }
  return { ...counts, open, wrong };
}

/** Top-ups less settled charges (and refunds), summed from the events: what the balance must be. */
export function moneyOf(events: readonly AccountEvent[]): { toppedUp: bigint; charged: bigint; refunded: bigint; balance: bigint } {
  let toppedUp = 0n;
  let charged = 0n;
  let refunded = 0n;
  for (const event of events) {
    if (event.type === 'TopUpCompleted') toppedUp += event.data.amount;
    if (event.type === 'ReservationSettled') charged += event.data.actualCost;
    if (event.type === 'RefundIssued') refunded += event.data.amount;
  }
  return { toppedUp, charged, refunded, balance: toppedUp - charged - refunded };
}

/** The balances projection's row for an account, once it has caught up with the log. */
export async function projectedBalance(databaseUrl: string, accountId: string): Promise<{ purchased: bigint; promo: bigint; reserved: bigint } | undefined> {
  const client = new Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ purchased: string; promo: string; reserved: string }>(
      'SELECT purchased::text, promo::text, reserved::text FROM balances WHERE account_id = $1',
      [accountId],
    );
    const row = rows[0];
    return row && { purchased: BigInt(row.purchased), promo: BigInt(row.promo), reserved: BigInt(row.reserved) };
  } finally {
    await client.end();
  }
}

/** `tollgate verify`, the real CLI, as a child process against the database. */
export function runVerify(databaseUrl: string, timeoutMs = 60_000): Promise<Finished> {
  return runToCompletion(resolve(repoRoot, 'bin/tollgate'), ['verify'], { DATABASE_URL: databaseUrl }, timeoutMs);
}

/** Polls `check` until it returns a value other than undefined, or fails naming `what`; errors count as not yet. */
export function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 200): Promise<T> {
  // A check that throws (the database is still coming back) counts as not yet.
  return until(() => check().catch(() => undefined), { what, timeoutMs, intervalMs });
}

export const usdText = (amount: bigint) => `USD ${formatUsd(amount)}`;
