import { accept, reject, type Decision } from '../decider/decision';
import { eventMetadataFrom, type EventMetadata } from '../events/metadata';
import { requestCost, type MicroUsd } from '../money/money';
import { addMs, isBefore } from '../time/instant';
import type * as C from './commands';
import type { AccountCommand } from './commands';
import type { AccountError } from './errors';
import type { AccountEvent, AccountEventOfType } from './events';
import { DEFAULT_ACCOUNT_POLICY, type AccountPolicy } from './policy';
import {
  availableOf,
  balanceOf,
  claimableUntilOf,
  claimPeriodOver,
  keySpendInWindow,
  maximumBalanceOf,
  spendWindowResetsAt,
  openDisputesOf,
  outstandingClaimOf,
  refundableOf,
  unclaimedOf,
  spendablePromoGrants,
  type AccountState,
} from './state';
import type { SuspensionReason } from './events';

export type AccountDecision = Decision<AccountEvent, AccountError>;

function event<T extends AccountEvent['type']>(type: T, data: AccountEventOfType<T>['data'], metadata: EventMetadata): AccountEventOfType<T> {
  return { type, data, metadata } as AccountEventOfType<T>;
}

/**
 * Decides what a command changes on one account stream, or which rule it breaks. Pure: time
 * is `command.metadata.now`, limits come from `policy`.
 */
export function decideAccount(command: AccountCommand, state: AccountState, policy: AccountPolicy = DEFAULT_ACCOUNT_POLICY): AccountDecision {
  if (command.type === 'OpenAccount') return openAccount(command, state);
  if (state.status === 'not_opened') return reject({ error: 'account_not_open' });
  switch (command.type) {
    case 'CompleteTopUp':
      return completeTopUp(command, state, policy);
    case 'GrantPromoCredit':
      return grantPromoCredit(command, state, policy);
    case 'ExpirePromoCredit':
      return expirePromoCredit(command, state);
    case 'RevokePromoCredit':
      return revokePromoCredit(command, state);
    case 'SetMaximumBalance':
      return setMaximumBalance(command, state, policy);
    case 'PlaceReservation':
      return placeReservation(command, state, policy);
    case 'SettleReservation':
      return settleReservation(command, state);
    case 'ReleaseReservation':
      return releaseReservation(command, state);
    case 'ExpireReservation':
      return expireReservation(command, state);
    case 'IssueRefund':
      return issueRefund(command, state);
    case 'RecordProviderRefund':
      return recordProviderRefund(command, state);
    case 'RecordPayout':
      return recordPayout(command, state);
    case 'ClaimRefund':
      return claimRefund(command, state);
    case 'ForfeitUnclaimedCredit':
      return forfeitUnclaimedCredit(command, state);
    case 'ConfigureAutoTopUp':
      return configureAutoTopUp(command, state, policy);
    case 'RecordAutoTopUpTriggered':
      return recordAutoTopUpTriggered(command, state, policy);
    case 'RecordAutoTopUpFailed':
      return recordAutoTopUpFailed(command, state);
    case 'SuspendAccount':
      return suspendAccount(command, state);
    case 'ReinstateAccount':
      return reinstateAccount(command, state);
    case 'OpenDispute':
      return openDispute(command, state);
    case 'CloseDispute':
      return closeDispute(command, state);
    case 'CloseAccount':
      return closeAccount(command, state);
    case 'TerminateAccount':
      return terminateAccount(command, state);
    case 'ErasePersonalData':
      return erasePersonalData(command, state);
    case 'CorrectPersonalData':
      return correctPersonalData(command, state);
    default:
      return command satisfies never;
  }
}

function openAccount(command: C.OpenAccount, state: AccountState): AccountDecision {
  if (state.status !== 'not_opened') return reject({ error: 'account_already_opened' });
  return accept(event('AccountOpened', { ...command.data }, eventMetadataFrom(command.metadata)));
}

/** The balance limit counts purchased and promo credit alike. */
function checkBalanceLimit(state: AccountState, amount: MicroUsd, policy: AccountPolicy): AccountError | null {
  const balance = balanceOf(state);
  const maximum = maximumBalanceOf(state, policy);
  if (balance + amount > maximum) return { error: 'balance_limit_exceeded', balance, amount, maximum };
  return null;
}

