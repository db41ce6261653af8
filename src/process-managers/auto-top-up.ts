import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import Stripe from 'stripe';
import { accountStreamId, type AccountEvent } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import { accountIdOfStream, balanceChange } from '../../projections/balances/balances';
import type { Migration } from '../ports/migration';
import { systemMetadata } from '../command-metadata';
import type { Ledger } from '../ledger';
import type { EventStore, RecordedEvent } from '../ports/event-store';
import { runProjection, type RunningProjection, type SqlProjection } from '../read-models/runner';
import { centsRoundedUp } from '../payments/amounts';
import { startPollLoop, type PollLoop } from './poll-loop';

/**
 * Auto top-up: a process manager that follows the ledger and charges the account's saved card
 * off-session when a settlement takes the available balance below the customer's threshold.
 *
 * 1. The `auto-top-up` subscriber (checkpointed like a projection) keeps each account's
 *    configuration and available balance, and when a ReservationSettled leaves it below the
 *    threshold with no attempt pending, writes an attempt row in the same transaction as its
 *    checkpoint. The attempt id comes from the triggering event's id, so a replay writes the same row.
 * 2. A worker takes attempt rows: records RecordAutoTopUpTriggered, bills the amount as its own
 *    Stripe invoice paid off-session with the saved card (see stripeOffSessionCharger), with
 *    idempotency keys derived from the attempt (a restart re-sends the same keys and Stripe answers
 *    with the first invoice and PaymentIntent, never a second charge), then waits for the payment
 *    webhook (invoice.paid or payment_intent.succeeded), which credits the net amount and completes
 *    the top-up with `autoTopUpAttemptId` from the metadata.
 *    A decline records RecordAutoTopUpFailed and suspends the account (`auto_top_up_failed`)
 *    until a top-up replenishes it.
 */

/** Invoice and PaymentIntent metadata keys: the payment webhook reads these to credit the net amount and end the attempt. */
export const AUTO_TOP_UP_METADATA = {
  accountId: 'tollgate_account_id',
  attemptId: 'tollgate_auto_top_up_attempt_id',
  /** the net credit in cents (what the ledger credits; the invoice's tax is on top) */
  creditCents: 'credit_cents',
  invoiceId: 'tollgate_invoice_id',
} as const;

export const autoTopUpMigration: Migration = {
  id: '0031_auto_top_up',
  sql: `
    CREATE TABLE auto_top_up_accounts (
      account_id text PRIMARY KEY,
      threshold bigint,
      amount bigint,
      available bigint NOT NULL DEFAULT 0,
      pending_attempt_id text,
      suspended boolean NOT NULL DEFAULT false
    );
    CREATE TABLE auto_top_up_attempts (
      attempt_id text PRIMARY KEY,
      account_id text NOT NULL,
      trigger_event_id text NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'triggered', 'charged', 'failed', 'skipped')),
      amount bigint,
      payment_intent_id text,
      reason text,
      tries integer NOT NULL DEFAULT 0,
      next_try_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX auto_top_up_attempts_due ON auto_top_up_attempts (next_try_at) WHERE status IN ('pending', 'triggered');
    CREATE INDEX auto_top_up_attempts_by_account ON auto_top_up_attempts (account_id, created_at DESC);
  `,
};

/** Deterministic: the same triggering event always names the same attempt. */
export function attemptIdFor(triggerEventId: string): string {
  return `atu_${triggerEventId}`;
}

/** The Stripe idempotency key of an attempt's charge: a restart sends the same key. */
export function idempotencyKeyFor(attemptId: string): string {
  return `tollgate-auto-top-up-${createHash('sha256').update(attemptId).digest('hex').slice(0, 40)}`;
}

export interface SavedCard {
  readonly customerId: string;
  readonly paymentMethodId: string;
}

/** Where the account's Stripe customer and saved card are (the payments part records them). */
export type SavedCardOf = (accountId: string) => Promise<SavedCard | null>;

export type ChargeOutcome =
  | { readonly ok: true; readonly paymentIntentId: string; readonly invoiceId?: string }
  | { readonly ok: false; readonly declined: true; readonly reason: string };

