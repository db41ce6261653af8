import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { accountStreamId } from '../../domain/account';
import type { StripeCustomers } from '../../adapters/payments/customers';
import {
  checkoutSessionSchema,
  disputeSchema,
  invoiceSchema,
  paymentIntentSchema,
  refundSchema,
  type StripeEvent,
} from '../../adapters/payments/webhook-events';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import { systemMetadata } from '../command-metadata';
import type { Ledger } from '../ledger';
import { microUsdOfCents } from './amounts';

/**
 * What came of one webhook event, recorded with its id in stripe_webhook_events.
 * `unknown_account`: the payment names no Tollgate account we know; nothing is credited.
 */
export interface WebhookOutcome {
  readonly outcome: string;
  readonly accountId: string | null;
  /** ids worth a log line (Stripe object ids only; never card data) */
  readonly ids?: Readonly<Record<string, string | null>>;
}

export type WebhookHandler = (event: StripeEvent) => Promise<WebhookOutcome>;

/** Routes verified events to handlers by type. Several handlers may share a type; all run, in order. */
export class StripeWebhookDispatcher {
  private readonly handlers = new Map<string, WebhookHandler[]>();

  on(type: string, handler: WebhookHandler): this {
    this.handlers.set(type, [...(this.handlers.get(type) ?? []), handler]);
    return this;
  }

  async dispatch(event: StripeEvent): Promise<WebhookOutcome> {
    const handlers = this.handlers.get(event.type) ?? [];
    if (handlers.length === 0) return { outcome: 'ignored', accountId: null };
    const outcomes: WebhookOutcome[] = [];
    for (const handler of handlers) outcomes.push(await handler(event));
    const decisive = outcomes.filter((o) => o.outcome !== 'ignored');
    if (decisive.length === 0) return { outcome: 'ignored', accountId: null };
    return {
      outcome: decisive.map((o) => o.outcome).join(','),
      accountId: decisive.find((o) => o.accountId !== null)?.accountId ?? null,
      ids: Object.assign({}, ...decisive.map((o) => o.ids ?? {})),
    };
  }
}

export interface WebhookReceipt extends WebhookOutcome {
  /** the event id was already handled: nothing was done again */
  readonly duplicate: boolean;
}

/**
 * Receives a verified event exactly once per event id: a recorded id is answered from the
 * record. The ledger is idempotent too (payment reference, refund id), so a crash between the
 * ledger append and the record only means the redelivery is decided again, to no effect.
 * A handler that throws records nothing, so Stripe's retry gets another chance.
 */
export class StripeWebhookReceiver {
  constructor(
    private readonly pool: Pool,
    private readonly dispatcher: StripeWebhookDispatcher,
    private readonly log: Logger,
  ) {}

  async receive(event: StripeEvent): Promise<WebhookReceipt> {
    const seen = await this.pool.query<{ outcome: string; account_id: string | null }>(
      'SELECT outcome, account_id FROM stripe_webhook_events WHERE event_id = $1',
      [event.id],
    );
    if (seen.rows[0]) return { outcome: seen.rows[0].outcome, accountId: seen.rows[0].account_id, duplicate: true };
    const outcome = await this.dispatcher.dispatch(event);
    await this.pool.query('INSERT INTO stripe_webhook_events (event_id, type, account_id, outcome) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING', [
      event.id,
      event.type,
      outcome.accountId,
      outcome.outcome,
    ]);
    const fields = { stripeEventId: event.id, stripeEventType: event.type, accountId: outcome.accountId, outcome: outcome.outcome, ...outcome.ids };
    if (outcome.outcome.includes('unknown_account')) {
      this.log.warn(fields, 'stripe webhook for no known account: recorded, not credited');
    } else if (outcome.outcome.includes('refused:')) {
      this.log.error(fields, 'stripe webhook refused by the ledger: money moved at Stripe without a ledger entry, needs an operator');
    } else {
      this.log.info(fields, 'stripe webhook handled');
    }
    return { ...outcome, duplicate: false };
  }
}

export interface PaymentHandlerDeps {
  readonly ledger: Ledger;
  readonly customers: StripeCustomers;
  /** to read a disputed PaymentIntent (its customer, and the credit it bought) */
  readonly stripe: StripeClient;
}

