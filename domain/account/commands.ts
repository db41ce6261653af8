import type { Command } from '../events/metadata';
import type { MicroUsd, TokenPrice } from '../money/money';
import type { Operation } from '../price-book/operation';
import type { ReleaseReason, SettledOutcome } from '../charge-policy/outcome-names';
import type { IsoInstant } from '../time/instant';
import type { SpendLimit } from '../api-key/events';
import type { ClosureReason, DisputeOutcome, PayoutMethod, SuspensionReason } from './events';

export type OpenAccount = Command<
  'OpenAccount',
  {
    readonly accountId: string;
    /** encrypted by the caller with the account's key (crypto-shredding); opaque here */
    readonly displayNameCiphertext: string;
    readonly emailCiphertext: string;
  }
>;

export type CompleteTopUp = Command<
  'CompleteTopUp',
  {
    /** the payment provider's id: a reference already applied is a no-op */
    readonly paymentReference: string;
    readonly amount: MicroUsd;
    readonly autoTopUpAttemptId?: string;
  }
>;

export type GrantPromoCredit = Command<
  'GrantPromoCredit',
  { readonly grantId: string; readonly amount: MicroUsd; readonly expiresAt: IsoInstant; readonly reason: string }
>;

export type ExpirePromoCredit = Command<'ExpirePromoCredit', { readonly grantId: string }>;

/** `amount` null: all of the grant's unspent remainder. */
export type RevokePromoCredit = Command<'RevokePromoCredit', { readonly grantId: string; readonly amount: MicroUsd | null; readonly reason: string }>;

/** `maximum` null: back to the deployment's default. */
export type SetMaximumBalance = Command<'SetMaximumBalance', { readonly maximum: MicroUsd | null; readonly reason: string }>;

export type PlaceReservation = Command<
  'PlaceReservation',
  {
    readonly requestId: string;
    readonly keyId: string;
    readonly model: string;
    readonly operation: Operation;
    /** the estimate (domain/estimate) */
    readonly amount: MicroUsd;
    readonly priceVersion: number;
    /** the gateway instance placing it (its lease decides when it may be expired early) */
    readonly instanceId?: string;
    /**
     * The key's spend limit as the key's stream has it (domain/api-key): what the key has spent
     * in the limit's window plus what it holds there must stay within it. Absent: no limit.
     */
    readonly keySpendLimit?: SpendLimit;
  }
>;

export type SettleReservation = Command<
  'SettleReservation',
  {
    readonly requestId: string;
    /** what to charge, from the charge policy; `estimated` when counted locally */
    readonly usage: {
      readonly inputTokens: bigint;
      readonly outputTokens: bigint;
      readonly estimated: boolean;
      /** audio seconds in milliseconds (transcription, translation) */
      readonly audioMilliseconds?: bigint;
      /** input characters (speech) */
      readonly inputCharacters?: bigint;
    };
    /** the price the reservation was admitted under (priceByVersion(reservation.priceVersion)) */
    readonly price: TokenPrice & { readonly version: number };
    readonly outcome: SettledOutcome;
  }
>;

export type ReleaseReservation = Command<'ReleaseReservation', { readonly requestId: string; readonly reason: ReleaseReason }>;

/**
 * Without `lapsedInstanceId`: expire because expiresAt passed. With it: the caller saw that
 * instance's lease lapse (the gateway that placed the reservation is gone), so it may be expired
 * before expiresAt, but only if that instance placed it.
 */
export type ExpireReservation = Command<'ExpireReservation', { readonly requestId: string; readonly lapsedInstanceId?: string }>;

export type IssueRefund = Command<
  'IssueRefund',
  {
    /** idempotency: a refund id already issued is a no-op */
    readonly refundId: string;
    readonly amount: MicroUsd;
    /** the top-ups being refunded; each must be a payment this account received */
    readonly paymentReferences: readonly string[];
  }
>;

