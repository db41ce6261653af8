import { z } from 'zod';
import { defineEvent, upcaster, type EventOf } from '../events/define';
import { idSchema, isoInstantSchema, naturalSchema } from '../events/schema';
import { operationSchema } from '../price-book/operation';
import { releaseReasonSchema, settledOutcomeSchema } from '../charge-policy/outcome-names';

/** The account stream's events. One stream per account; amounts are micro-USD bigints. */

export const suspensionReasonSchema = z.enum(['negative_balance', 'auto_top_up_failed', 'payment_dispute', 'terms_violation', 'customer_request']);
export type SuspensionReason = z.output<typeof suspensionReasonSchema>;

export const closureReasonSchema = z.enum(['customer_request', 'admin_decision', 'erasure_request', 'terminated_for_breach']);
export type ClosureReason = z.output<typeof closureReasonSchema>;

export const reinstatementReasonSchema = z.enum(['balance_restored', 'admin_decision', 'dispute_won']);
export type ReinstatementReason = z.output<typeof reinstatementReasonSchema>;

/**
 * Personal data arrives already encrypted with the account's own key (crypto-shredding):
 * destroying that key erases it from every copy of the log. The domain sees opaque strings.
 */
export const AccountOpened = defineEvent('AccountOpened', z.object({ accountId: idSchema, displayNameCiphertext: z.string(), emailCiphertext: z.string() }));

export const TopUpCompleted = defineEvent(
  'TopUpCompleted',
  z.object({
    paymentReference: idSchema,
    amount: naturalSchema,
    /** set when this payment was started by auto top-up, so the pending attempt ends */
    autoTopUpAttemptId: idSchema.nullable(),
  }),
);

export const PromoCreditGranted = defineEvent(
  'PromoCreditGranted',
  z.object({ grantId: idSchema, amount: naturalSchema, expiresAt: isoInstantSchema, reason: z.string().min(1) }),
);

/** `amount` is the unspent remainder that lapses; spent promo is never taken back. */
export const PromoCreditExpired = defineEvent('PromoCreditExpired', z.object({ grantId: idSchema, amount: naturalSchema }));

/**
 * An operator took back the unspent part of an unexpired grant, or some of it, with a reason.
 * What was spent stays spent; the grant's remainder shrinks by `amount`.
 */
export const PromoCreditRevoked = defineEvent('PromoCreditRevoked', z.object({ grantId: idSchema, amount: naturalSchema, reason: z.string().min(1) }));

/**
 * An operator set this account's maximum balance (null: back to the deployment's default). Only
 * raised above the default: "customers who require a higher balance should contact" support.
 */
export const MaximumBalanceSet = defineEvent('MaximumBalanceSet', z.object({ maximum: naturalSchema.nullable(), reason: z.string().min(1) }));

const reservationPlacedV1 = z.object({
  requestId: idSchema,
  keyId: idSchema,
  model: idSchema,
  amount: z.string(),
  priceVersion: z.number().int(),
  expiresAt: z.string(),
});

/**
 * v2 added `operation` (prices became per operation). v1 was written when Tollgate sold only
 * chat completions, so every v1 reservation was a chat reservation.
 */
export const ReservationPlaced = defineEvent(
  'ReservationPlaced',
  z.object({
    requestId: idSchema,
    keyId: idSchema,
    model: idSchema,
    operation: operationSchema,
    amount: naturalSchema,
    /** the price book version the request was admitted under; settlement uses the same */
    priceVersion: z.number().int().min(1),
    /**
     * The hard deadline: the gateway ends the request before it (its maximum request duration),
     * so a reservation still open after it is expired whatever its instance's state.
     */
    expiresAt: isoInstantSchema,
    /**
     * The gateway instance that placed it and will end it. While that instance's lease lives
     * the reservation is never expired before expiresAt; once it lapses, it may be expired at
     * once. Null on reservations placed before instances held leases (and by tools that place
     * none): those expire at expiresAt only.
     */
    instanceId: idSchema.nullable().default(null),
  }),
  { version: 2, upcasters: [upcaster(1, reservationPlacedV1, (v1) => ({ ...v1, operation: 'chat' }))] },
);

/**
 * What the gateway observed of the request on the GPU side: metadata only, never content. It is
 * no longer part of a wallet event: it goes to the request log (domain/request-log), which expires.
 * Version 1 of ReservationSettled/Released carried it; their upcasters drop it on read.
 */
const requestMetadataV1Schema = z
  .object({
    upstream: z.string().nullable(),
    httpStatus: z.number().int().nullable(),
    stream: z.boolean(),
    latencyMs: z.number().int().min(0),
    timeToFirstTokenMs: z.number().int().min(0).nullable(),
  })
  .nullable()
  .optional();
export interface RequestMetadata {
  readonly upstream: string | null;
  readonly httpStatus: number | null;
  readonly stream: boolean;
  readonly latencyMs: number;
  readonly timeToFirstTokenMs: number | null;
}

