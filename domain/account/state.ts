import type { MicroUsd } from '../money/money';
import type { Operation } from '../price-book/operation';
import { addMs, isBefore, toEpochMs, type IsoInstant } from '../time/instant';
import type { SuspensionReason } from './events';

export type AccountStatus = 'not_opened' | 'open' | 'suspended' | 'closed';

export interface PromoGrant {
  readonly grantId: string;
  readonly granted: MicroUsd;
  /** unspent; 0 after expiry (the remainder lapsed) */
  readonly remaining: MicroUsd;
  readonly expiresAt: IsoInstant;
  readonly expired: boolean;
}

export interface OpenReservation {
  readonly requestId: string;
  readonly keyId: string;
  readonly model: string;
  readonly operation: Operation;
  readonly amount: MicroUsd;
  readonly priceVersion: number;
  readonly expiresAt: IsoInstant;
  /** the gateway instance that placed it; null when unknown (older reservations) */
  readonly instanceId: string | null;
}

export interface Dispute {
  readonly paymentReference: string;
  /** what is held while it is open */
  readonly amount: MicroUsd;
  readonly status: 'open' | 'won' | 'lost';
}

export interface AccountState {
  readonly status: AccountStatus;
  readonly accountId: string | null;
  /** every reason the account is suspended for; it is active only when this is empty */
  readonly suspensionReasons: ReadonlySet<SuspensionReason>;
  /** the most recent of suspensionReasons (what the API shows), null when there is none */
  readonly suspensionReason: SuspensionReason | null;
  /** every dispute by id, closed ones included so a redelivery changes nothing */
  readonly disputes: ReadonlyMap<string, Dispute>;
  /** sum of open disputes' amounts: neither spendable nor refundable */
  readonly disputeHeld: MicroUsd;
  readonly totalDisputeLosses: MicroUsd;
  /** when AccountClosed was recorded; null while open */
  readonly closedAt: IsoInstant | null;
  /** purchased credit; negative after a settlement shortfall (debt) */
  readonly purchased: MicroUsd;
  readonly promoGrants: ReadonlyMap<string, PromoGrant>;
  readonly openReservations: ReadonlyMap<string, OpenReservation>;
  /** sum of open reservation amounts, kept so availability is O(1) */
  readonly reserved: MicroUsd;
  readonly appliedPaymentReferences: ReadonlySet<string>;
  readonly appliedRefundIds: ReadonlySet<string>;
  readonly totalToppedUp: MicroUsd;
  readonly totalRefunded: MicroUsd;
  readonly totalUsage: { readonly inputTokens: bigint; readonly outputTokens: bigint; readonly cost: MicroUsd };
  readonly autoTopUp: { readonly threshold: MicroUsd; readonly amount: MicroUsd } | null;
  readonly pendingAutoTopUp: { readonly attemptId: string; readonly amount: MicroUsd } | null;
  readonly personalDataErased: boolean;
  /** set when an operator terminated the account for breach */
  readonly termination: { readonly forAbuse: boolean } | null;
  readonly totalForfeited: MicroUsd;
  /** claims made after closure (ids, for idempotency) and their total */
  readonly claimIds: ReadonlySet<string>;
  readonly totalClaimed: MicroUsd;
  /** claimed and not yet paid back (card refunds and payouts after a claim pay it down) */
  readonly claimedUnpaid: MicroUsd;
  /** this account's maximum balance where an operator raised it; null: the policy's */
  readonly maximumBalance: MicroUsd | null;
}

export function initialAccountState(): AccountState {
  return {
    status: 'not_opened',
    accountId: null,
    suspensionReasons: new Set(),
    suspensionReason: null,
    disputes: new Map(),
    disputeHeld: 0n,
    totalDisputeLosses: 0n,
    closedAt: null,
    purchased: 0n,
    promoGrants: new Map(),
    openReservations: new Map(),
    reserved: 0n,
    appliedPaymentReferences: new Set(),
    appliedRefundIds: new Set(),
    totalToppedUp: 0n,
    totalRefunded: 0n,
    totalUsage: { inputTokens: 0n, outputTokens: 0n, cost: 0n },
    autoTopUp: null,
    pendingAutoTopUp: null,
    personalDataErased: false,
    termination: null,
    totalForfeited: 0n,
    claimIds: new Set(),
    totalClaimed: 0n,
    claimedUnpaid: 0n,
    maximumBalance: null,
  };
}