/**
 * The handlers that move money on the ledger:
 * - checkout.session.completed / checkout.session.async_payment_succeeded (paid) and
 *   payment_intent.succeeded complete the top-up with the PaymentIntent id as the payment
 *   reference, so however many of them arrive, in whatever order, the payment credits once;
 * - refund.created / refund.updated with status succeeded record a refund Tollgate asked for
 *   (its refund id travels in the refund's metadata);
 *   A refund made in the Stripe Dashboard is applied by its Stripe refund id (RecordProviderRefund);
 * - invoice.paid of an auto top-up's invoice credits its net amount (metadata credit_cents) by the
 *   PaymentIntent that paid it, the same reference payment_intent.succeeded uses: credited once;
 * - charge.dispute.created / charge.dispute.closed hold and settle a disputed payment, by
 *   dispute id, so redelivery and any order of the two apply each step once.
 */
export function registerPaymentHandlers(dispatcher: StripeWebhookDispatcher, deps: PaymentHandlerDeps): StripeWebhookDispatcher {
  const credit = creditTopUp(deps);
  const checkoutPaid: WebhookHandler = async (event) => {
    const session = checkoutSessionSchema.parse(event.data.object);
    if (session.mode !== 'payment') return { outcome: 'ignored', accountId: null };
    const ids = { checkoutSessionId: session.id, customerId: session.customer, paymentIntentId: session.payment_intent };
    if (session.payment_status !== 'paid') return { outcome: 'not_paid', accountId: null, ids };
    if (session.payment_intent === null || session.currency !== 'usd') return { outcome: 'not_a_usd_payment', accountId: null, ids };
    const creditCents = creditCentsOf(session.metadata, session.amount_subtotal ?? null);
    if (creditCents === null) return { outcome: 'no_credit_amount', accountId: null, ids };
    return credit(event, { customerId: session.customer, metadata: session.metadata, paymentIntentId: session.payment_intent, creditCents, ids });
  };
  dispatcher.on('checkout.session.completed', checkoutPaid);
  dispatcher.on('checkout.session.async_payment_succeeded', checkoutPaid);

  dispatcher.on('payment_intent.succeeded', async (event) => {
    const intent = paymentIntentSchema.parse(event.data.object);
    const ids = { paymentIntentId: intent.id, customerId: intent.customer };
    if (intent.currency !== 'usd') return { outcome: 'not_a_usd_payment', accountId: null, ids };
    const creditCents = creditCentsOf(intent.metadata, intent.amount_received);
    if (creditCents === null) return { outcome: 'no_credit_amount', accountId: null, ids };
    // The credit is the amount net of tax; what was received must cover it.
    if (intent.amount_received < creditCents) return { outcome: 'amount_not_received', accountId: null, ids };
    if (intent.customer !== null && intent.payment_method !== null && (await deps.customers.accountOf(intent.customer)) !== null) {
      await deps.customers.rememberPaymentMethod(intent.customer, intent.payment_method);
    }
    return credit(event, {
      customerId: intent.customer,
      metadata: intent.metadata,
      paymentIntentId: intent.id,
      creditCents,
      // set by the auto top-up process manager on its off-session PaymentIntents
      autoTopUpAttemptId: intent.metadata['tollgate_auto_top_up_attempt_id'],
      ids,
    });
  });

  // An auto top-up's invoice, paid: credits the NET amount (credit_cents) once, by the PaymentIntent
  // that paid it, so this and that PaymentIntent's payment_intent.succeeded credit once between them,
  // in either order. Other invoices (Checkout's, credited by their session) are not Tollgate's to credit here.
  dispatcher.on('invoice.paid', async (event) => {
    const invoice = invoiceSchema.parse(event.data.object);
    const attemptId = invoice.metadata['tollgate_auto_top_up_attempt_id'];
    const ids = { invoiceId: invoice.id, customerId: invoice.customer };
    if (attemptId === undefined) return { outcome: 'ignored', accountId: null };
    if (invoice.status !== 'paid' || invoice.currency !== 'usd') return { outcome: 'not_paid', accountId: null, ids };
    const creditCents = creditCentsOf(invoice.metadata, null);
    if (creditCents === null) return { outcome: 'no_credit_amount', accountId: null, ids };
    if (invoice.amount_paid < creditCents) return { outcome: 'amount_not_received', accountId: null, ids };
    const paymentIntentId = await paymentIntentOfInvoice(deps, invoice.id);
    if (paymentIntentId === null) return { outcome: 'no_payment_intent', accountId: null, ids };
    return credit(event, {
      customerId: invoice.customer,
      metadata: invoice.metadata,
      paymentIntentId,
      creditCents,
      autoTopUpAttemptId: attemptId,
      ids: { ...ids, paymentIntentId },
    });
  });

  const dashboardRefund = async (
    event: StripeEvent,
    stripeRefundId: string,
    paymentIntentId: string,
    amountCents: number,
    ids: Readonly<Record<string, string | null>>,
  ): Promise<WebhookOutcome> => {
    const found = await paymentOf(deps, paymentIntentId);
    if (found === null) return { outcome: 'unknown_account', accountId: null, ids };
    const result = await deps.ledger.accounts.handle(accountStreamId(found.accountId), {
      type: 'RecordProviderRefund',
      // Its own id space: a Stripe refund id can never collide with one Tollgate made up.
      data: { refundId: `stripe:${stripeRefundId}`, paymentReference: paymentIntentId, amount: microUsdOfCents(Math.min(amountCents, found.creditCents)) },
      metadata: systemMetadata('stripe-webhook', event.id),
    });
    if (!result.ok) return { outcome: `refused:${result.error.error}`, accountId: found.accountId, ids };
    if (result.events.length === 0) return { outcome: 'already_applied', accountId: found.accountId, ids };
    return {
      outcome: result.events.some((e) => e.event.type === 'RefundShortfall') ? 'dashboard_refund_recorded_with_shortfall' : 'dashboard_refund_recorded',
      accountId: found.accountId,
      ids,
    };
  };

  const refundSucceeded: WebhookHandler = async (event) => {
    const refund = refundSchema.parse(event.data.object);
    const refundId = refund.metadata['tollgate_refund_id'];
    const accountId = refund.metadata['account_id'];
    const ids = { refundId: refund.id, paymentIntentId: refund.payment_intent };
    if (refund.payment_intent === null) return { outcome: 'refund_not_of_a_payment', accountId: null, ids };
    // A refund made elsewhere (the Stripe Dashboard): applied once Stripe says it succeeded, by its Stripe id.
    if (refundId === undefined || accountId === undefined) {
      if (refund.status !== 'succeeded') return { outcome: `dashboard_refund_${refund.status ?? 'unknown'}`, accountId: null, ids };
      return dashboardRefund(event, refund.id, refund.payment_intent, refund.amount, ids);
    }
    if (refund.status !== 'succeeded') return { outcome: `refund_${refund.status ?? 'unknown'}`, accountId, ids };
    const result = await deps.ledger.accounts.handle(accountStreamId(accountId), {
      type: 'IssueRefund',
      data: { refundId, amount: microUsdOfCents(refund.amount), paymentReferences: [refund.payment_intent] },
      metadata: systemMetadata('stripe-webhook', event.id),
    });
    if (!result.ok) return { outcome: `refused:${result.error.error}`, accountId, ids };
    return { outcome: result.events.length > 0 ? 'refund_recorded' : 'already_applied', accountId, ids };
  };
  dispatcher.on('refund.created', refundSucceeded);
  dispatcher.on('refund.updated', refundSucceeded);

  const dispute = disputeHandler(deps);
  dispatcher.on('charge.dispute.created', (event) => dispute(event, 'created'));
  dispatcher.on('charge.dispute.closed', (event) => dispute(event, 'closed'));
  return dispatcher;
}