/**
 * A refund the payment provider already made without Tollgate asking (the Stripe Dashboard).
 * It is applied whatever the balance: the money has left. A refund id already applied is a no-op.
 */
export type RecordProviderRefund = Command<'RecordProviderRefund', { readonly refundId: string; readonly paymentReference: string; readonly amount: MicroUsd }>;

/** `payoutId` is the idempotency key (the same payout recorded twice records once). Open or closed accounts alike. */
export type RecordPayout = Command<
  'RecordPayout',
  { readonly payoutId: string; readonly method: PayoutMethod; readonly reference: string; readonly amount: MicroUsd; readonly reason: string }
>;

/**
 * A claim of a closed account's remaining credit within the claim period. `amount` null: all of
 * it not yet claimed. `claimId` is the idempotency key.
 */
export type ClaimRefund = Command<'ClaimRefund', { readonly claimId: string; readonly amount: MicroUsd | null }>;

/** After the claim period: what is refundable and not claimed leaves the balance for good. */
export type ForfeitUnclaimedCredit = Command<'ForfeitUnclaimedCredit', Record<string, never>>;

export type ConfigureAutoTopUp = Command<'ConfigureAutoTopUp', { readonly autoTopUp: { readonly threshold: MicroUsd; readonly amount: MicroUsd } | null }>;

export type RecordAutoTopUpTriggered = Command<'RecordAutoTopUpTriggered', { readonly attemptId: string }>;

export type RecordAutoTopUpFailed = Command<'RecordAutoTopUpFailed', { readonly attemptId: string; readonly reason: string }>;

export type SuspendAccount = Command<'SuspendAccount', { readonly reason: SuspensionReason }>;

export type ReinstateAccount = Command<'ReinstateAccount', Record<string, never>>;

/** Stripe's charge.dispute.created: a dispute id already known is a no-op (redelivery, or it was closed first). */
export type OpenDispute = Command<'OpenDispute', { readonly disputeId: string; readonly paymentReference: string; readonly amount: MicroUsd }>;

/**
 * Stripe's charge.dispute.closed. A dispute not yet opened is opened and closed in one decision
 * (closed delivered before created); one already closed is a no-op.
 */
export type CloseDispute = Command<
  'CloseDispute',
  { readonly disputeId: string; readonly paymentReference: string; readonly amount: MicroUsd; readonly outcome: DisputeOutcome }
>;

export type CloseAccount = Command<'CloseAccount', { readonly reason: ClosureReason }>;

/**
 * An operator ends the account for breach of the terms. Not for abuse, purchased credit is
 * refunded (by the caller, through the payment provider, after the closure); for abuse, what
 * purchased credit remains is forfeited in the same decision.
 */
export type TerminateAccount = Command<'TerminateAccount', { readonly reason: string; readonly forAbuse: boolean }>;

export type ErasePersonalData = Command<'ErasePersonalData', Record<string, never>>;

/** New personal data, encrypted by the caller with the account's key; an absent field stays as it is. */
export type CorrectPersonalData = Command<'CorrectPersonalData', { readonly displayNameCiphertext?: string; readonly emailCiphertext?: string }>;

export type AccountCommand =
  | OpenAccount
  | CompleteTopUp
  | GrantPromoCredit
  | ExpirePromoCredit
  | RevokePromoCredit
  | SetMaximumBalance
  | PlaceReservation
  | SettleReservation
  | ReleaseReservation
  | ExpireReservation
  | IssueRefund
  | RecordProviderRefund
  | RecordPayout
  | ClaimRefund
  | ForfeitUnclaimedCredit
  | ConfigureAutoTopUp
  | RecordAutoTopUpTriggered
  | RecordAutoTopUpFailed
  | SuspendAccount
  | ReinstateAccount
  | OpenDispute
  | CloseDispute
  | CloseAccount
  | TerminateAccount
  | ErasePersonalData
  | CorrectPersonalData;

export type AccountCommandType = AccountCommand['type'];
