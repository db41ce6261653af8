import { match } from 'ts-pattern';
import { PersistentMap } from '../collections/persistent-map';
import type { AccountEvent } from './events';
import { keySpendAfter, reasonsAfterReinstatement, type AccountState } from './state';
import type { SuspensionReason } from './events';

// An account's maps change by one entry per event: persistent maps share the rest instead of
// copying it (a copy per event made N open reservations cost O(N²) to open and to settle).
function withEntry<K, V>(map: ReadonlyMap<K, V>, key: K, value: V): ReadonlyMap<K, V> {
  return PersistentMap.from(map).set(key, value);
}

function withoutEntry<K, V>(map: ReadonlyMap<K, V>, key: K): ReadonlyMap<K, V> {
  return PersistentMap.from(map).delete(key);
}

/** Status follows the set: suspended while any reason is left (a closed account stays closed). */
function withSuspensionReasons(state: AccountState, reasons: ReadonlySet<SuspensionReason>): AccountState {
  const last = [...reasons].at(-1) ?? null;
  const status = state.status === 'closed' ? state.status : reasons.size > 0 ? ('suspended' as const) : ('open' as const);
  return { ...state, status, suspensionReasons: reasons, suspensionReason: last };
}

/** A claim is paid down by whatever is paid back after it, never below zero. */
function paidDown(claimed: bigint, paid: bigint): bigint {
  return claimed > paid ? claimed - paid : 0n;
}

function withMember<T>(set: ReadonlySet<T>, value: T): ReadonlySet<T> {
  return new Set(set).add(value);
}

/**
 * Applies a recorded fact. Never refuses: events are history. Amounts come from the events
 * themselves (e.g. where a settlement drew from), never recomputed, so a rule change cannot
 * change a past balance. Unchanged maps and sets are shared, not copied.
 */
