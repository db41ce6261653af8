import type { Pool } from 'pg';
import { readCheckpoint } from '../read-models/checkpoints';
import { evolveAccount, initialAccountState, promoBalanceOf, type AccountEvent, type AccountState } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import { formatUsd, type MicroUsd } from '../../domain/money';
import { toEpochMs } from '../../domain/time/instant';
import { accountIdOfStream } from '../../projections/balances/balances';
import { comparePositions, START, type EventStore, type LogPosition } from '../ports/event-store';

/** One thing that disagrees, named by the check that found it. */
export interface Difference {
  readonly check: 'balance' | 'journal_customer_balance' | 'trial_balance' | 'unbalanced_event' | 'reservation_past_ttl';
  readonly accountId: string | null;
  readonly detail: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly differences: readonly Difference[];
  readonly accounts: number;
  readonly events: number;
}

interface Amounts {
  readonly purchased: MicroUsd;
  readonly promo: MicroUsd;
  readonly reserved: MicroUsd;
}

const amountsOf = (state: AccountState): Amounts => ({ purchased: state.purchased, promo: promoBalanceOf(state), reserved: state.reserved });

/**
 * Finds every cent. Folds the whole log with the domain's own evolve, then checks:
 * 1. the balances projection, at its checkpoint, holds exactly each account's folded balance;
 * 2. the journal, at its checkpoint, owes each customer exactly their folded balance;
 * 3. the journal's trial balance is zero, and so are each event's postings (so it is zero at
 *    every position of the log);
 * 4. no reservation is open past its deadline (expiresAt) plus `graceMs` (the expiry process's lag).
 * Each projection is compared at its own checkpoint, read with its rows in one snapshot, so a
 * projection that is merely behind is not reported.
 */
export async function verifyFinance(
  pool: Pool,
  store: EventStore<DomainEvent>,
  options: { now?: Date; graceMs?: number; pageSize?: number } = {},
): Promise<VerifyReport> {
  const now = (options.now ?? new Date()).getTime();
  const graceMs = options.graceMs ?? 60_000;
  const differences: Difference[] = [];

  const client = await pool.connect();
  let balancesAt: LogPosition;
  let journalAt: LogPosition;
  let balanceRows: Map<string, Amounts>;
  let journalOwed: Map<string, MicroUsd>;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    balancesAt = await readCheckpoint(client, 'balances');
    journalAt = await readCheckpoint(client, 'journal');
    const balances = await client.query<{ account_id: string; purchased: string; promo: string; reserved: string; available: string }>(
      'SELECT account_id, purchased::text, promo::text, reserved::text, available::text FROM balances',
    );
    balanceRows = new Map(balances.rows.map((r) => [r.account_id, { purchased: BigInt(r.purchased), promo: BigInt(r.promo), reserved: BigInt(r.reserved) }]));
    for (const r of balances.rows) {
      if (BigInt(r.available) !== BigInt(r.purchased) + BigInt(r.promo) - BigInt(r.reserved)) {
        differences.push({
          check: 'balance',
          accountId: r.account_id,
          detail: `available ${formatUsd(BigInt(r.available))} is not purchased + promo - reserved`,
        });
      }
    }
    const owed = await client.query<{ account_id: string; owed: string }>(
      `SELECT account_id, (-sum(amount))::text AS owed FROM journal_postings
        WHERE ledger_account IN ('customer_purchased_credit', 'customer_promo_credit') GROUP BY account_id`,
    );
    journalOwed = new Map(owed.rows.map((r) => [r.account_id, BigInt(r.owed)]));
    const trial = await client.query<{ total: string | null }>('SELECT sum(amount)::text AS total FROM journal_postings');
    const total = BigInt(trial.rows[0]!.total ?? '0');
    if (total !== 0n) differences.push({ check: 'trial_balance', accountId: null, detail: `the journal's postings sum to ${formatUsd(total)}, not 0` });
    const unbalanced = await client.query<{ tx: string; seq: string; account_id: string; event_type: string; total: string }>(
      `SELECT tx::text, seq::text, min(account_id) AS account_id, min(event_type) AS event_type, sum(amount)::text AS total
         FROM journal_postings GROUP BY tx, seq HAVING sum(amount) <> 0 ORDER BY tx, seq LIMIT 100`,
    );
    for (const r of unbalanced.rows) {
      differences.push({
        check: 'unbalanced_event',
        accountId: r.account_id,
        detail: `${r.event_type} at ${r.tx}/${r.seq}: postings sum to ${formatUsd(BigInt(r.total))}`,
      });
    }
    await client.query('COMMIT');
  } finally {
    client.release();
  }

  // Fold the log, taking each projection's expected rows as the fold passes its checkpoint.
  const states = new Map<string, AccountState>();
  const snapshot = () => new Map([...states].map(([id, s]) => [id, amountsOf(s)]));
  let expectedBalances: Map<string, Amounts> | undefined;
  let expectedJournal: Map<string, Amounts> | undefined;
  let position = START;
  let events = 0;
  for (;;) {
    const page = await store.readAll(position, { maxCount: options.pageSize ?? 5_000 });
    if (page.length === 0) break;
    for (const recorded of page) {
      if (!expectedBalances && comparePositions(recorded.position, balancesAt) > 0) expectedBalances = snapshot();
      if (!expectedJournal && comparePositions(recorded.position, journalAt) > 0) expectedJournal = snapshot();
      events += 1;
      const accountId = accountIdOfStream(recorded.streamId);
      if (accountId === null) continue;
      states.set(accountId, evolveAccount(states.get(accountId) ?? initialAccountState(), recorded.event as AccountEvent));
    }
    position = page[page.length - 1]!.position;
  }
  expectedBalances ??= snapshot();
  expectedJournal ??= snapshot();

  for (const accountId of new Set([...expectedBalances.keys(), ...balanceRows.keys()])) {
    const want = expectedBalances.get(accountId);
    const have = balanceRows.get(accountId);
    if (!want || !have) {
      differences.push({ check: 'balance', accountId, detail: want ? 'no row in the balances projection' : 'a balances row for an account with no events' });
      continue;
    }
    for (const field of ['purchased', 'promo', 'reserved'] as const) {
      if (want[field] !== have[field]) {
        differences.push({ check: 'balance', accountId, detail: `${field}: projection ${formatUsd(have[field])}, events ${formatUsd(want[field])}` });
      }
    }
  }
  for (const accountId of new Set([...expectedJournal.keys(), ...journalOwed.keys()])) {
    const want = expectedJournal.get(accountId);
    const wantOwed = want ? want.purchased + want.promo : 0n;
    const haveOwed = journalOwed.get(accountId) ?? 0n;
    if (wantOwed !== haveOwed) {
      differences.push({ check: 'journal_customer_balance', accountId, detail: `journal owes ${formatUsd(haveOwed)}, events say ${formatUsd(wantOwed)}` });
    }
  }
  for (const [accountId, state] of states) {
    for (const reservation of state.openReservations.values()) {
      const overdueMs = now - toEpochMs(reservation.expiresAt);
      if (overdueMs > graceMs) {
        differences.push({
          check: 'reservation_past_ttl',
          accountId,
          detail: `reservation ${reservation.requestId} (${formatUsd(reservation.amount)}) expired at ${reservation.expiresAt} and is still open`,
        });
      }
    }
  }
  return { ok: differences.length === 0, differences, accounts: states.size, events };
}