const MONEY_REASONS: readonly SuspensionReason[] = ['negative_balance', 'auto_top_up_failed'];

function completeTopUp(command: C.CompleteTopUp, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { paymentReference, amount } = command.data;
  // Payment webhooks are redelivered: the same payment must never credit twice, whatever
  // has happened to the account since, so this check comes before every other rule.
  if (state.appliedPaymentReferences.has(paymentReference)) return accept();
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  if (amount < policy.minimumTopUp) return reject({ error: 'top_up_below_minimum', amount, minimum: policy.minimumTopUp });
  const overLimit = checkBalanceLimit(state, amount, policy);
  if (overLimit) return reject(overLimit);

  const metadata = eventMetadataFrom(command.metadata);
  const events: AccountEvent[] = [event('TopUpCompleted', { paymentReference, amount, autoTopUpAttemptId: command.data.autoTopUpAttemptId ?? null }, metadata)];
  // The top-up pays the debt first (purchased is simply summed); once the debt is gone, a
  // suspension that was only about money ends by itself.
  // Only the money reasons are lifted: a dispute or a breach keeps the account suspended.
  const moneyReasons = MONEY_REASONS.filter((r) => state.suspensionReasons.has(r));
  if (state.status === 'suspended' && moneyReasons.length > 0 && state.purchased + amount >= 0n) {
    events.push(event('AccountReinstated', { reason: 'balance_restored', lifted: moneyReasons }, metadata));
  }
  return accept(...events);
}

function grantPromoCredit(command: C.GrantPromoCredit, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { grantId, amount, expiresAt, reason } = command.data;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  if (state.promoGrants.has(grantId)) return reject({ error: 'promo_grant_already_exists', grantId });
  if (!isBefore(command.metadata.now, expiresAt)) return reject({ error: 'promo_expiry_not_in_future', expiresAt, now: command.metadata.now });
  const overLimit = checkBalanceLimit(state, amount, policy);
  if (overLimit) return reject(overLimit);
  return accept(event('PromoCreditGranted', { grantId, amount, expiresAt, reason }, eventMetadataFrom(command.metadata)));
}

function expirePromoCredit(command: C.ExpirePromoCredit, state: AccountState): AccountDecision {
  const { grantId } = command.data;
  const grant = state.promoGrants.get(grantId);
  if (!grant) return reject({ error: 'promo_grant_not_found', grantId });
  if (grant.expired) return reject({ error: 'promo_grant_already_expired', grantId });
  if (isBefore(command.metadata.now, grant.expiresAt)) return reject({ error: 'promo_grant_not_yet_expired', grantId, expiresAt: grant.expiresAt });
  // Only the unspent remainder lapses (possibly 0: the event still closes the grant).
  return accept(event('PromoCreditExpired', { grantId, amount: grant.remaining }, eventMetadataFrom(command.metadata)));
}

function revokePromoCredit(command: C.RevokePromoCredit, state: AccountState): AccountDecision {
  const { grantId, reason } = command.data;
  const now = command.metadata.now;
  const grant = state.promoGrants.get(grantId);
  if (!grant) return reject({ error: 'promo_grant_not_found', grantId });
  // An expired grant has nothing left to take back: its remainder already lapsed (or is about to).
  if (grant.expired || !isBefore(now, grant.expiresAt)) return reject({ error: 'promo_grant_already_expired', grantId });
  if (reason.trim() === '') return reject({ error: 'reason_required' });
  const amount = command.data.amount ?? grant.remaining;
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  // Only the unspent part leaves; what was spent stays spent.
  if (amount > grant.remaining) return reject({ error: 'exceeds_unspent_promo', grantId, unspent: grant.remaining, requested: amount });
  // Credit held by requests in flight is not taken from under them: they could not settle.
  const available = availableOf(state, now);
  if (amount > available) return reject({ error: 'promo_held_by_reservations', available: available > 0n ? available : 0n, requested: amount });
  return accept(event('PromoCreditRevoked', { grantId, amount, reason }, eventMetadataFrom(command.metadata)));
}

