import { erasureDueAt } from '../../../projections/retention/retention';
import { actorOfKey } from '../../../src/api-keys';
import express, { type Response, type Router } from 'express';
import { z } from 'zod';
import { accountStreamId } from '../../../domain/account';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { formatUsd } from '../../../domain/money';
import { adminMetadata, commandMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import { MICRO_USD_PER_CENT } from '../../../src/payments/amounts';
import { refundablePayments, refundCredit, type RefundOutcome } from '../../../src/payments/refunds';
import { claimRefund, type ClaimOutcome, type RefundClaimAuthoriser } from '../../../src/payments/claims';
import {
  billingDocuments,
  InvoiceListCache,
  invoiceDocumentUrl,
  registerInvoiceListInvalidation,
  setVatId,
  vatIdOf,
  type BillingDocument,
  type VatId,
} from '../../../src/payments/invoices';
import { startTopUp } from '../../../src/payments/top-ups';
import { registerPaymentHandlers, StripeWebhookDispatcher, StripeWebhookReceiver } from '../../../src/payments/webhooks';
import { StripeCustomers } from '../../payments/customers';
import { stripeClientFromConfig, type StripeClient } from '../../payments/stripe-client';
import { verifyStripeEvent } from '../../payments/webhook-events';
import { keyOf } from '../auth';
import { sessionRefundClaimAuthoriser } from '../dashboard/identity-routes';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import {
  AccountReader,
  accountNotFound,
  authenticated,
  balanceView,
  isId,
  parseInput,
  positiveUsdSchema,
  refused,
  revokeKeysOfClosedAccount,
  shortTextSchema,
  type GatewayParts,
} from './account';

/**
 * Payments with Stripe: top-ups through Checkout, the webhook that credits them (exactly once
 * per PaymentIntent), refunds of purchased credit (customer and admin) and account closure.
 */

/** A card is charged in whole cents: "10.005" is refused rather than rounded. */
const cardUsdSchema = positiveUsdSchema.refine((amount) => amount % MICRO_USD_PER_CENT === 0n, 'expected whole cents (at most 2 decimals) for a card payment');
const returnUrlSchema = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).max(2_000, 'at most 2000 characters');

export const topUpSchema = z.object({ amount_usd: cardUsdSchema, success_url: returnUrlSchema.optional(), cancel_url: returnUrlSchema.optional() });
export const refundSchema = z.object({ amount_usd: cardUsdSchema.optional() });
export const adminRefundSchema = z.object({ amount_usd: cardUsdSchema.optional(), reason: shortTextSchema });
/** EU VAT id: country code and number, spaces and dots dropped (Stripe checks the rest, and the registry). */
export const vatIdSchema = z.object({
  vat_id: z
    .string({ error: 'expected a VAT id such as DE123456789, or null' })
    .transform((v) => v.replace(/[\s.]/g, '').toUpperCase())
    .pipe(z.string().regex(/^[A-Z]{2}[0-9A-Z]{2,13}$/, 'expected an EU VAT id: two-letter country code and 2-13 letters or digits'))
    .nullable(),
});
export const refundClaimSchema = z.object({ amount_usd: positiveUsdSchema.optional() });
export const adminRefundClaimSchema = z.object({ amount_usd: positiveUsdSchema.optional(), reason: shortTextSchema });
export const forfeitSchema = z.object({ reason: shortTextSchema });
export const terminateSchema = z.object({
  reason: shortTextSchema,
  /** the terms refund purchased credit on termination unless it is for abuse */
  for_abuse: z.boolean({ error: 'expected true or false' }).default(false),
});

export function paymentsNotConfigured(): ApiError {
  return new ApiError(503, 'server_error', 'payments_not_configured', null, 'Payments are not configured on this gateway (STRIPE_SECRET_KEY).');
}

/** What the billing routes share with other payment capabilities (auto top-up registers its webhook handlers here). */
export interface Payments {
  readonly stripe: StripeClient;
  readonly customers: StripeCustomers;
  readonly webhooks: StripeWebhookDispatcher;
}

