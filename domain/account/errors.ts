import type { MicroUsd } from '../money/money';
import type { IsoInstant } from '../time/instant';
import type { SuspensionReason } from './events';
import type { SpendLimitPeriod } from '../api-key/events';

/**
 * Every refusal of the account decider, by name. A handler matches on `error`; the extra
 * fields say why in numbers, never in prose. (Nothing here may carry prompt content.)
 */
export type AccountError =
  /** OpenAccount on a stream that already has AccountOpened */
  | { readonly error: 'account_already_opened' }
  /** any other command on a stream that was never opened */
  | { readonly error: 'account_not_open' }
  /** top-ups, grants, reservations, configuration and status changes after AccountClosed */
  | { readonly error: 'account_closed' }
  /** a suspended account reserves nothing */
  | { readonly error: 'account_suspended'; readonly reason: SuspensionReason }
  | { readonly error: 'account_already_suspended'; readonly reason: SuspensionReason }
  | { readonly error: 'account_not_suspended' }
  /** an operator cannot lift `payment_dispute` while a dispute is open: Stripe's decision ends it */
  | { readonly error: 'dispute_open'; readonly openDisputes: number }
  /** close only when every reservation has ended, so no hold outlives the account */
  | { readonly error: 'account_has_open_reservations'; readonly openReservations: number }
  /** erasure follows closure (personal data goes within 30 days of deletion) */
  | { readonly error: 'account_not_closed' }
  | { readonly error: 'personal_data_already_erased' }
  /** a per-account maximum balance only raises the deployment's default */
  | { readonly error: 'maximum_below_default'; readonly maximum: MicroUsd; readonly default: MicroUsd }
  /** an operator's act that must say why */
  | { readonly error: 'reason_required' }
  /** a correction that names no field */
  | { readonly error: 'nothing_to_correct' }
  | { readonly error: 'amount_must_be_positive'; readonly amount: MicroUsd }
  | { readonly error: 'amount_must_not_be_negative'; readonly amount: MicroUsd }
  | { readonly error: 'token_count_negative' }
  | { readonly error: 'top_up_below_minimum'; readonly amount: MicroUsd; readonly minimum: MicroUsd }
  /** the balance (purchased + promo) would exceed the policy maximum */
  | { readonly error: 'balance_limit_exceeded'; readonly balance: MicroUsd; readonly amount: MicroUsd; readonly maximum: MicroUsd }
  | { readonly error: 'promo_grant_already_exists'; readonly grantId: string }
  | { readonly error: 'promo_expiry_not_in_future'; readonly expiresAt: IsoInstant; readonly now: IsoInstant }
  | { readonly error: 'promo_grant_not_found'; readonly grantId: string }
  | { readonly error: 'promo_grant_already_expired'; readonly grantId: string }
  | { readonly error: 'promo_grant_not_yet_expired'; readonly grantId: string; readonly expiresAt: IsoInstant }
  /** a revocation takes back at most the grant's unspent remainder */
  | { readonly error: 'exceeds_unspent_promo'; readonly grantId: string; readonly unspent: MicroUsd; readonly requested: MicroUsd }
  /** promo that open reservations count on is revoked only once they end */
  | { readonly error: 'promo_held_by_reservations'; readonly available: MicroUsd; readonly requested: MicroUsd }
  /** a request id may hold one reservation at a time */
  | { readonly error: 'reservation_already_exists'; readonly requestId: string }
  /** purchased credit is in debt after a settlement shortfall: no new reservation until a top-up */
  | { readonly error: 'negative_balance'; readonly balance: MicroUsd }
  | { readonly error: 'exceeds_available_balance'; readonly available: MicroUsd; readonly needed: MicroUsd }
  /**
   * the key's spend in its limit's window (settled plus held by its open reservations there)
   * and this reservation would pass its spend limit; `resetsAt` null for a total limit
   */
  | {
      readonly error: 'key_spend_limit_reached';
      readonly keyId: string;
      readonly period: SpendLimitPeriod;
      readonly limit: MicroUsd;
      readonly spent: MicroUsd;
      readonly held: MicroUsd;
      readonly needed: MicroUsd;
      readonly resetsAt: IsoInstant | null;
    }
  /**
   * settle, release or expire of a reservation that is not open: never placed, or already
   * ended. One name for both because ended reservations are not kept in state (it would grow
   * with every request the account ever made); every reservation ends exactly once either way.
   */
  | { readonly error: 'reservation_not_found'; readonly requestId: string }
  | { readonly error: 'reservation_not_yet_expired'; readonly requestId: string; readonly expiresAt: IsoInstant }
  /** an early expiry named a lapsed instance that did not place this reservation */
  | { readonly error: 'reservation_instance_not_lapsed'; readonly requestId: string; readonly instanceId: string | null; readonly lapsedInstanceId: string }
  /** settlement must use the price version the reservation was admitted under */
  | { readonly error: 'price_version_mismatch'; readonly requestId: string; readonly reservedUnder: number; readonly given: number }
  /** refundable = purchased balance less open reservations; promo is never refundable */
  | { readonly error: 'exceeds_refundable_credit'; readonly refundable: MicroUsd; readonly requested: MicroUsd }
  /** a closed account's credit is paid back only within 360 days of closure */
  | { readonly error: 'claim_period_over'; readonly claimableUntil: IsoInstant }
  /** unclaimed credit is forfeited only once the claim period has passed */
  | { readonly error: 'claim_period_not_over'; readonly claimableUntil: IsoInstant }
  /** a claim of a closed account with no unclaimed refundable credit left */
  | { readonly error: 'nothing_to_claim' }
  | { readonly error: 'nothing_to_forfeit' }
  /** a refund names the payments it pays back, and each must be a top-up of this account */
  | { readonly error: 'refund_without_payment_reference' }
  | { readonly error: 'unknown_payment_reference'; readonly paymentReference: string }
  | { readonly error: 'auto_top_up_not_configured' }
  | { readonly error: 'auto_top_up_already_pending'; readonly attemptId: string }
  | { readonly error: 'auto_top_up_not_pending'; readonly attemptId: string }
  | { readonly error: 'available_above_auto_top_up_threshold'; readonly available: MicroUsd; readonly threshold: MicroUsd };

export type AccountErrorName = AccountError['error'];
