import type { MicroUsd } from '../money/money';
import type { Operation } from '../price-book/operation';
import { addMs, isBefore, toEpochMs, type IsoInstant } from '../time/instant';
import type { SuspensionReason } from './events';
import type { SpendLimitPeriod } from '../api-key/events';
import { PersistentMap } from '../collections/persistent-map';

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
  /** when it was decided: the spend windows it counts in (UTC day and month) */
  readonly placedAt: IsoInstant;
}

/**
 * What one key has been charged: in its latest UTC day and month with a charge (older windows
 * are dropped; a settlement of an older window no longer matters to any limit), and in all.
 * A settlement counts in the windows of its reservation's decision time.
 */
export interface KeySpend {
  readonly day: string;
  readonly daySpent: MicroUsd;
  readonly month: string;
  readonly monthSpent: MicroUsd;
  readonly total: MicroUsd;
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
  /** settled spend per key, for key spend limits */
  readonly keySpend: ReadonlyMap<string, KeySpend>;
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
    openReservations: PersistentMap.empty(),
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
    keySpend: new Map(),
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

/** The UTC day (`2026-12-01`) and month (`2026-12`) of an instant. */
export function spendWindowsOf(instant: IsoInstant): { readonly day: string; readonly month: string } {
  const iso = new Date(toEpochMs(instant)).toISOString();
  return { day: iso.slice(0, 10), month: iso.slice(0, 7) };
}

/** The window of `period` that `now` falls in: a day, a month, or null for a key's whole life. */
function windowOf(period: SpendLimitPeriod, now: IsoInstant): string | null {
  if (period === 'total') return null;
  return spendWindowsOf(now)[period];
}

/** When the window of `period` containing `now` ends (UTC midnight); null for a total limit. */
export function spendWindowResetsAt(period: SpendLimitPeriod, now: IsoInstant): IsoInstant | null {
  if (period === 'total') return null;
  const d = new Date(toEpochMs(now));
  const next = period === 'day' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return new Date(next).toISOString();
}

/**
 * What `keyId` has spent in the window of `period` that contains `now`: charged by settlements
 * (`spent`) and held by its open reservations decided in that window (`held`).
 */
export function keySpendInWindow(state: AccountState, keyId: string, period: SpendLimitPeriod, now: IsoInstant): { spent: MicroUsd; held: MicroUsd } {
  const window = windowOf(period, now);
  const spend = state.keySpend.get(keyId);
  let spent = 0n;
  if (spend) {
    if (period === 'total') spent = spend.total;
    else if (period === 'day') spent = spend.day === window ? spend.daySpent : 0n;
    else spent = spend.month === window ? spend.monthSpent : 0n;
  }
  let held = 0n;
  for (const r of state.openReservations.values()) {
    if (r.keyId !== keyId) continue;
    if (window === null || windowOf(period, r.placedAt) === window) held += r.amount;
  }
  return { spent, held };
}

/** A key's spend after a settlement of `cost` decided at `placedAt`. */
export function keySpendAfter(spend: KeySpend | undefined, placedAt: IsoInstant, cost: MicroUsd): KeySpend {
  const { day, month } = spendWindowsOf(placedAt);
  if (!spend) return { day, daySpent: cost, month, monthSpent: cost, total: cost };
  return {
    ...(day > spend.day ? { day, daySpent: cost } : { day: spend.day, daySpent: day === spend.day ? spend.daySpent + cost : spend.daySpent }),
    ...(month > spend.month
      ? { month, monthSpent: cost }
      : { month: spend.month, monthSpent: month === spend.month ? spend.monthSpent + cost : spend.monthSpent }),
    total: spend.total + cost,
  };
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
