import { randomBytes } from 'node:crypto';
import { accountStreamId, claimableUntilOf, claimPeriodOver, refundableOf, type AccountError } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { CommandMetadata } from '../../domain/events/metadata';
import type { MicroUsd } from '../../domain/money';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import type { Ledger } from '../ledger';
import type { EventStore } from '../ports/event-store';
import { centsOf, microUsdOfCents, wholeCentsOf } from './amounts';

export interface RefundPart {
  readonly paymentIntentId: string;
  readonly amount: MicroUsd;
  readonly stripeRefundId: string | null;
  /**
   * recorded: Stripe answered succeeded and the ledger has RefundIssued; pending: Stripe has not
   * confirmed yet, the refund.updated webhook records it; failed: Stripe refused or errored;
   * not_recorded: Stripe refunded but the ledger refused (reported to the operator).
   */
  readonly status: 'recorded' | 'pending' | 'failed' | 'not_recorded';
}

export interface RefundOutcome {
  readonly refundId: string;
  readonly requested: MicroUsd;
  readonly parts: readonly RefundPart[];
}

export type RefundRefusal = AccountError | { readonly error: 'sub_cent_amount'; readonly amount: MicroUsd };

/** Card payments are Stripe PaymentIntents; manual top-ups ("manual:...") cannot go back to a card. */
const isPaymentIntent = (reference: string) => reference.startsWith('pi_');

/**
 * What each of the account's card payments can still give back, newest first: its top-up less
 * the refunds recorded against it; nothing for a payment that was ever disputed. A refund
 * recorded against several payments (not one made here) counts in full against each, so nothing
 * is ever refunded twice.
 */
export async function refundablePayments(store: EventStore<DomainEvent>, accountId: string): Promise<{ paymentIntentId: string; remaining: MicroUsd }[]> {
  const { events } = await store.readStream(accountStreamId(accountId));
  const paid = new Map<string, MicroUsd>();
  for (const { event } of events) {
    if (event.type === 'TopUpCompleted' && isPaymentIntent(event.data.paymentReference)) paid.set(event.data.paymentReference, event.data.amount);
    // A disputed charge is not refunded on the card (Stripe refuses it); a lost one was taken back already.
    if (event.type === 'DisputeOpened') paid.set(event.data.paymentReference, 0n);
    if (event.type === 'RefundShortfall') {
      const left = paid.get(event.data.paymentReference);
      if (left !== undefined) paid.set(event.data.paymentReference, left - event.data.amount > 0n ? left - event.data.amount : 0n);
    }
    if (event.type === 'RefundIssued') {
      for (const reference of event.data.paymentReferences) {
        const left = paid.get(reference);
        if (left !== undefined) paid.set(reference, left - event.data.amount > 0n ? left - event.data.amount : 0n);
      }
    }
  }
  return [...paid.entries()].reverse().map(([paymentIntentId, remaining]) => ({ paymentIntentId, remaining }));
}

/**
 * Refunds purchased credit less usage (refundableOf; promo never), at most what the card
 * payments can give back, in whole cents. The refund is split over the payments newest first;
 * each part is one Stripe refund with an idempotency key from (refund id, payment intent), and
 * is recorded on the ledger (RefundIssued, one per part, refund id `<refundId>:<pi>`) when Stripe
 * answers succeeded, or later by the refund.updated webhook. `amount` null means everything refundable.
 */
export async function refundCredit(
  deps: { readonly ledger: Ledger; readonly stripe: StripeClient },
  input: {
    readonly accountId: string;
    readonly amount: MicroUsd | null;
    readonly metadata: CommandMetadata;
    readonly refundId?: string;
    /** a closed account's credit may be paid back only where the caller says so (termination, an operator within the claim period) */
    readonly closedAccount?: boolean;
    /** with `amount` null: refund at most this much (a claim refunds what was claimed, not more) */
    readonly cap?: MicroUsd;
  },
): Promise<{ ok: true; value: RefundOutcome } | { ok: false; error: RefundRefusal }> {
  const stream = accountStreamId(input.accountId);
  const { state } = await deps.ledger.accounts.load(stream);
  if (state.status === 'not_opened') return { ok: false, error: { error: 'account_not_open' } };
  if (state.status === 'closed' && input.closedAccount !== true) return { ok: false, error: { error: 'account_closed' } };
  // Checked before Stripe is asked: the ledger would refuse the refund after the money had left.
  if (claimPeriodOver(state, input.metadata.now)) return { ok: false, error: { error: 'claim_period_over', claimableUntil: claimableUntilOf(state)! } };
  if (input.amount !== null && centsOf(input.amount) === null) return { ok: false, error: { error: 'sub_cent_amount', amount: input.amount } };

  const payments = (await refundablePayments(deps.ledger.store, input.accountId)).map((p) => ({ ...p, remaining: wholeCentsOf(p.remaining) }));
  const byCard = payments.reduce((sum, p) => sum + p.remaining, 0n);
  const ledgerRefundable = refundableOf(state);
  const uncapped = ledgerRefundable < byCard ? ledgerRefundable : byCard;
  const refundable = wholeCentsOf(input.cap !== undefined && input.cap < uncapped ? input.cap : uncapped);
  const requested = input.amount ?? refundable;
  if (requested > refundable) return { ok: false, error: { error: 'exceeds_refundable_credit', refundable, requested } };

  const refundId = input.refundId ?? `rf_${randomBytes(10).toString('hex')}`;
  const parts: RefundPart[] = [];
  let left = requested;
  for (const payment of payments) {
    if (left === 0n) break;
    const amount = payment.remaining < left ? payment.remaining : left;
    if (amount === 0n) continue;
    const part = await refundPart(deps, { accountId: input.accountId, refundId, paymentIntentId: payment.paymentIntentId, amount, metadata: input.metadata });
    parts.push(part);
    // Stop at the first part that did not go through: the rest is not asked for.
    if (part.status === 'failed' || part.status === 'not_recorded') break;
    left -= amount;
  }
  return { ok: true, value: { refundId, requested, parts } };
}

async function refundPart(
  deps: { readonly ledger: Ledger; readonly stripe: StripeClient },
  part: { accountId: string; refundId: string; paymentIntentId: string; amount: MicroUsd; metadata: CommandMetadata },
): Promise<RefundPart> {
  const partId = `${part.refundId}:${part.paymentIntentId}`;
  const base = { paymentIntentId: part.paymentIntentId, amount: part.amount };
  let refund;
  try {
    refund = await deps.stripe.refunds.create(
      {
        payment_intent: part.paymentIntentId,
        amount: centsOf(part.amount)!,
        reason: 'requested_by_customer',
        metadata: { account_id: part.accountId, tollgate_refund_id: partId },
      },
      { idempotencyKey: `tollgate-refund-${part.refundId}-${part.paymentIntentId}` },
    );
  } catch {
    return { ...base, stripeRefundId: null, status: 'failed' };
  }
  if (refund.status === 'failed' || refund.status === 'canceled') return { ...base, stripeRefundId: refund.id, status: 'failed' };
  if (refund.status !== 'succeeded') return { ...base, stripeRefundId: refund.id, status: 'pending' };
  const recorded = await deps.ledger.accounts.handle(accountStreamId(part.accountId), {
    type: 'IssueRefund',
    data: { refundId: partId, amount: microUsdOfCents(refund.amount), paymentReferences: [part.paymentIntentId] },
    metadata: part.metadata,
  });
  return { ...base, stripeRefundId: refund.id, status: recorded.ok ? 'recorded' : 'not_recorded' };
}