/** Charges a saved card off-session; throws on anything that is not an answer (network, 5xx): retried. */
export interface OffSessionCharger {
  charge(input: { accountId: string; attemptId: string; amount: MicroUsd; idempotencyKey: string }): Promise<ChargeOutcome>;
}

export interface StripeChargerOptions {
  /** Stripe Tax adds VAT on top of the net amount (STRIPE_AUTOMATIC_TAX); the customer's VAT id makes it a reverse charge */
  readonly automaticTax: boolean;
}

/**
 * The Stripe implementation: each auto top-up is its own invoice ("processed immediately and
 * invoiced separately"), paid off-session with the saved card:
 *
 * 1. a draft invoice for the customer (metadata: account, attempt, net credit in cents), with
 *    Stripe Tax when configured; Stripe copies the customer's tax ids onto it, so a verified EU
 *    VAT id makes it a reverse charge;
 * 2. one invoice item for the net amount (the configured amount plus any debt), tax exclusive;
 * 3. finalized: numbered, tax computed, amount due = net + tax;
 * 4. a PaymentIntent for the amount due carrying the same metadata, so the payment webhook
 *    credits the NET amount to the attempt (never the tax);
 * 5. attached to the invoice, which it pays; 6. confirmed off-session with the saved card.
 *
 * Every call has its own idempotency key derived from the attempt: a restart at any step sends
 * the same keys and Stripe answers with the first result, so there is one invoice and one charge.
 * A decline voids the invoice (nothing was paid; the numbered document stays, void).
 */
export function stripeOffSessionCharger(stripe: Stripe, savedCardOf: SavedCardOf, options: StripeChargerOptions = { automaticTax: false }): OffSessionCharger {
  return {
    async charge({ accountId, attemptId, amount, idempotencyKey }) {
      const card = await savedCardOf(accountId);
      if (!card) return { ok: false, declined: true, reason: 'no_saved_card' };
      // Amounts are whole cents (the API refuses anything else); round up so the credit covers it.
      const cents = centsRoundedUp(amount);
      const metadata = {
        [AUTO_TOP_UP_METADATA.accountId]: accountId,
        [AUTO_TOP_UP_METADATA.attemptId]: attemptId,
        [AUTO_TOP_UP_METADATA.creditCents]: String(cents),
      };
      const key = (step: string) => ({ idempotencyKey: `${idempotencyKey}-${step}` });
      const draft = await stripe.invoices.create(
        {
          customer: card.customerId,
          currency: 'usd',
          collection_method: 'charge_automatically',
          // Tollgate pays it now, below; Stripe must not finalize or retry it on its own.
          auto_advance: false,
          pending_invoice_items_behavior: 'exclude',
          description: 'Tollgate prepaid credit, auto top-up (net of tax)',
          ...(options.automaticTax ? { automatic_tax: { enabled: true } } : {}),
          metadata,
        },
        key('invoice'),
      );
      await stripe.invoiceItems.create(
        {
          customer: card.customerId,
          invoice: draft.id!,
          amount: cents,
          currency: 'usd',
          description: 'Tollgate prepaid credit (auto top-up)',
          ...(options.automaticTax ? { tax_behavior: 'exclusive' as const } : {}),
          metadata,
        },
        key('item'),
      );
      const invoice = await stripe.invoices.finalizeInvoice(draft.id!, { auto_advance: false }, key('finalize'));
      const intent = await stripe.paymentIntents.create(
        {
          amount: invoice.amount_due,
          currency: 'usd',
          customer: card.customerId,
          payment_method: card.paymentMethodId,
          description: `Invoice ${invoice.number ?? invoice.id}`,
          metadata: { ...metadata, [AUTO_TOP_UP_METADATA.invoiceId]: invoice.id! },
        },
        key('intent'),
      );
      await stripe.invoices.attachPayment(invoice.id!, { payment_intent: intent.id }, key('attach'));
      let confirmed: Stripe.PaymentIntent;
      try {
        confirmed = await stripe.paymentIntents.confirm(intent.id, { payment_method: card.paymentMethodId, off_session: true }, key('confirm'));
      } catch (error) {
        if (!(error instanceof Stripe.errors.StripeCardError)) throw error;
        await voidQuietly(stripe, invoice.id!, key('void'));
        return { ok: false, declined: true, reason: error.code ?? error.decline_code ?? 'card_declined' };
      }
      if (confirmed.status === 'succeeded' || confirmed.status === 'processing') return { ok: true, paymentIntentId: confirmed.id, invoiceId: invoice.id! };
      // e.g. requires_action: off-session, nobody is there to authenticate.
      await voidQuietly(stripe, invoice.id!, key('void'));
      return { ok: false, declined: true, reason: confirmed.status === 'requires_action' ? 'authentication_required' : confirmed.status };
    },
  };
}