/**
 * Promo grants that can still pay, in the order they are spent: soonest expiry first, then
 * grant id so the order is total and replays agree. With `at`, grants whose expiry has passed
 * no longer pay even before PromoCreditExpired is recorded.
 */
export function spendablePromoGrants(state: AccountState, at?: IsoInstant): PromoGrant[] {
  return [...state.promoGrants.values()]
    .filter((g) => !g.expired && g.remaining > 0n && (at === undefined || isBefore(at, g.expiresAt)))
    .sort((a, b) => toEpochMs(a.expiresAt) - toEpochMs(b.expiresAt) || (a.grantId < b.grantId ? -1 : a.grantId > b.grantId ? 1 : 0));
}

export function promoBalanceOf(state: AccountState, at?: IsoInstant): MicroUsd {
  return spendablePromoGrants(state, at).reduce((sum, g) => sum + g.remaining, 0n);
}

/** purchased + unexpired promo, before open reservations */
export function balanceOf(state: AccountState, at?: IsoInstant): MicroUsd {
  return state.purchased + promoBalanceOf(state, at);
}

/** what a new reservation may take: balance less open reservations and disputed amounts (negative after a shortfall) */
export function availableOf(state: AccountState, at?: IsoInstant): MicroUsd {
  return balanceOf(state, at) - state.reserved - state.disputeHeld;
}

/** purchased credit that may be paid back: purchased less open reservations and disputed amounts, never below 0 */
export function refundableOf(state: AccountState): MicroUsd {
  const r = state.purchased - state.reserved - state.disputeHeld;
  return r > 0n ? r : 0n;
}

/** The most this account's balance (purchased + promo) may reach: its own ceiling, or the deployment's. */
export function maximumBalanceOf(state: AccountState, policy: { readonly maximumBalance: MicroUsd }): MicroUsd {
  return state.maximumBalance ?? policy.maximumBalance;
}

/** The suspension reasons left after a reinstatement that lifts `lifted` (null: all of them). */
export function reasonsAfterReinstatement(reasons: ReadonlySet<SuspensionReason>, lifted: readonly SuspensionReason[] | null): ReadonlySet<SuspensionReason> {
  if (lifted === null) return new Set();
  return new Set([...reasons].filter((r) => !lifted.includes(r)));
}

/** Open disputes other than `except`. */
export function openDisputesOf(state: AccountState, except?: string): number {
  let n = 0;
  for (const [id, d] of state.disputes) if (d.status === 'open' && id !== except) n += 1;
  return n;
}

/** The terms: what remains after closure "can be claimed within 360 days of closure". */
export const CLAIM_PERIOD_MS = 360 * 24 * 60 * 60 * 1000;

/** The last instant a closed account's credit may still be paid back (null while open). */
export function claimableUntilOf(state: AccountState): IsoInstant | null {
  return state.closedAt === null ? null : addMs(state.closedAt, CLAIM_PERIOD_MS);
}

/** True once a closed account's claim period has passed at `now`: nothing more is paid back. */
export function claimPeriodOver(state: AccountState, now: IsoInstant): boolean {
  const until = claimableUntilOf(state);
  return until !== null && !isBefore(now, until);
}

/**
 * What was claimed in time and is still owed: the claims not yet paid back, at most what is
 * refundable now (a lost dispute may have taken some of it). Paid after the period too; never forfeited.
 */
export function outstandingClaimOf(state: AccountState): MicroUsd {
  const refundable = refundableOf(state);
  return state.claimedUnpaid < refundable ? state.claimedUnpaid : refundable;
}

/**
 * What a closed account's customer may still claim, or what is forfeited once the period is over:
 * the refundable credit (purchased less any debt, open reservations and disputed amounts) not yet claimed.
 */
export function unclaimedOf(state: AccountState): MicroUsd {
  return refundableOf(state) - outstandingClaimOf(state);
}