export function evolveAccount(state: AccountState, event: AccountEvent): AccountState {
  return (
    match(event)
      .with({ type: 'AccountOpened' }, ({ data }) => ({ ...state, status: 'open' as const, accountId: data.accountId }))
      .with({ type: 'TopUpCompleted' }, ({ data }) => ({
        ...state,
        purchased: state.purchased + data.amount,
        totalToppedUp: state.totalToppedUp + data.amount,
        appliedPaymentReferences: withMember(state.appliedPaymentReferences, data.paymentReference),
        pendingAutoTopUp: state.pendingAutoTopUp !== null && state.pendingAutoTopUp.attemptId === data.autoTopUpAttemptId ? null : state.pendingAutoTopUp,
      }))
      .with({ type: 'PromoCreditGranted' }, ({ data }) => ({
        ...state,
        promoGrants: withEntry(state.promoGrants, data.grantId, {
          grantId: data.grantId,
          granted: data.amount,
          remaining: data.amount,
          expiresAt: data.expiresAt,
          expired: false,
        }),
      }))
      .with({ type: 'PromoCreditExpired' }, ({ data }) => {
        const grant = state.promoGrants.get(data.grantId);
        if (!grant) return state;
        return { ...state, promoGrants: withEntry(state.promoGrants, data.grantId, { ...grant, remaining: grant.remaining - data.amount, expired: true }) };
      })
      .with({ type: 'PromoCreditRevoked' }, ({ data }) => {
        const grant = state.promoGrants.get(data.grantId);
        if (!grant) return state;
        return { ...state, promoGrants: withEntry(state.promoGrants, data.grantId, { ...grant, remaining: grant.remaining - data.amount }) };
      })
      .with({ type: 'ReservationPlaced' }, ({ data, metadata }) => ({
        ...state,
        openReservations: withEntry(state.openReservations, data.requestId, {
          requestId: data.requestId,
          keyId: data.keyId,
          model: data.model,
          operation: data.operation,
          amount: data.amount,
          priceVersion: data.priceVersion,
          expiresAt: data.expiresAt,
          instanceId: data.instanceId,
          placedAt: metadata.occurredAt,
        }),
        reserved: state.reserved + data.amount,
      }))
      .with({ type: 'ReservationSettled' }, ({ data, metadata }) => {
        let promoGrants = state.promoGrants;
        const placedAt = state.openReservations.get(data.requestId)?.placedAt ?? metadata.occurredAt;
        for (const draw of data.fromPromo) {
          const grant = promoGrants.get(draw.grantId);
          if (grant) promoGrants = withEntry(promoGrants, draw.grantId, { ...grant, remaining: grant.remaining - draw.amount });
        }
        return {
          ...state,
          promoGrants,
          purchased: state.purchased - data.fromPurchased,
          openReservations: withoutEntry(state.openReservations, data.requestId),
          reserved: state.reserved - data.reservedAmount,
          keySpend: withEntry(state.keySpend, data.keyId, keySpendAfter(state.keySpend.get(data.keyId), placedAt, data.actualCost)),
          totalUsage: {
            inputTokens: state.totalUsage.inputTokens + data.usage.inputTokens,
            outputTokens: state.totalUsage.outputTokens + data.usage.outputTokens,
            cost: state.totalUsage.cost + data.actualCost,
          },
        };
      })
      .with({ type: 'ReservationReleased' }, { type: 'ReservationExpired' }, ({ data }) => ({
        ...state,
        openReservations: withoutEntry(state.openReservations, data.requestId),
        reserved: state.reserved - data.amount,
      }))
      .with({ type: 'RefundIssued' }, ({ data }) => ({
        ...state,
        claimedUnpaid: paidDown(state.claimedUnpaid, data.amount),
        purchased: state.purchased - data.amount,
        totalRefunded: state.totalRefunded + data.amount,
        appliedRefundIds: withMember(state.appliedRefundIds, data.refundId),
      }))
      .with({ type: 'PayoutRecorded' }, ({ data }) => ({
        ...state,
        claimedUnpaid: paidDown(state.claimedUnpaid, data.amount),
        purchased: state.purchased - data.amount,
        totalRefunded: state.totalRefunded + data.amount,
        appliedRefundIds: withMember(state.appliedRefundIds, data.payoutId),
      }))
      .with({ type: 'RefundShortfall' }, ({ data }) => ({
        ...state,
        claimedUnpaid: paidDown(state.claimedUnpaid, data.amount),
        purchased: state.purchased - data.amount,
        totalRefunded: state.totalRefunded + data.amount,
        appliedRefundIds: withMember(state.appliedRefundIds, data.refundId),
      }))
      .with({ type: 'RefundClaimed' }, ({ data }) => ({
        ...state,
        claimIds: withMember(state.claimIds, data.claimId),
        totalClaimed: state.totalClaimed + data.amount,
        claimedUnpaid: state.claimedUnpaid + data.amount,
      }))
      .with({ type: 'AutoTopUpConfigured' }, ({ data }) => ({ ...state, autoTopUp: data.autoTopUp }))
      .with({ type: 'AutoTopUpTriggered' }, ({ data }) => ({ ...state, pendingAutoTopUp: { attemptId: data.attemptId, amount: data.amount } }))
      .with({ type: 'AutoTopUpFailed' }, () => ({ ...state, pendingAutoTopUp: null }))
      .with({ type: 'AccountSuspended' }, ({ data }) => withSuspensionReasons(state, new Set([...state.suspensionReasons, data.reason])))
      .with({ type: 'AccountReinstated' }, ({ data }) => withSuspensionReasons(state, reasonsAfterReinstatement(state.suspensionReasons, data.lifted)))
      .with({ type: 'DisputeOpened' }, ({ data }) => ({
        ...state,
        disputes: withEntry(state.disputes, data.disputeId, { paymentReference: data.paymentReference, amount: data.amount, status: 'open' as const }),
        disputeHeld: state.disputeHeld + data.amount,
      }))
      .with({ type: 'DisputeClosed' }, ({ data }) => {
        const dispute = state.disputes.get(data.disputeId);
        if (!dispute || dispute.status !== 'open') return state;
        return {
          ...state,
          disputes: withEntry(state.disputes, data.disputeId, { ...dispute, status: data.outcome }),
          disputeHeld: state.disputeHeld - dispute.amount,
          purchased: state.purchased - data.debited,
          totalDisputeLosses: state.totalDisputeLosses + data.debited,
        };
      })
      .with({ type: 'AccountClosed' }, ({ metadata }) => ({ ...state, status: 'closed' as const, closedAt: metadata.occurredAt }))
      .with({ type: 'PersonalDataErased' }, () => ({ ...state, personalDataErased: true }))
      // The ciphertexts are the caller's business (the vault); the decider keeps no personal data.
      .with({ type: 'PersonalDataCorrected' }, () => state)
      .with({ type: 'MaximumBalanceSet' }, ({ data }) => ({ ...state, maximumBalance: data.maximum }))
      .with({ type: 'AccountTerminated' }, ({ data }) => ({ ...state, termination: { forAbuse: data.forAbuse } }))
      .with({ type: 'PurchasedCreditForfeited' }, ({ data }) => ({
        ...state,
        purchased: state.purchased - data.amount,
        totalForfeited: state.totalForfeited + data.amount,
      }))
      .exhaustive()
  );
}
