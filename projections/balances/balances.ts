import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';

/**
 * Balances: one row per account with its purchased credit, promo credit and open reservations,
 * kept as sums of per-event changes so a batch of events becomes one upsert.
 *
 * Promo here is the promo the log has recorded as still spendable (granted, less spent, less
 * lapsed by PromoCreditExpired): the domain's `promoBalanceOf(state)` without an instant. Promo
 * whose expiry has passed but whose PromoCreditExpired is not yet recorded still counts until the
 * expiry process records it; `balanceAsOf` (src/finance/balance.ts) answers for an exact instant.
 */

const ACCOUNT_STREAM_PREFIX = 'account-';

/** An account's members stream (`account-members-<id>`, domain/user) shares the prefix; it is not an account stream. */
const MEMBERS_STREAM_PREFIX = 'account-members-';

/** The account of an account stream (`account-<id>`), null for every other stream. */
export function accountIdOfStream(streamId: string): string | null {
  if (!streamId.startsWith(ACCOUNT_STREAM_PREFIX) || streamId.startsWith(MEMBERS_STREAM_PREFIX)) return null;
  return streamId.slice(ACCOUNT_STREAM_PREFIX.length);
}

export interface BalanceChange {
  readonly accountId: string;
  readonly purchased: MicroUsd;
  readonly promo: MicroUsd;
  readonly reserved: MicroUsd;
}

/**
 * What one event changes on its account's balance row, or null for events of other streams.
 * Every account event returns a change (possibly all zero) so the row's last position moves.
 */
export function balanceChange(streamId: string, event: DomainEvent): BalanceChange | null {
  const accountId = accountIdOfStream(streamId);
  if (accountId === null) return null;
  const zero = { accountId, purchased: 0n, promo: 0n, reserved: 0n };
  switch (event.type) {
    case 'TopUpCompleted':
      return { ...zero, purchased: event.data.amount };
    case 'PromoCreditGranted':
      return { ...zero, promo: event.data.amount };
    case 'PromoCreditExpired':
    case 'PromoCreditRevoked':
      return { ...zero, promo: -event.data.amount };
    case 'ReservationPlaced':
      return { ...zero, reserved: event.data.amount };
    case 'ReservationSettled':
      return {
        ...zero,
        purchased: -event.data.fromPurchased,
        promo: -event.data.fromPromo.reduce((sum, draw) => sum + draw.amount, 0n),
        reserved: -event.data.reservedAmount,
      };
    case 'ReservationReleased':
    case 'ReservationExpired':
      return { ...zero, reserved: -event.data.amount };
    case 'RefundIssued':
    case 'RefundShortfall':
    case 'PayoutRecorded':
    case 'PurchasedCreditForfeited':
      return { ...zero, purchased: -event.data.amount };
    case 'DisputeClosed':
      return { ...zero, purchased: -event.data.debited };
    default:
      return zero;
  }
}

export interface BalanceRow {
  readonly accountId: string;
  readonly purchased: MicroUsd;
  readonly promo: MicroUsd;
  readonly reserved: MicroUsd;
}

/** balance before holds; what a statement's running balance shows */
export function balanceOfRow(row: BalanceRow): MicroUsd {
  return row.purchased + row.promo;
}

/** what a new reservation may take */
export function availableOfRow(row: BalanceRow): MicroUsd {
  return row.purchased + row.promo - row.reserved;
}

/** Negative means in debt: purchased credit below zero after a settlement shortfall (the domain's `negative_balance`). */
export function isNegative(row: BalanceRow): boolean {
  return row.purchased < 0n;
}

/** Adds a change to a row (a missing row is all zero): the whole reducer. */
export function applyBalanceChange(row: BalanceRow | undefined, change: BalanceChange): BalanceRow {
  return {
    accountId: change.accountId,
    purchased: (row?.purchased ?? 0n) + change.purchased,
    promo: (row?.promo ?? 0n) + change.promo,
    reserved: (row?.reserved ?? 0n) + change.reserved,
  };
}