function setMaximumBalance(command: C.SetMaximumBalance, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { maximum, reason } = command.data;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (reason.trim() === '') return reject({ error: 'reason_required' });
  // A ceiling is only raised for one account; lowering one below the default is not a service the terms offer.
  if (maximum !== null && maximum < policy.maximumBalance) return reject({ error: 'maximum_below_default', maximum, default: policy.maximumBalance });
  return accept(event('MaximumBalanceSet', { maximum, reason }, eventMetadataFrom(command.metadata)));
}

function placeReservation(command: C.PlaceReservation, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { requestId, amount } = command.data;
  const now = command.metadata.now;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (state.status === 'suspended') return reject({ error: 'account_suspended', reason: state.suspensionReason ?? 'customer_request' });
  if (amount < 0n) return reject({ error: 'amount_must_not_be_negative', amount });
  if (state.openReservations.has(requestId)) return reject({ error: 'reservation_already_exists', requestId });
  if (state.purchased < 0n) return reject({ error: 'negative_balance', balance: state.purchased });
  // Promo past its expiry no longer counts, even before the expiry process records it.
  const available = availableOf(state, now);
  if (available < amount) return reject({ error: 'exceeds_available_balance', available, needed: amount });
  const limit = command.data.keySpendLimit;
  if (limit !== undefined) {
    // Decided here, on the account's stream, like the balance: every reservation of the key is
    // decided in order against the same state, so concurrent requests cannot pass the limit.
    const { keyId } = command.data;
    const { spent, held } = keySpendInWindow(state, keyId, limit.period, now);
    if (spent + held + amount > limit.amount) {
      return reject({
        error: 'key_spend_limit_reached',
        keyId,
        period: limit.period,
        limit: limit.amount,
        spent,
        held,
        needed: amount,
        resetsAt: spendWindowResetsAt(limit.period, now),
      });
    }
  }
  return accept(
    event(
      'ReservationPlaced',
      {
        requestId,
        keyId: command.data.keyId,
        model: command.data.model,
        operation: command.data.operation,
        amount,
        priceVersion: command.data.priceVersion,
        expiresAt: addMs(now, policy.reservationTtlMs),
        instanceId: command.data.instanceId ?? null,
      },
      eventMetadataFrom(command.metadata),
    ),
  );
}

function settleReservation(command: C.SettleReservation, state: AccountState): AccountDecision {
  const { requestId, usage, price, outcome } = command.data;
  const reservation = state.openReservations.get(requestId);
  if (!reservation) return reject({ error: 'reservation_not_found', requestId });
  // A price change never reprices an admitted request.
  if (price.version !== reservation.priceVersion) {
    return reject({ error: 'price_version_mismatch', requestId, reservedUnder: reservation.priceVersion, given: price.version });
  }
  if (usage.inputTokens < 0n || usage.outputTokens < 0n || (usage.audioMilliseconds ?? 0n) < 0n || (usage.inputCharacters ?? 0n) < 0n)
    return reject({ error: 'token_count_negative' });

  const actualCost = requestCost(usage, price);
  // Promo first, soonest expiry first; whatever is left comes from purchased credit, which
  // may go below zero (the shortfall of an under-estimate).
  let left = actualCost;
  const fromPromo: { grantId: string; amount: MicroUsd }[] = [];
  for (const grant of spendablePromoGrants(state, command.metadata.now)) {
    if (left === 0n) break;
    const take = grant.remaining < left ? grant.remaining : left;
    fromPromo.push({ grantId: grant.grantId, amount: take });
    left -= take;
  }
  return accept(
    event(
      'ReservationSettled',
      {
        requestId,
        keyId: reservation.keyId,
        model: reservation.model,
        operation: reservation.operation,
        reservedAmount: reservation.amount,
        actualCost,
        fromPromo,
        fromPurchased: left,
        usage: usageOf(usage),
        priceVersion: reservation.priceVersion,
        outcome,
      },
      eventMetadataFrom(command.metadata),
    ),
  );
}

