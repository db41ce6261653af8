import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { accountStreamId, CLAIM_PERIOD_MS } from '../../domain/account';
import type { Actor } from '../../domain/events/metadata';
import type { MicroUsd } from '../../domain/money';
import { commandMetadata } from '../command-metadata';
import type { Worker } from '../instances/lease';
import type { Ledger } from '../ledger';
import { startPollLoop, type PollLoop } from './poll-loop';

/**
 * The forfeiture of unclaimed credit: 360 days after closure, a closed account's refundable credit
 * that nobody claimed is no longer owed (ForfeitUnclaimedCredit records PurchasedCreditForfeited,
 * reason claim_period_over; the journal moves it from customer credit to income). What was claimed
 * in time stays owed, disputed amounts stay held, a debt stays a debt: the decider says how much.
 */

export interface Forfeiture {
  readonly accountId: string;
  readonly amount: MicroUsd;
}

/**
 * Forfeits what is due at `now`. The candidates are the closed accounts whose claim period ended
 * (the retention read model knows closures) and that still hold purchased credit (the balances read
 * model); a read model behind the log only delays a forfeiture to the next run. Each is decided on
 * the account's own stream, so a second run, or two instances at once, forfeit nothing twice.
 */
export async function forfeitUnclaimedCredit(
  deps: { readonly pool: Pool; readonly ledger: Ledger },
  at: { readonly now: Date; readonly actor: Actor },
): Promise<Forfeiture[]> {
  const { rows } = await deps.pool.query<{ account_id: string }>(
    `SELECT r.account_id FROM personal_data_retention r JOIN balances b ON b.account_id = r.account_id
      WHERE r.closed_at IS NOT NULL AND r.closed_at <= $1::timestamptz - $2 * interval '1 millisecond' AND b.purchased > 0
      ORDER BY r.closed_at, r.account_id`,
    [at.now.toISOString(), CLAIM_PERIOD_MS],
  );
  const forfeited: Forfeiture[] = [];
  for (const { account_id: accountId } of rows) {
    const metadata = { ...commandMetadata(at.actor), now: at.now.toISOString() };
    const result = await deps.ledger.accounts.handle(accountStreamId(accountId), { type: 'ForfeitUnclaimedCredit', data: {}, metadata });
    if (result.ok) {
      for (const { event } of result.events) if (event.type === 'PurchasedCreditForfeited') forfeited.push({ accountId, amount: event.data.amount });
    } else if (result.error.error !== 'nothing_to_forfeit' && result.error.error !== 'claim_period_not_over') {
      throw new Error(`ForfeitUnclaimedCredit refused for ${accountId}: ${result.error.error}`);
    }
  }
  return forfeited;
}

/**
 * Runs the forfeiture as one of the background workers (one live instance at a time,
 * src/instances/lease.ts): at start and every `checkIntervalMs`, by `clock` (tests inject one).
 */
export class ForfeitureSchedule implements Worker {
  private loop: PollLoop | undefined;

  constructor(
    private readonly deps: { readonly pool: Pool; readonly ledger: Ledger; readonly log: Logger },
    private readonly options: { readonly clock: () => Date; readonly checkIntervalMs: number },
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runOnce(), {
      intervalMs: this.options.checkIntervalMs,
      onError: (error) =>
        this.deps.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'forfeiture run failed; retried at the next check'),
    });
    void this.loop.runNow();
  }

  async runOnce(): Promise<Forfeiture[]> {
    const forfeited = await forfeitUnclaimedCredit(this.deps, { now: this.options.clock(), actor: { kind: 'system', process: 'forfeiture-schedule' } });
    for (const f of forfeited)
      this.deps.log.info({ accountId: f.accountId, amountMicroUsd: f.amount.toString() }, 'unclaimed credit forfeited after the claim period');
    return forfeited;
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
  }
}