/** A declined attempt's invoice is voided; if Stripe does not answer, the open invoice stays (nothing was paid). */
async function voidQuietly(stripe: Stripe, invoiceId: string, options: { idempotencyKey: string }): Promise<void> {
  try {
    await stripe.invoices.voidInvoice(invoiceId, {}, options);
  } catch {
    // Not money: the attempt's failure is what counts. The invoice stays open and unpaid.
  }
}

interface AccountRow {
  threshold: bigint | null;
  amount: bigint | null;
  available: bigint;
  pendingAttemptId: string | null;
  suspended: boolean;
}

/**
 * The subscriber: per account, what auto top-up needs to know (configuration, available
 * balance, a pending attempt, suspension), and an attempt row when a settlement crosses below.
 */
export const autoTopUpSubscriber: SqlProjection<DomainEvent> = {
  name: 'auto-top-up',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const accountIds = [...new Set(events.map((e) => accountIdOfStream(e.streamId)).filter((id): id is string => id !== null))];
    if (accountIds.length === 0) return;
    const { rows } = await db.query<{
      account_id: string;
      threshold: string | null;
      amount: string | null;
      available: string;
      pending_attempt_id: string | null;
      suspended: boolean;
    }>(
      'SELECT account_id, threshold::text, amount::text, available::text, pending_attempt_id, suspended FROM auto_top_up_accounts WHERE account_id = ANY($1)',
      [accountIds],
    );
    const accounts = new Map<string, AccountRow>(
      rows.map((r) => [
        r.account_id,
        {
          threshold: r.threshold === null ? null : BigInt(r.threshold),
          amount: r.amount === null ? null : BigInt(r.amount),
          available: BigInt(r.available),
          pendingAttemptId: r.pending_attempt_id,
          suspended: r.suspended,
        },
      ]),
    );
    const attempts: { attemptId: string; accountId: string; eventId: string }[] = [];
    // One new attempt per account per batch; across batches, the decider refuses a second one
    // while the first is pending (the row is then skipped). Not persisted as pending: only the
    // log's AutoTopUpTriggered says an attempt is under way.
    const startedInBatch = new Set<string>();
    for (const recorded of events) {
      const accountId = accountIdOfStream(recorded.streamId);
      if (accountId === null) continue;
      const row = accounts.get(accountId) ?? { threshold: null, amount: null, available: 0n, pendingAttemptId: null, suspended: false };
      const change = balanceChange(recorded.streamId, recorded.event)!;
      row.available += change.purchased + change.promo - change.reserved;
      const event = recorded.event as AccountEvent;
      switch (event.type) {
        case 'AutoTopUpConfigured':
          row.threshold = event.data.autoTopUp?.threshold ?? null;
          row.amount = event.data.autoTopUp?.amount ?? null;
          break;
        case 'AutoTopUpTriggered':
          row.pendingAttemptId = event.data.attemptId;
          break;
        case 'AutoTopUpFailed':
          if (row.pendingAttemptId === event.data.attemptId) row.pendingAttemptId = null;
          break;
        case 'TopUpCompleted':
          if (event.data.autoTopUpAttemptId !== null && row.pendingAttemptId === event.data.autoTopUpAttemptId) row.pendingAttemptId = null;
          break;
        case 'AccountSuspended':
          row.suspended = true;
          break;
        case 'AccountReinstated':
          row.suspended = false;
          break;
        case 'ReservationSettled':
          // A suspended account waits for a top-up rather than being charged again.
          if (row.threshold !== null && row.available < row.threshold && row.pendingAttemptId === null && !row.suspended && !startedInBatch.has(accountId)) {
            attempts.push({ attemptId: attemptIdFor(recorded.id), accountId, eventId: recorded.id });
            startedInBatch.add(accountId);
          }
          break;
        default:
          break;
      }
      accounts.set(accountId, row);
    }
    const all = [...accounts.entries()];
    await db.query(
      `INSERT INTO auto_top_up_accounts (account_id, threshold, amount, available, pending_attempt_id, suspended)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::boolean[])
       ON CONFLICT (account_id) DO UPDATE SET threshold = excluded.threshold, amount = excluded.amount, available = excluded.available,
         pending_attempt_id = excluded.pending_attempt_id, suspended = excluded.suspended`,
      [
        all.map(([id]) => id),
        all.map(([, r]) => r.threshold?.toString() ?? null),
        all.map(([, r]) => r.amount?.toString() ?? null),
        all.map(([, r]) => r.available.toString()),
        all.map(([, r]) => r.pendingAttemptId),
        all.map(([, r]) => r.suspended),
      ],
    );
    if (attempts.length > 0) {
      await db.query(
        `INSERT INTO auto_top_up_attempts (attempt_id, account_id, trigger_event_id, status)
         SELECT a, b, c, 'pending' FROM unnest($1::text[], $2::text[], $3::text[]) AS t(a, b, c)
         ON CONFLICT (attempt_id) DO NOTHING`,
        [attempts.map((a) => a.attemptId), attempts.map((a) => a.accountId), attempts.map((a) => a.eventId)],
      );
    }
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE auto_top_up_accounts');
  },
};