function releaseReservation(command: C.ReleaseReservation, state: AccountState): AccountDecision {
  const { requestId, reason } = command.data;
  const reservation = state.openReservations.get(requestId);
  if (!reservation) return reject({ error: 'reservation_not_found', requestId });
  return accept(event('ReservationReleased', { requestId, amount: reservation.amount, reason }, eventMetadataFrom(command.metadata)));
}

function expireReservation(command: C.ExpireReservation, state: AccountState): AccountDecision {
  const { requestId } = command.data;
  const reservation = state.openReservations.get(requestId);
  if (!reservation) return reject({ error: 'reservation_not_found', requestId });
  const { lapsedInstanceId } = command.data;
  if (lapsedInstanceId !== undefined) {
    // A lapsed lease proves only that its own instance is gone, never another's.
    if (reservation.instanceId !== lapsedInstanceId) {
      return reject({ error: 'reservation_instance_not_lapsed', requestId, instanceId: reservation.instanceId, lapsedInstanceId });
    }
  } else if (isBefore(command.metadata.now, reservation.expiresAt)) {
    return reject({ error: 'reservation_not_yet_expired', requestId, expiresAt: reservation.expiresAt });
  }
  return accept(event('ReservationExpired', { requestId, amount: reservation.amount }, eventMetadataFrom(command.metadata)));
}

function issueRefund(command: C.IssueRefund, state: AccountState): AccountDecision {
  const { refundId, amount, paymentReferences } = command.data;
  if (state.appliedRefundIds.has(refundId)) return accept();
  const periodOver = checkClaimPeriod(state, command.metadata.now, amount);
  if (periodOver) return reject(periodOver);
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  if (paymentReferences.length === 0) return reject({ error: 'refund_without_payment_reference' });
  const unknown = paymentReferences.find((ref) => !state.appliedPaymentReferences.has(ref));
  if (unknown !== undefined) return reject({ error: 'unknown_payment_reference', paymentReference: unknown });
  const refundable = refundableOf(state);
  if (amount > refundable) return reject({ error: 'exceeds_refundable_credit', refundable, requested: amount });
  return accept(event('RefundIssued', { refundId, amount, paymentReferences: [...paymentReferences] }, eventMetadataFrom(command.metadata)));
}

/**
 * The refundable part is a RefundIssued like any other; what Stripe paid back beyond it (credit
 * already spent, held by requests in flight or by a dispute) is a RefundShortfall that takes the
 * purchased credit below zero. Refusing it would leave the ledger owing the customer money they
 * already have back; the debt instead blocks new requests until a top-up pays it.
 */
function recordProviderRefund(command: C.RecordProviderRefund, state: AccountState): AccountDecision {
  const { refundId, paymentReference, amount } = command.data;
  if (state.appliedRefundIds.has(refundId)) return accept();
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  if (!state.appliedPaymentReferences.has(paymentReference)) return reject({ error: 'unknown_payment_reference', paymentReference });
  const refundable = refundableOf(state);
  const covered = amount < refundable ? amount : refundable;
  const metadata = eventMetadataFrom(command.metadata);
  const events: AccountEvent[] = [];
  if (covered > 0n) events.push(event('RefundIssued', { refundId, amount: covered, paymentReferences: [paymentReference] }, metadata));
  if (amount > covered) events.push(event('RefundShortfall', { refundId, amount: amount - covered, paymentReference }, metadata));
  return accept(...events);
}

/**
 * After closure, credit is paid back (card refund or payout) within the claim period; after it,
 * only what was claimed in time and is still unpaid.
 */
function checkClaimPeriod(state: AccountState, now: string, amount: MicroUsd): AccountError | null {
  if (!claimPeriodOver(state, now)) return null;
  if (amount > 0n && amount <= outstandingClaimOf(state)) return null;
  return { error: 'claim_period_over', claimableUntil: claimableUntilOf(state)! };
}

/**
 * Card refunds, payouts and refunds after closure all draw on the one refundable amount
 * (purchased less open reservations and disputed amounts), so no credit is paid back twice.
 */
