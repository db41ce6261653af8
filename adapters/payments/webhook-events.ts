import { z } from 'zod';
import type { StripeClient } from './stripe-client';

/**
 * Stripe webhook events as Tollgate reads them: the signature is checked by the `stripe`
 * library against the raw body, then the envelope and each object Tollgate acts on are parsed
 * with zod (only the fields used; Stripe adds fields freely).
 */

export const stripeEventSchema = z.object({
  id: z.string().min(1),
  type: z.string().min(1),
  created: z.number().int(),
  data: z.object({ object: z.record(z.string(), z.unknown()) }),
});
export type StripeEvent = z.output<typeof stripeEventSchema>;

const metadataSchema = z
  .record(z.string(), z.string())
  .nullish()
  .transform((m) => m ?? {});

// Stripe sends an id, or the object when expanded.
const reference = z
  .union([z.string(), z.object({ id: z.string() })])
  .nullish()
  .transform((v) => (v === null || v === undefined ? null : typeof v === 'string' ? v : v.id));

const cents = z.number().int().min(0);

export const checkoutSessionSchema = z.object({
  id: z.string().min(1),
  object: z.literal('checkout.session'),
  mode: z.string(),
  payment_status: z.string(),
  customer: reference,
  payment_intent: reference,
  amount_subtotal: cents.nullish(),
  currency: z.string().nullish(),
  metadata: metadataSchema,
});
export type CheckoutSessionObject = z.output<typeof checkoutSessionSchema>;

export const paymentIntentSchema = z.object({
  id: z.string().min(1),
  object: z.literal('payment_intent'),
  status: z.string(),
  amount: cents,
  amount_received: cents,
  currency: z.string(),
  customer: reference,
  payment_method: reference,
  metadata: metadataSchema,
});
export type PaymentIntentObject = z.output<typeof paymentIntentSchema>;

/** An invoice (invoice.paid): Tollgate reads only those it made, by their metadata. */
export const invoiceSchema = z.object({
  id: z.string().min(1),
  object: z.literal('invoice'),
  status: z.string().nullable(),
  currency: z.string(),
  customer: reference,
  subtotal: cents,
  amount_paid: cents,
  metadata: metadataSchema,
});
export type InvoiceObject = z.output<typeof invoiceSchema>;

export const refundSchema = z.object({
  id: z.string().min(1),
  object: z.literal('refund'),
  status: z.string().nullish(),
  amount: cents,
  payment_intent: reference,
  metadata: metadataSchema,
});
export type RefundObject = z.output<typeof refundSchema>;

/** charge.dispute.*: `status` on close is won, lost, or warning_closed (an inquiry that never became a chargeback). */
export const disputeSchema = z.object({
  id: z.string().min(1),
  object: z.literal('dispute'),
  amount: cents,
  currency: z.string(),
  status: z.string(),
  charge: reference,
  payment_intent: reference,
});
export type DisputeObject = z.output<typeof disputeSchema>;

export type VerifiedEvent =
  | { readonly ok: true; readonly event: StripeEvent }
  | { readonly ok: false; readonly reason: 'missing_signature' | 'invalid_signature' | 'malformed_event' };

/**
 * Checks `Stripe-Signature` against the raw body (a wrong, missing or too old signature is
 * `invalid_signature`), then parses the envelope.
 */
export function verifyStripeEvent(
  stripe: StripeClient,
  rawBody: unknown,
  signature: string | undefined,
  secret: string,
  toleranceSeconds: number,
): VerifiedEvent {
  if (!signature) return { ok: false, reason: 'missing_signature' };
  if (!Buffer.isBuffer(rawBody) || rawBody.length === 0) return { ok: false, reason: 'malformed_event' };
  let constructed: unknown;
  try {
    constructed = stripe.webhooks.constructEvent(rawBody, signature, secret, toleranceSeconds);
  } catch (error) {
    // StripeSignatureVerificationError; a body that is not JSON after a valid signature is malformed
    return { ok: false, reason: (error as { type?: unknown }).type === 'StripeSignatureVerificationError' ? 'invalid_signature' : 'malformed_event' };
  }
  const parsed = stripeEventSchema.safeParse(constructed);
  return parsed.success ? { ok: true, event: parsed.data } : { ok: false, reason: 'malformed_event' };
}