export interface BillingRouteOptions {
  /** a client to use instead of one from the config (STRIPE_SECRET_KEY, STRIPE_API_BASE) */
  readonly stripe?: StripeClient;
  /** further webhook handlers and anything else built on the same client, called once at mount */
  readonly extensions?: readonly ((payments: Payments, gateway: GatewayParts) => void)[];
  /**
   * Who may claim a closed account's credit on POST /v1/account/refund-claims (its API keys were
   * revoked at closure). By default the dashboard session of a person whose role in the account
   * handles billing (owner or billing member): `sessionRefundClaimAuthoriser`.
   */
  readonly refundClaimAuthoriser?: RefundClaimAuthoriser;
}

/** The mount for src/routes.ts; `billingRoutes({ extensions })` when other capabilities hook in. */
export function billingRoutes(options: BillingRouteOptions = {}): RouteMount {
  return (router, gateway) => mountBilling(router, gateway, options);
}

export const mountBillingRoutes: RouteMount = billingRoutes();

function mountBilling(router: Router, gateway: GatewayParts, options: BillingRouteOptions): void {
  const stripe = options.stripe ?? stripeClientFromConfig(gateway.config);
  const payments: Payments | null = stripe
    ? {
        stripe,
        customers: new StripeCustomers(gateway.database.pool, stripe),
        webhooks: new StripeWebhookDispatcher(),
      }
    : null;
  // The billing page's invoice list, from Stripe, kept a short while (src/payments/invoices.ts).
  const invoiceCache = payments ? new InvoiceListCache() : null;
  if (payments) {
    registerPaymentHandlers(payments.webhooks, { ledger: gateway.ledger, customers: payments.customers, stripe: payments.stripe });
    registerInvoiceListInvalidation(payments.webhooks, invoiceCache!);
    for (const extend of options.extensions ?? []) extend(payments, gateway);
  }
  const receiver = payments ? new StripeWebhookReceiver(gateway.database.pool, payments.webhooks, gateway.log) : null;
  const reader = new AccountReader(gateway);
  const claimAuthoriser = options.refundClaimAuthoriser ?? sessionRefundClaimAuthoriser(gateway.identity);
  const write = authenticated(gateway.keys, 'account_write');
  const admin = authenticated(gateway.keys, 'admin');
  const customerMetadata = (res: Response): CommandMetadata => commandMetadata(actorOfKey(keyOf(res)), requestIdOf(res));
  const configured = (): Payments => {
    if (!payments) throw paymentsNotConfigured();
    return payments;
  };

  router.post('/v1/billing/top-ups', write, async (req, res) => {
    const { stripe, customers } = configured();
    const body = parseInput(topUpSchema, req.body);
    const accountId = keyOf(res).accountId;
    const origin = `${req.protocol}://${req.get('host') ?? 'localhost'}`;
    const started = await startTopUp(
      { ledger: gateway.ledger, stripe, customers, policy: gateway.policy },
      {
        accountId,
        amount: body.amount_usd,
        successUrl: body.success_url ?? `${origin}/?top_up=success&session_id={CHECKOUT_SESSION_ID}`,
        cancelUrl: body.cancel_url ?? `${origin}/?top_up=cancelled`,
        automaticTax: gateway.config.STRIPE_AUTOMATIC_TAX,
      },
    );
    if (!started.ok) throw refused(started.error);
    res.status(201).json({
      object: 'billing.top_up',
      account_id: accountId,
      amount_usd: formatUsd(started.value.amount),
      checkout_session_id: started.value.checkoutSessionId,
      url: started.value.url,
    });
  });

  router.post('/v1/billing/refunds', write, async (req, res) => {
    const { stripe } = configured();
    const body = parseInput(refundSchema, req.body);
    await answerRefund(
      res,
      keyOf(res).accountId,
      await refundCredit(
        { ledger: gateway.ledger, stripe },
        { accountId: keyOf(res).accountId, amount: body.amount_usd ?? null, metadata: customerMetadata(res) },
      ),
    );
  });

  router.post('/admin/accounts/:id/refunds', admin, async (req, res) => {
    const { stripe } = configured();
    const accountId = String(req.params['id']);
    if (!isId(accountId)) throw accountNotFound();
    const body = parseInput(adminRefundSchema, req.body);
    // The admin's reason travels as the correlation id, as with manual top-ups. A closed account's
    // credit too (the customer's keys went with the closure), within the claim period.
    const metadata = { ...adminMetadata(keyOf(res).keyId, `reason: ${body.reason}`), causationId: requestIdOf(res) };
    await answerRefund(
      res,
      accountId,
      await refundCredit({ ledger: gateway.ledger, stripe }, { accountId, amount: body.amount_usd ?? null, metadata, closedAccount: true }),
    );
  });

  // Invoices and receipts: Stripe's invoices of the account's payments and its manual credits' receipts.
  const read = authenticated(gateway.keys, 'account_read');
  router.get('/v1/billing/invoices', read, async (_req, res) => {
    const accountId = keyOf(res).accountId;
    const documents = await billingDocuments(
      { stripe: payments?.stripe ?? null, customers: payments?.customers ?? null, store: gateway.store, cache: invoiceCache },
      accountId,
    );
    res.json({ object: 'list', data: documents.map(documentView) });
  });

  router.get('/v1/billing/invoices/:id/pdf', read, async (req, res) => {
    const { stripe, customers } = configured();
    const invoiceId = String(req.params['id']);
    const url = isId(invoiceId) ? await invoiceDocumentUrl({ stripe, customers }, keyOf(res).accountId, invoiceId) : null;
    if (url === null) throw new ApiError(404, 'invalid_request_error', 'invoice_not_found', 'id', 'No invoice with this id for this account.');
    // The URL in the body too, for a client that does not follow redirects.
    res.status(302).location(url).json({ url });
  });

  router.get('/v1/billing/tax-id', read, async (_req, res) => {
    const { stripe, customers } = configured();
    res.json(vatIdView(await vatIdOf({ stripe, customers }, keyOf(res).accountId)));
  });

  router.put('/v1/billing/tax-id', write, async (req, res) => {
    const { stripe, customers } = configured();
    const body = parseInput(vatIdSchema, req.body);
    const set = await setVatId({ stripe, customers }, keyOf(res).accountId, body.vat_id);
    if (!set.ok) throw new ApiError(400, 'invalid_request_error', 'vat_id_invalid', 'vat_id', 'Stripe does not accept this EU VAT id.');
    res.json(vatIdView(set.value));
  });

  // Refund claims after closure: within 360 days the remaining credit is claimed, then paid to the
  // cards it came from as far as they take it; the rest stays outstanding for a payout.
  router.post('/v1/account/refund-claims', async (req, res) => {
    const claimant = await claimAuthoriser.authorise(req);
    if (!claimant) {
      throw new ApiError(
        403,
        'invalid_request_error',
        'refund_claim_not_authorised',
        null,
        "A refund claim needs the dashboard sign-in of the account's owner or a billing member (a closed account's API keys were revoked). Sign in to the dashboard, or ask support to claim for you.",
      );
    }
    const body = parseInput(refundClaimSchema, req.body);
    const metadata = commandMetadata(claimant.actor, requestIdOf(res));
    answerClaim(
      res,
      claimant.accountId,
      await claimRefund(
        { ledger: gateway.ledger, stripe: payments?.stripe ?? null },
        { accountId: claimant.accountId, amount: body.amount_usd ?? null, metadata },
      ),
    );
  });

  router.post('/admin/accounts/:id/refund-claims', admin, async (req, res) => {
    const accountId = String(req.params['id']);
    if (!isId(accountId) || !(await reader.state(accountId))) throw accountNotFound();
    const body = parseInput(adminRefundClaimSchema, req.body);
    const metadata = { ...adminMetadata(keyOf(res).keyId, `reason: ${body.reason}`), causationId: requestIdOf(res) };
    answerClaim(
      res,
      accountId,
      await claimRefund({ ledger: gateway.ledger, stripe: payments?.stripe ?? null }, { accountId, amount: body.amount_usd ?? null, metadata }),
    );
  });

  // What the schedule does 360 days after closure, for one account now (refused before the period ends).
  router.post('/admin/accounts/:id/forfeit-unclaimed', admin, async (req, res) => {
    const accountId = String(req.params['id']);
    if (!isId(accountId) || !(await reader.state(accountId))) throw accountNotFound();
    const body = parseInput(forfeitSchema, req.body);
    const metadata = { ...adminMetadata(keyOf(res).keyId, `reason: ${body.reason}`), causationId: requestIdOf(res) };
    const result = await gateway.ledger.accounts.handle(accountStreamId(accountId), { type: 'ForfeitUnclaimedCredit', data: {}, metadata });
    if (!result.ok) throw refused(result.error);
    const forfeited = result.events.reduce((sum, { event }) => sum + (event.type === 'PurchasedCreditForfeited' ? event.data.amount : 0n), 0n);
    res.json({ account_id: accountId, forfeited_usd: formatUsd(forfeited), ...balanceView(result.state, metadata.now) });
  });

  function answerClaim(res: Response, accountId: string, result: Awaited<ReturnType<typeof claimRefund>>): void {
    if (!result.ok) throw refused(result.error);
    res.status(result.value.claimed > 0n ? 201 : 200).json(claimView(accountId, result.value));
  }

  const closedAt = (events: readonly { event: { type: string; metadata: { occurredAt: string } } }[]) =>
    events.find((e) => e.event.type === 'AccountClosed')?.event.metadata.occurredAt ?? null;

  router.post('/v1/account/close', write, async (_req, res) => {
    const accountId = keyOf(res).accountId;
    const loaded = await reader.state(accountId);
    if (!loaded) throw accountNotFound();
    const { state } = loaded;
    if (state.status === 'closed') throw refused({ error: 'account_closed' });
    // Checked before any money moves, so a refused closure refunds nothing.
    if (state.openReservations.size > 0) throw refused({ error: 'account_has_open_reservations', openReservations: state.openReservations.size });
    let refund: RefundOutcome | null = null;
    if (payments) {
      const refunded = await refundCredit({ ledger: gateway.ledger, stripe: payments.stripe }, { accountId, amount: null, metadata: customerMetadata(res) });
      if (!refunded.ok) throw refused(refunded.error);
      refund = refunded.value;
      if (refund.parts.some((p) => p.status !== 'recorded')) {
        // Not closed until the money is back: the customer (or Stripe's webhook) can finish it.
        res
          .status(refund.parts.some((p) => p.status === 'pending') ? 202 : 502)
          .json({ account_id: accountId, status: state.status, refund: refundView(refund) });
        return;
      }
    } else if ((await refundablePayments(gateway.store, accountId)).some((p) => p.remaining > 0n)) {
      throw paymentsNotConfigured();
    }
    const closed = await gateway.ledger.accounts.handle(accountStreamId(accountId), {
      type: 'CloseAccount',
      data: { reason: 'customer_request' },
      metadata: customerMetadata(res),
    });
    if (!closed.ok) throw refused(closed.error);
    const keys = await revokeKeysOfClosedAccount(gateway, reader, accountId, customerMetadata(res));
    res.json({
      account_id: accountId,
      status: closed.state.status,
      refund: refund && refundView(refund),
      keys_revoked: keys.revoked.length,
      // When the retention worker crypto-shreds the account's personal data (and its only-member users').
      personal_data_erase_due_at: closedAt(closed.events) === null ? null : erasureDueAt(closedAt(closed.events)!, 'customer_request'),
      ...balanceView(closed.state, new Date().toISOString()),
    });
  });

  /**
   * Termination for breach: the account closes at once (every key revoked), then, unless it is for
   * abuse, the purchased credit goes back to the cards it came from. A refund Stripe has not
   * confirmed is recorded by its webhook later; what cannot go back to a card stays owed on the
   * closed account. For abuse the remaining purchased credit is forfeited in the same append.
   */
  router.post('/admin/accounts/:id/terminate', admin, async (req, res) => {
    const accountId = String(req.params['id']);
    if (!isId(accountId) || !(await reader.state(accountId))) throw accountNotFound();
    const body = parseInput(terminateSchema, req.body);
    const metadata = { ...adminMetadata(keyOf(res).keyId, requestIdOf(res)), causationId: requestIdOf(res) };
    const terminated = await gateway.ledger.accounts.handle(accountStreamId(accountId), {
      type: 'TerminateAccount',
      data: { reason: body.reason, forAbuse: body.for_abuse },
      metadata,
    });
    if (!terminated.ok) throw refused(terminated.error);
    const keys = await revokeKeysOfClosedAccount(gateway, reader, accountId, metadata);
    let refund: RefundOutcome | null = null;
    if (!body.for_abuse && payments) {
      const refunded = await refundCredit({ ledger: gateway.ledger, stripe: payments.stripe }, { accountId, amount: null, metadata, closedAccount: true });
      if (refunded.ok && refunded.value.parts.length > 0) refund = refunded.value;
      if (!refunded.ok) gateway.log.error({ accountId, reason: refunded.error.error }, 'terminated account: the refund of purchased credit was refused');
    }
    const loaded = await reader.state(accountId);
    res.json({
      account_id: accountId,
      status: 'closed',
      for_abuse: body.for_abuse,
      keys_revoked: keys.revoked.length,
      refund: refund && refundView(refund),
      // termination is the only forfeiture so far, so the account's total is this one
      forfeited_usd: formatUsd(terminated.state.totalForfeited),
      ...(loaded ? balanceView(loaded.state, new Date().toISOString()) : {}),
    });
  });

  router.post('/webhooks/stripe', express.raw({ type: 'application/json', limit: '1mb' }), async (req, res) => {
    const secret = gateway.config.STRIPE_WEBHOOK_SECRET;
    if (!payments || !receiver || !secret) throw paymentsNotConfigured();
    const verified = verifyStripeEvent(payments.stripe, req.body, req.get('stripe-signature'), secret, gateway.config.STRIPE_WEBHOOK_TOLERANCE_S);
    if (!verified.ok) {
      gateway.log.warn({ reason: verified.reason }, 'stripe webhook rejected');
      throw new ApiError(
        400,
        'invalid_request_error',
        verified.reason,
        null,
        'Webhook rejected: the Stripe-Signature does not verify, or the event is malformed.',
      );
    }
    const receipt = await receiver.receive(verified.event);
    // 200 for every verified event, credited or not: a retry cannot change an unknown account.
    res.json({ received: true, event_id: verified.event.id, duplicate: receipt.duplicate, outcome: receipt.outcome });
  });

  async function answerRefund(res: Response, accountId: string, result: Awaited<ReturnType<typeof refundCredit>>): Promise<void> {
    if (!result.ok) throw refused(result.error);
    const refund = result.value;
    for (const part of refund.parts.filter((p) => p.status === 'not_recorded')) {
      gateway.log.error(
        { accountId, refundId: refund.refundId, paymentIntentId: part.paymentIntentId, stripeRefundId: part.stripeRefundId },
        'stripe refunded but the ledger refused the refund: needs an operator',
      );
    }
    const loaded = await reader.state(accountId);
    const status = refund.parts.some((p) => p.status === 'failed' || p.status === 'not_recorded')
      ? 502
      : refund.parts.some((p) => p.status === 'pending')
        ? 202
        : 200;
    res.status(status).json({ account_id: accountId, ...refundView(refund), ...(loaded ? balanceView(loaded.state, new Date().toISOString()) : {}) });
  }
}