function recordPayout(command: C.RecordPayout, state: AccountState): AccountDecision {
  const { payoutId, method, reference, amount, reason } = command.data;
  if (state.appliedRefundIds.has(payoutId)) return accept();
  const periodOver = checkClaimPeriod(state, command.metadata.now, amount);
  if (periodOver) return reject(periodOver);
  if (reason.trim() === '') return reject({ error: 'reason_required' });
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  const refundable = refundableOf(state);
  if (amount > refundable) return reject({ error: 'exceeds_refundable_credit', refundable, requested: amount });
  return accept(event('PayoutRecorded', { payoutId, method, reference, amount, reason }, eventMetadataFrom(command.metadata)));
}

/**
 * Within 360 days of closure the customer claims what remains: purchased credit less any debt,
 * open reservations and disputed amounts, less what an earlier claim already asked for. The claim
 * is paid by card refunds and payouts, which draw on the same refundable amount, so a claim, a
 * card refund and a payout never pay back the same credit twice.
 */
function claimRefund(command: C.ClaimRefund, state: AccountState): AccountDecision {
  const { claimId } = command.data;
  if (state.claimIds.has(claimId)) return accept();
  if (state.status !== 'closed') return reject({ error: 'account_not_closed' });
  const periodOver = claimPeriodOver(state, command.metadata.now);
  if (periodOver) return reject({ error: 'claim_period_over', claimableUntil: claimableUntilOf(state)! });
  const unclaimed = unclaimedOf(state);
  if (command.data.amount === null && unclaimed === 0n) return reject({ error: 'nothing_to_claim' });
  const amount = command.data.amount ?? unclaimed;
  if (amount <= 0n) return reject({ error: 'amount_must_be_positive', amount });
  if (amount > unclaimed) return reject({ error: 'exceeds_refundable_credit', refundable: unclaimed, requested: amount });
  return accept(event('RefundClaimed', { claimId, amount }, eventMetadataFrom(command.metadata)));
}

/**
 * Once the claim period is over, the refundable credit nobody claimed is no longer owed: it leaves
 * the balance and the journal takes it to income. What was claimed in time stays owed; a disputed
 * amount stays held (if the dispute is won later, a later forfeiture takes it); a debt stays a debt.
 */
function forfeitUnclaimedCredit(command: C.ForfeitUnclaimedCredit, state: AccountState): AccountDecision {
  if (state.status !== 'closed') return reject({ error: 'account_not_closed' });
  if (!claimPeriodOver(state, command.metadata.now)) return reject({ error: 'claim_period_not_over', claimableUntil: claimableUntilOf(state)! });
  const amount = unclaimedOf(state);
  if (amount === 0n) return reject({ error: 'nothing_to_forfeit' });
  return accept(event('PurchasedCreditForfeited', { amount, reason: 'claim_period_over' }, eventMetadataFrom(command.metadata)));
}

function configureAutoTopUp(command: C.ConfigureAutoTopUp, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { autoTopUp } = command.data;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (autoTopUp !== null) {
    if (autoTopUp.threshold < 0n) return reject({ error: 'amount_must_not_be_negative', amount: autoTopUp.threshold });
    if (autoTopUp.amount < policy.minimumTopUp) return reject({ error: 'top_up_below_minimum', amount: autoTopUp.amount, minimum: policy.minimumTopUp });
    // Triggered just below the threshold, the top-up must still fit under the maximum.
    const maximum = maximumBalanceOf(state, policy);
    if (autoTopUp.threshold + autoTopUp.amount > maximum) {
      return reject({ error: 'balance_limit_exceeded', balance: autoTopUp.threshold, amount: autoTopUp.amount, maximum });
    }
  }
  return accept(event('AutoTopUpConfigured', { autoTopUp: autoTopUp === null ? null : { ...autoTopUp } }, eventMetadataFrom(command.metadata)));
}