/** Version 1 data with the request metadata taken out: the wallet keeps only what money needs. */
function withoutRequest<T extends { request?: unknown }>(v1: T): Omit<T, 'request'> {
  const { request: _request, ...money } = v1;
  return money;
}

const promoDrawSchema = z.object({ grantId: idSchema, amount: naturalSchema });

/**
 * What a wallet event about a request keeps, forever, and why (issue 16; the rest is the request
 * log's, which expires):
 * - requestId: pairs the placement with its settlement, release or expiry, once each;
 * - keyId: spend is per key as well as per account (usage per key, statements, per-key spend
 *   limits decided from the account stream), so the key that spent is a money fact;
 * - model, operation, priceVersion: the identity of the price charged (prices are per model and
 *   operation, versioned), so the cost can be recomputed from the token counts forever;
 * - amounts, token counts and `estimated` (whether the counts charged were reported by the
 *   upstream or counted by the gateway: the basis of the charge), the outcome or release reason.
 * Not kept: endpoint path, upstream, HTTP status, stream flag, latency, time to first token.
 * ReservationPlaced also keeps expiresAt and instanceId, which the expiry of an unended hold needs.
 *
 * Records where the money came from (promo per grant, soonest expiry first, then purchased),
 * so every balance is a fold of events and never recomputed by a rule that may change.
 * `fromPurchased` may exceed what was purchased: the shortfall puts the account in debt.
 */
const reservationSettledFields = {
  requestId: idSchema,
  keyId: idSchema,
  model: idSchema,
  operation: operationSchema,
  reservedAmount: naturalSchema,
  actualCost: naturalSchema,
  fromPromo: z.array(promoDrawSchema),
  fromPurchased: naturalSchema,
  usage: z.object({
    inputTokens: naturalSchema,
    outputTokens: naturalSchema,
    estimated: z.boolean(),
    /** seconds of audio charged, in milliseconds (transcription, translation); absent: none */
    audioMilliseconds: naturalSchema.optional(),
    /** input characters charged (speech); absent: none */
    inputCharacters: naturalSchema.optional(),
  }),
  priceVersion: z.number().int().min(1),
  outcome: settledOutcomeSchema,
};
// Upcasters read stored JSON: money as decimal strings, so the old shape is checked loosely here
// and the current schema validates the result.
const storedJsonObject = z.record(z.string(), z.unknown());
const reservationSettledV1 = storedJsonObject.and(z.object({ request: requestMetadataV1Schema }));
const reservationReleasedV1 = storedJsonObject.and(z.object({ request: requestMetadataV1Schema }));

export const ReservationSettled = defineEvent('ReservationSettled', z.object(reservationSettledFields), {
  version: 2,
  upcasters: [upcaster(1, reservationSettledV1, withoutRequest)],
});

export const ReservationReleased = defineEvent('ReservationReleased', z.object({ requestId: idSchema, amount: naturalSchema, reason: releaseReasonSchema }), {
  version: 2,
  upcasters: [upcaster(1, reservationReleasedV1, withoutRequest)],
});

/**
 * The gateway never came back: its instance's lease lapsed, or expiresAt passed. The hold returns
 * in full, nothing is charged.
 */
export const ReservationExpired = defineEvent('ReservationExpired', z.object({ requestId: idSchema, amount: naturalSchema }));

export const RefundIssued = defineEvent('RefundIssued', z.object({ refundId: idSchema, amount: naturalSchema, paymentReferences: z.array(idSchema).min(1) }));

/**
 * A refund made outside Tollgate (the Stripe Dashboard) took more than was refundable: the money
 * is gone all the same, so the rest is debited from the purchased credit, into debt. Recorded
 * with the RefundIssued of the refundable part (if any) under the same refund id.
 */
export const RefundShortfall = defineEvent('RefundShortfall', z.object({ refundId: idSchema, amount: naturalSchema, paymentReference: idSchema }));

export const payoutMethodSchema = z.enum(['bank_transfer', 'other']);
export type PayoutMethod = z.output<typeof payoutMethodSchema>;

/**
 * An operator paid purchased credit back outside the card (bought by bank transfer, or a card
 * that can no longer take a refund): method, the transfer's reference, the amount, the reason.
 * Limited to what is refundable, like a card refund, so together they never pay back twice.
 */
export const PayoutRecorded = defineEvent(
  'PayoutRecorded',
  z.object({ payoutId: idSchema, method: payoutMethodSchema, reference: z.string().min(1), amount: naturalSchema, reason: z.string().min(1) }),
);

export const AutoTopUpConfigured = defineEvent(
  'AutoTopUpConfigured',
  z.object({ autoTopUp: z.object({ threshold: naturalSchema, amount: naturalSchema }).nullable() }),
);

/**
 * One off-session charge of `amount`: the configured top-up plus `debt`, the purchased credit's
 * debt when it was triggered (a settlement that left the balance negative), so one payment pays
 * the debt and still leaves the configured amount. Events written before debts were charged have
 * no `debt` and decode as 0.
 */