/**
 * The account is the one linked to the disputed PaymentIntent's customer (read from Stripe: a
 * dispute names no customer). The amount held or lost is the disputed amount, at most the
 * credit that payment bought: the tax on it was never the customer's credit.
 */
function disputeHandler(deps: PaymentHandlerDeps) {
  return async (event: StripeEvent, step: 'created' | 'closed'): Promise<WebhookOutcome> => {
    const dispute = disputeSchema.parse(event.data.object);
    const ids = { disputeId: dispute.id, paymentIntentId: dispute.payment_intent, chargeId: dispute.charge };
    if (dispute.currency !== 'usd' || dispute.payment_intent === null) return { outcome: 'not_a_usd_payment', accountId: null, ids };
    if (step === 'closed' && !['won', 'lost', 'warning_closed'].includes(dispute.status)) return { outcome: `dispute_${dispute.status}`, accountId: null, ids };
    const found = await paymentOf(deps, dispute.payment_intent);
    if (found === null) return { outcome: 'unknown_account', accountId: null, ids };
    const { accountId } = found;
    const data = { disputeId: dispute.id, paymentReference: dispute.payment_intent, amount: microUsdOfCents(Math.min(dispute.amount, found.creditCents)) };
    const metadata = systemMetadata('stripe-webhook', event.id);
    const result = await deps.ledger.accounts.handle(
      accountStreamId(accountId),
      step === 'created'
        ? { type: 'OpenDispute', data, metadata }
        : // An inquiry closed without a chargeback took no money: as won.
          { type: 'CloseDispute', data: { ...data, outcome: dispute.status === 'lost' ? 'lost' : 'won' }, metadata },
    );
    if (!result.ok) return { outcome: `refused:${result.error.error}`, accountId, ids };
    if (result.events.length === 0) return { outcome: 'already_applied', accountId, ids };
    return { outcome: step === 'created' ? 'dispute_opened' : `dispute_${dispute.status === 'lost' ? 'lost' : 'won'}`, accountId, ids };
  };
}