function recordAutoTopUpTriggered(command: C.RecordAutoTopUpTriggered, state: AccountState, policy: AccountPolicy): AccountDecision {
  const { attemptId } = command.data;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (state.autoTopUp === null) return reject({ error: 'auto_top_up_not_configured' });
  // A suspended account is not charged again (a dispute, a breach or a declined card is settled first).
  if (state.status === 'suspended') return reject({ error: 'account_suspended', reason: state.suspensionReason ?? 'customer_request' });
  // One payment attempt at a time, so a slow payment provider never causes a double charge.
  if (state.pendingAutoTopUp !== null) return reject({ error: 'auto_top_up_already_pending', attemptId: state.pendingAutoTopUp.attemptId });
  const available = availableOf(state, command.metadata.now);
  if (available >= state.autoTopUp.threshold) {
    return reject({ error: 'available_above_auto_top_up_threshold', available, threshold: state.autoTopUp.threshold });
  }
  // A settlement that left the purchased credit negative: the debt is charged at once with the
  // configured amount, in one charge (the top-up pays the debt first, then the amount is left).
  const debt = state.purchased < 0n ? -state.purchased : 0n;
  const amount = state.autoTopUp.amount + debt;
  const overLimit = checkBalanceLimit(state, amount, policy);
  if (overLimit) return reject(overLimit);
  return accept(event('AutoTopUpTriggered', { attemptId, amount, debt }, eventMetadataFrom(command.metadata)));
}

function recordAutoTopUpFailed(command: C.RecordAutoTopUpFailed, state: AccountState): AccountDecision {
  const { attemptId, reason } = command.data;
  if (state.pendingAutoTopUp === null || state.pendingAutoTopUp.attemptId !== attemptId) {
    return reject({ error: 'auto_top_up_not_pending', attemptId });
  }
  return accept(event('AutoTopUpFailed', { attemptId, reason }, eventMetadataFrom(command.metadata)));
}

/** A reason adds to the set; the same reason twice is refused (the second says nothing new). */
function suspendAccount(command: C.SuspendAccount, state: AccountState): AccountDecision {
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (state.suspensionReasons.has(command.data.reason)) return reject({ error: 'account_already_suspended', reason: command.data.reason });
  return accept(event('AccountSuspended', { reason: command.data.reason }, eventMetadataFrom(command.metadata)));
}

/**
 * An operator lifts every reason but an open dispute's: the disputed money is not settled until
 * Stripe closes the dispute, so `payment_dispute` stays while one is open.
 */
function reinstateAccount(command: C.ReinstateAccount, state: AccountState): AccountDecision {
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (state.status !== 'suspended') return reject({ error: 'account_not_suspended' });
  const disputeOpen = openDisputesOf(state) > 0;
  const lifted = [...state.suspensionReasons].filter((r) => !(disputeOpen && r === 'payment_dispute'));
  if (lifted.length === 0) return reject({ error: 'dispute_open', openDisputes: openDisputesOf(state) });
  return accept(event('AccountReinstated', { reason: 'admin_decision', lifted }, eventMetadataFrom(command.metadata)));
}

function checkDispute(data: { readonly paymentReference: string; readonly amount: MicroUsd }, state: AccountState): AccountError | null {
  if (data.amount <= 0n) return { error: 'amount_must_be_positive', amount: data.amount };
  if (!state.appliedPaymentReferences.has(data.paymentReference)) return { error: 'unknown_payment_reference', paymentReference: data.paymentReference };
  return null;
}

/**
 * The disputed amount is held and the account suspended for `payment_dispute` (once, however
 * many disputes are open). A closed account records the dispute and its hold, and stays closed.
 */
function openDispute(command: C.OpenDispute, state: AccountState): AccountDecision {
  const { disputeId, paymentReference, amount } = command.data;
  // Redelivered, or closed before it was created: it is already on the account.
  if (state.disputes.has(disputeId)) return accept();
  const invalid = checkDispute(command.data, state);
  if (invalid) return reject(invalid);
  const metadata = eventMetadataFrom(command.metadata);
  const events: AccountEvent[] = [event('DisputeOpened', { disputeId, paymentReference, amount }, metadata)];
  if (state.status !== 'closed' && !state.suspensionReasons.has('payment_dispute'))
    events.push(event('AccountSuspended', { reason: 'payment_dispute' }, metadata));
  return accept(...events);
}

/**
 * Won: the hold ends and, when no other dispute is open, `payment_dispute` is lifted (the
 * account opens again unless another reason keeps it suspended). Lost: the hold ends and the
 * amount leaves the purchased credit, which may go negative; the account stays suspended until
 * an operator decides (a lost chargeback is a risk signal, not a money shortfall a top-up cures).
 */