function documentView(d: BillingDocument) {
  return {
    object: d.kind === 'invoice' ? 'billing.invoice' : 'billing.receipt',
    id: d.id,
    number: d.number,
    status: d.status,
    subtotal_usd: formatUsd(d.subtotal),
    tax_usd: formatUsd(d.tax),
    total_usd: formatUsd(d.total),
    reverse_charge: d.reverseCharge,
    reference: d.reference,
    created_at: d.createdAt,
    download_url: d.documentUrl !== null ? `/v1/billing/invoices/${d.id}/pdf` : null,
    document_url: d.documentUrl,
  };
}

function vatIdView(vat: VatId | null) {
  return {
    object: 'billing.tax_id',
    vat_id: vat?.value ?? null,
    verification: vat?.verification ?? null,
    reverse_charge: vat?.verification === 'verified',
  };
}

function claimView(accountId: string, claim: ClaimOutcome) {
  return {
    object: 'billing.refund_claim',
    account_id: accountId,
    claim_id: claim.claimId,
    claimed_usd: formatUsd(claim.claimed),
    refund: claim.refund && refundView(claim.refund),
    outstanding_usd: formatUsd(claim.outstanding),
  };
}

function refundView(refund: RefundOutcome) {
  return {
    object: 'billing.refund',
    refund_id: refund.refundId,
    requested_usd: formatUsd(refund.requested),
    refunded_usd: formatUsd(refund.parts.filter((p) => p.status === 'recorded').reduce((sum, p) => sum + p.amount, 0n)),
    parts: refund.parts.map((p) => ({
      payment_intent: p.paymentIntentId,
      amount_usd: formatUsd(p.amount),
      stripe_refund_id: p.stripeRefundId,
      status: p.status,
    })),
  };
}