export interface AutoTopUpOptions {
  readonly pollIntervalMs?: number;
  /** first retry delay after a charge that got no answer; doubles per try */
  readonly retryBaseMs?: number;
}

/** The subscriber plus the worker that records triggers and charges cards. Stoppable. */
export class AutoTopUpProcess {
  private subscriber: RunningProjection | undefined;
  private loop: PollLoop | undefined;
  private stopping: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore<DomainEvent>,
    private readonly ledger: Ledger,
    private readonly charger: OffSessionCharger,
    private readonly log: Logger,
    private readonly options: AutoTopUpOptions = {},
  ) {}

  start(): void {
    this.subscriber = runProjection(this.pool, this.store, autoTopUpSubscriber, {
      onError: (error) =>
        this.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'auto top-up subscriber failed; retrying'),
    });
    this.loop = startPollLoop(() => this.runOnce(), {
      intervalMs: this.options.pollIntervalMs ?? 1_000,
      onError: (error) => this.log.error({ err: { name: (error as Error).name } }, 'auto top-up run failed'),
    });
  }

  /** Resolves once the subscriber has seen the log up to `position`. */
  reached(...args: Parameters<RunningProjection['reached']>): Promise<void> {
    if (!this.subscriber) throw new Error('auto top-up process not started');
    return this.subscriber.reached(...args);
  }

  /** Idempotent: the work in hand finishes, then the subscriber lets go of its lock. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.stopped = true;
      await this.loop?.stop();
      await this.subscriber?.stop();
    })();
    return this.stopping;
  }

  /** Takes every due attempt once; returns how many it moved on. */
  async runOnce(limit = 100): Promise<number> {
    const { rows } = await this.pool.query<{ attempt_id: string; account_id: string; status: 'pending' | 'triggered'; tries: number }>(
      `SELECT attempt_id, account_id, status, tries FROM auto_top_up_attempts
        WHERE status IN ('pending', 'triggered') AND next_try_at <= now() ORDER BY created_at LIMIT $1`,
      [limit],
    );
    let moved = 0;
    for (const row of rows) {
      if (this.stopped) break;
      try {
        await this.advance(row.attempt_id, row.account_id, row.status);
        moved += 1;
      } catch (error) {
        // No answer from the payment provider (or the store): try again later with the same key.
        const delay = (this.options.retryBaseMs ?? 5_000) * 2 ** Math.min(row.tries, 10);
        await this.pool.query(
          `UPDATE auto_top_up_attempts SET tries = tries + 1, next_try_at = now() + $2 * interval '1 millisecond', updated_at = now() WHERE attempt_id = $1`,
          [row.attempt_id, delay],
        );
        this.log.warn({ attemptId: row.attempt_id, err: { name: (error as Error).name } }, 'auto top-up attempt will be retried');
      }
    }
    return moved;
  }

  private async advance(attemptId: string, accountId: string, status: 'pending' | 'triggered'): Promise<void> {
    const stream = accountStreamId(accountId);
    if (status === 'pending') {
      const triggered = await this.ledger.accounts.handle(stream, {
        type: 'RecordAutoTopUpTriggered',
        data: { attemptId },
        metadata: systemMetadata('auto-top-up', attemptId),
      });
      // Recorded before a crash: this attempt is the pending one, so carry on to the charge.
      const resumed = !triggered.ok && triggered.error.error === 'auto_top_up_already_pending' && triggered.error.attemptId === attemptId;
      if (!triggered.ok && !resumed) {
        await this.setStatus(attemptId, 'skipped', { reason: triggered.error.error });
        return;
      }
      await this.setStatus(attemptId, 'triggered', {});
    }
    const { state } = await this.ledger.accounts.load(stream);
    const pending = state.pendingAutoTopUp;
    if (pending === null || pending.attemptId !== attemptId) {
      // Ended meanwhile (completed by the webhook, or failed): nothing to charge.
      await this.setStatus(attemptId, 'skipped', { reason: 'attempt_no_longer_pending' });
      return;
    }
    const outcome = await this.charger.charge({ accountId, attemptId, amount: pending.amount, idempotencyKey: idempotencyKeyFor(attemptId) });
    if (outcome.ok) {
      await this.setStatus(attemptId, 'charged', { amount: pending.amount, paymentIntentId: outcome.paymentIntentId });
      this.log.info({ attemptId, accountId }, 'auto top-up charged; waiting for the payment webhook');
      return;
    }
    const metadata = systemMetadata('auto-top-up', attemptId);
    const failed = await this.ledger.accounts.handle(stream, { type: 'RecordAutoTopUpFailed', data: { attemptId, reason: outcome.reason }, metadata });
    if (!failed.ok && failed.error.error !== 'auto_top_up_not_pending') throw new Error(`RecordAutoTopUpFailed refused: ${failed.error.error}`);
    const suspended = await this.ledger.accounts.handle(stream, { type: 'SuspendAccount', data: { reason: 'auto_top_up_failed' }, metadata });
    if (!suspended.ok && suspended.error.error !== 'account_already_suspended' && suspended.error.error !== 'account_closed') {
      throw new Error(`SuspendAccount refused: ${suspended.error.error}`);
    }
    await this.setStatus(attemptId, 'failed', { amount: pending.amount, reason: outcome.reason });
    this.log.warn({ attemptId, accountId, reason: outcome.reason }, 'auto top-up declined; account suspended');
  }

  private async setStatus(attemptId: string, status: string, fields: { amount?: bigint; paymentIntentId?: string; reason?: string }): Promise<void> {
    await this.pool.query(
      `UPDATE auto_top_up_attempts SET status = $2, amount = COALESCE($3::bigint, amount), payment_intent_id = COALESCE($4, payment_intent_id),
         reason = COALESCE($5, reason), updated_at = now() WHERE attempt_id = $1`,
      [attemptId, status, fields.amount?.toString() ?? null, fields.paymentIntentId ?? null, fields.reason ?? null],
    );
  }
}

/** The account's most recent attempts, newest first (for the customer API). */
export async function recentAutoTopUpAttempts(
  pool: Pool,
  accountId: string,
  limit = 10,
): Promise<
  { attemptId: string; status: string; amount: bigint | null; reason: string | null; paymentIntentId: string | null; createdAt: Date; updatedAt: Date }[]
> {
  const { rows } = await pool.query<{
    attempt_id: string;
    status: string;
    amount: string | null;
    reason: string | null;
    payment_intent_id: string | null;
    created_at: Date;
    updated_at: Date;
  }>(
    `SELECT attempt_id, status, amount::text, reason, payment_intent_id, created_at, updated_at FROM auto_top_up_attempts
      WHERE account_id = $1 AND status <> 'skipped' ORDER BY created_at DESC LIMIT $2`,
    [accountId, limit],
  );
  return rows.map((r) => ({
    attemptId: r.attempt_id,
    status: r.status,
    amount: r.amount === null ? null : BigInt(r.amount),
    reason: r.reason,
    paymentIntentId: r.payment_intent_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  }));
}