/**
 * The account a PaymentIntent paid into (its customer's, read from Stripe: refunds and disputes
 * name no customer) and the credit it bought, in cents. A Stripe error throws: nothing is
 * recorded and Stripe retries.
 */
async function paymentOf(deps: PaymentHandlerDeps, paymentIntentId: string): Promise<{ accountId: string; creditCents: number } | null> {
  const intent = paymentIntentSchema.parse(await deps.stripe.paymentIntents.retrieve(paymentIntentId));
  const accountId = intent.customer === null ? null : await deps.customers.accountOf(intent.customer);
  if (accountId === null) return null;
  return { accountId, creditCents: creditCentsOf(intent.metadata, intent.amount_received) ?? intent.amount_received };
}

/** The PaymentIntent that paid an invoice (Stripe's invoice payments), or null. A Stripe error throws: Stripe retries. */
async function paymentIntentOfInvoice(deps: PaymentHandlerDeps, invoiceId: string): Promise<string | null> {
  for await (const payment of deps.stripe.invoicePayments.list({ invoice: invoiceId, limit: 10 })) {
    const intent = payment.payment.payment_intent;
    if (payment.status === 'paid' && intent !== undefined) return typeof intent === 'string' ? intent : intent.id;
  }
  return null;
}

/** Tollgate puts the credit (net of tax) in the metadata when it starts a payment; otherwise the amount paid. */
function creditCentsOf(metadata: Readonly<Record<string, string>>, fallback: number | null): number | null {
  const given = metadata['credit_cents'];
  if (given === undefined) return fallback !== null && fallback > 0 ? fallback : null;
  return /^[1-9]\d{0,12}$/.test(given) ? Number(given) : null;
}

function creditTopUp(deps: PaymentHandlerDeps) {
  return async (
    event: StripeEvent,
    payment: {
      customerId: string | null;
      metadata: Readonly<Record<string, string>>;
      paymentIntentId: string;
      creditCents: number;
      autoTopUpAttemptId?: string | undefined;
      ids: Readonly<Record<string, string | null>>;
    },
  ): Promise<WebhookOutcome> => {
    // The account is the one linked to the paying customer; metadata naming another is not trusted.
    const accountId = payment.customerId === null ? null : await deps.customers.accountOf(payment.customerId);
    const named = payment.metadata['account_id'] ?? payment.metadata['tollgate_account_id'];
    if (accountId === null || (named !== undefined && named !== accountId)) {
      return { outcome: 'unknown_account', accountId: null, ids: { ...payment.ids, metadataAccountId: named ?? null } };
    }
    const stream = accountStreamId(accountId);
    if ((await deps.ledger.accounts.load(stream)).state.status === 'not_opened') return { outcome: 'unknown_account', accountId: null, ids: payment.ids };
    const result = await deps.ledger.accounts.handle(stream, {
      type: 'CompleteTopUp',
      data: {
        paymentReference: payment.paymentIntentId,
        amount: microUsdOfCents(payment.creditCents),
        ...(payment.autoTopUpAttemptId !== undefined ? { autoTopUpAttemptId: payment.autoTopUpAttemptId } : {}),
      },
      metadata: systemMetadata('stripe-webhook', event.id),
    });
    if (!result.ok) return { outcome: `refused:${result.error.error}`, accountId, ids: payment.ids };
    return { outcome: result.events.length > 0 ? 'credited' : 'already_applied', accountId, ids: payment.ids };
  };
}