export const AutoTopUpTriggered = defineEvent('AutoTopUpTriggered', z.object({ attemptId: idSchema, amount: naturalSchema, debt: naturalSchema.default(0n) }));

export const AutoTopUpFailed = defineEvent('AutoTopUpFailed', z.object({ attemptId: idSchema, reason: z.string().min(1) }));

/**
 * Adds one reason to the account's set of suspension reasons. The account is active only when
 * that set is empty (a dispute and a failed auto top-up may hold it at the same time).
 */
export const AccountSuspended = defineEvent('AccountSuspended', z.object({ reason: suspensionReasonSchema }));

/**
 * Lifts the suspension reasons in `lifted`; the account is open again once none is left.
 * `lifted` null: every reason. Events written before reasons were a set have no `lifted` and
 * decode as null: an account then had one reason at a time, and reinstatement lifted it.
 */
export const AccountReinstated = defineEvent(
  'AccountReinstated',
  z.object({ reason: reinstatementReasonSchema, lifted: z.array(suspensionReasonSchema).nullable().default(null) }),
);

/**
 * A cardholder disputed a payment (Stripe charge.dispute.created). `amount` is held: neither
 * spendable nor refundable until the dispute closes.
 */
export const DisputeOpened = defineEvent('DisputeOpened', z.object({ disputeId: idSchema, paymentReference: idSchema, amount: naturalSchema }));

export const disputeOutcomeSchema = z.enum(['won', 'lost']);
export type DisputeOutcome = z.output<typeof disputeOutcomeSchema>;

/**
 * The dispute closed (Stripe charge.dispute.closed). The hold ends either way; lost, `debited`
 * leaves the purchased credit (which may go negative: the customer may have spent it) and the
 * journal posts it to dispute_losses. Won, `debited` is 0.
 */
export const DisputeClosed = defineEvent('DisputeClosed', z.object({ disputeId: idSchema, outcome: disputeOutcomeSchema, debited: naturalSchema }));

export const AccountClosed = defineEvent('AccountClosed', z.object({ reason: closureReasonSchema }));

/**
 * An operator terminated the account for breach of the terms, with the reason they gave. Always
 * followed, in the same append, by AccountClosed (reason `terminated_for_breach`). `forAbuse`:
 * the terms refund purchased credit on termination unless it is for abuse.
 */
export const AccountTerminated = defineEvent('AccountTerminated', z.object({ reason: z.string().min(1), forAbuse: z.boolean() }));

/** terminated_for_abuse: at termination; claim_period_over: what nobody claimed within 360 days of closure. */
export const forfeitureReasonSchema = z.enum(['terminated_for_abuse', 'claim_period_over']);
export type ForfeitureReason = z.output<typeof forfeitureReasonSchema>;

/** Purchased credit the customer is no longer owed (it leaves the balance; the journal takes it to income). */
export const PurchasedCreditForfeited = defineEvent('PurchasedCreditForfeited', z.object({ amount: naturalSchema, reason: forfeitureReasonSchema }));

/**
 * The customer (or an operator for them) claimed a closed account's remaining credit within 360
 * days of closure. Moves no money by itself: the claim is paid by card refunds (RefundIssued) and
 * payouts (PayoutRecorded), which may come after the period; what is claimed and not yet paid is
 * never forfeited.
 */
export const RefundClaimed = defineEvent('RefundClaimed', z.object({ claimId: idSchema, amount: naturalSchema }));

/** The per-account key was destroyed by the caller; the ciphertexts in AccountOpened are now noise. */
export const PersonalDataErased = defineEvent('PersonalDataErased', z.object({}));

/**
 * A person asked for their data to be put right (rectification). The new values arrive encrypted
 * with the account's key like AccountOpened's; a field left null is unchanged.
 */
export const PersonalDataCorrected = defineEvent(
  'PersonalDataCorrected',
  z.object({ displayNameCiphertext: z.string().nullable(), emailCiphertext: z.string().nullable() }),
);

export const accountEventDefinitions = [
  AccountOpened,
  TopUpCompleted,
  PromoCreditGranted,
  PromoCreditExpired,
  ReservationPlaced,
  ReservationSettled,
  ReservationReleased,
  ReservationExpired,
  RefundIssued,
  AutoTopUpConfigured,
  AutoTopUpTriggered,
  AutoTopUpFailed,
  AccountSuspended,
  AccountReinstated,
  AccountClosed,
  PersonalDataErased,
  PersonalDataCorrected,
  AccountTerminated,
  PurchasedCreditForfeited,
  PromoCreditRevoked,
  MaximumBalanceSet,
  DisputeOpened,
  DisputeClosed,
  RefundShortfall,
  PayoutRecorded,
  RefundClaimed,
] as const;

export type AccountEvent = EventOf<(typeof accountEventDefinitions)[number]>;
export type AccountEventType = AccountEvent['type'];
export type AccountEventOfType<T extends AccountEventType> = Extract<AccountEvent, { type: T }>;