function closeDispute(command: C.CloseDispute, state: AccountState): AccountDecision {
  const { disputeId, paymentReference, amount, outcome } = command.data;
  const known = state.disputes.get(disputeId);
  if (known !== undefined && known.status !== 'open') return accept();
  const metadata = eventMetadataFrom(command.metadata);
  const events: AccountEvent[] = [];
  let held = known?.amount;
  if (known === undefined) {
    // Closed delivered before created: open and close at once, so the later created is a no-op.
    const invalid = checkDispute(command.data, state);
    if (invalid) return reject(invalid);
    events.push(event('DisputeOpened', { disputeId, paymentReference, amount }, metadata));
    held = amount;
  }
  events.push(event('DisputeClosed', { disputeId, outcome, debited: outcome === 'lost' ? (held ?? amount) : 0n }, metadata));
  if (outcome === 'won' && state.status === 'suspended' && state.suspensionReasons.has('payment_dispute') && openDisputesOf(state, disputeId) === 0) {
    events.push(event('AccountReinstated', { reason: 'dispute_won', lifted: ['payment_dispute'] }, metadata));
  }
  return accept(...events);
}

function closeAccount(command: C.CloseAccount, state: AccountState): AccountDecision {
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (state.openReservations.size > 0) return reject({ error: 'account_has_open_reservations', openReservations: state.openReservations.size });
  return accept(event('AccountClosed', { reason: command.data.reason }, eventMetadataFrom(command.metadata)));
}

function terminateAccount(command: C.TerminateAccount, state: AccountState): AccountDecision {
  const { reason, forAbuse } = command.data;
  if (state.status === 'closed') return reject({ error: 'account_closed' });
  if (reason.trim() === '') return reject({ error: 'reason_required' });
  // As with closure: no hold outlives the account (suspend first to stop new requests).
  if (state.openReservations.size > 0) return reject({ error: 'account_has_open_reservations', openReservations: state.openReservations.size });
  const metadata = eventMetadataFrom(command.metadata);
  const events: AccountEvent[] = [
    event('AccountTerminated', { reason, forAbuse }, metadata),
    event('AccountClosed', { reason: 'terminated_for_breach' }, metadata),
  ];
  // For abuse nothing is refunded: the purchased credit left is no longer owed. A debt stays a debt.
  if (forAbuse && state.purchased > 0n) events.push(event('PurchasedCreditForfeited', { amount: state.purchased, reason: 'terminated_for_abuse' }, metadata));
  return accept(...events);
}

function erasePersonalData(command: C.ErasePersonalData, state: AccountState): AccountDecision {
  if (state.status !== 'closed') return reject({ error: 'account_not_closed' });
  if (state.personalDataErased) return reject({ error: 'personal_data_already_erased' });
  return accept(event('PersonalDataErased', {}, eventMetadataFrom(command.metadata)));
}

/** Rectification is allowed until erasure, closed or not: a closed account's data is still held. */
function correctPersonalData(command: C.CorrectPersonalData, state: AccountState): AccountDecision {
  if (state.personalDataErased) return reject({ error: 'personal_data_already_erased' });
  const { displayNameCiphertext = null, emailCiphertext = null } = command.data;
  if (displayNameCiphertext === null && emailCiphertext === null) return reject({ error: 'nothing_to_correct' });
  return accept(event('PersonalDataCorrected', { displayNameCiphertext, emailCiphertext }, eventMetadataFrom(command.metadata)));
}

/** The usage as the event records it: audio and character quantities only when there are any. */
function usageOf(usage: C.SettleReservation['data']['usage']): C.SettleReservation['data']['usage'] {
  const { inputTokens, outputTokens, estimated } = usage;
  return {
    inputTokens,
    outputTokens,
    estimated,
    ...(usage.audioMilliseconds ? { audioMilliseconds: usage.audioMilliseconds } : {}),
    ...(usage.inputCharacters ? { inputCharacters: usage.inputCharacters } : {}),
  };
}
