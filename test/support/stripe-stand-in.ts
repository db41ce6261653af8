import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createStripeClient } from '../../adapters/payments/stripe-client';

/**
 * A local stand-in for the few Stripe API endpoints Tollgate calls (customers, checkout
 * sessions, payment intents and their confirmation, invoices with their items, finalization
 * with automatic tax, attached payments and voiding, refunds, tax ids), for tests and development without Stripe's servers.
 * Point the real `stripe` client at it (createStripeClient({ apiBase: server.apiBase })).
 * Bodies are shaped as Stripe documents them (the fields Tollgate reads, and a few more). It
 * records every request with its Idempotency-Key, replays the first answer for a repeated key
 * as Stripe does, and can be told to decline card charges and refunds.
 *
 * A checkout session's `url` is a page on this server that a browser can pay at (a "Pay" button,
 * no card form); paying sends the signed `checkout.session.completed` webhook to the endpoint
 * given to `deliverWebhooksTo`, as Stripe would, then redirects to the session's success URL.
 */

export interface RecordedStripeRequest {
  readonly method: string;
  readonly path: string;
  readonly idempotencyKey: string | null;
  /** the form body, decoded (brackets into objects) */
  readonly params: Record<string, unknown>;
}

type StripeObject = Record<string, unknown> & { id: string };

export interface StripeTestServer {
  /** e.g. http://127.0.0.1:40123 */
  readonly apiBase: string;
  readonly requests: RecordedStripeRequest[];
  readonly customers: Map<string, StripeObject>;
  readonly checkoutSessions: Map<string, StripeObject>;
  readonly paymentIntents: Map<string, StripeObject>;
  readonly refunds: Map<string, StripeObject>;
  readonly disputes: Map<string, StripeObject>;
  /**
   * Invoices: made by paid Checkout sessions that asked for `invoice_creation`, and created through
   * the API (POST /v1/invoices, invoice items, finalize, attach_payment, void) as auto top-ups do.
   */
  readonly invoices: Map<string, StripeObject>;
  /** tax ids by customer (POST /v1/customers/:id/tax_ids) */
  readonly taxIds: Map<string, StripeObject[]>;
  /**
   * The cardholder disputes a succeeded PaymentIntent (all of it unless `amount` cents are named):
   * a dispute object in status needs_response, for a charge.dispute.created event.
   */
  openDispute(paymentIntentId: string, options?: { amount?: number }): StripeObject;
  /**
   * An operator refunds a payment in the Stripe Dashboard (no Tollgate metadata; all of what is
   * left unless `amount` cents are named), for refund.created / refund.updated events.
   */
  dashboardRefund(paymentIntentId: string, options?: { amount?: number; status?: 'succeeded' | 'pending' }): StripeObject;
  /** A refund's status changes (a pending one succeeds), for a refund.updated event. */
  setRefund(refundId: string, status: 'succeeded' | 'failed'): StripeObject;
  /** The bank decided: the dispute becomes won, lost or warning_closed, for a charge.dispute.closed event. */
  closeDispute(disputeId: string, status: 'won' | 'lost' | 'warning_closed'): StripeObject;
  /**
   * Decline the next `count` card charges (payment intents confirmed off-session) with this
   * code (`card_declined`, `authentication_required`, ...), or refunds with `refunds: true`.
   */
  decline(options: { code?: string; count?: number; refunds?: boolean }): void;
  /** Decline every card charge of this customer with this code, until told otherwise. */
  declineFor(customerId: string, code: 'card_declined' | 'authentication_required'): void;
  /** The PaymentIntents created for a customer that succeeded (declines and replays excluded). */
  succeededPaymentIntents(customerId: string): StripeObject[];
  /**
   * The tax Stripe Tax adds when an API-created invoice with `automatic_tax` is finalized, in basis
   * points of its subtotal (1900: 19 % VAT); none under the reverse charge (a verified tax id). 0 by default.
   */
  setInvoiceTaxRate(basisPoints: number): void;
  /** Refunds are answered with this status (`succeeded` by default; `pending` to test the webhook path). */
  setRefundStatus(status: 'succeeded' | 'pending'): void;
  /**
   * The customer pays a checkout session: it becomes complete and paid, with a succeeded
   * PaymentIntent for its total (card saved as a payment method when off-session use was asked).
   */
  payCheckoutSession(sessionId: string, options?: { taxCents?: number }): { session: StripeObject; paymentIntent: StripeObject };
  /** Where a session paid on its hosted page sends its signed webhook (null: nowhere, the test delivers). */
  deliverWebhooksTo(endpoint: { url: string; secret: string } | null): void;
  /** A webhook event envelope for an object, as Stripe sends it. */
  event(type: string, object: Record<string, unknown>): StripeEventEnvelope;
  stop(): Promise<void>;
}

export interface StripeEventEnvelope {
  readonly id: string;
  readonly object: 'event';
  readonly api_version: string;
  readonly created: number;
  readonly livemode: false;
  readonly pending_webhooks: number;
  readonly request: { id: null; idempotency_key: null };
  readonly type: string;
  readonly data: { object: Record<string, unknown> };
}

const API_VERSION = '2025-10-29.clover';

export async function startStripeTestServer(): Promise<StripeTestServer> {
  const requests: RecordedStripeRequest[] = [];
  const customers = new Map<string, StripeObject>();
  const checkoutSessions = new Map<string, StripeObject>();
  const paymentIntents = new Map<string, StripeObject>();
  const refunds = new Map<string, StripeObject>();
  const disputes = new Map<string, StripeObject>();
  const invoices = new Map<string, StripeObject>();
  const taxIds = new Map<string, StripeObject[]>();
  let invoiceNumber = 0;
  let invoiceTaxBasisPoints = 0;
  /** PaymentIntent id to the invoice it was attached to (Stripe's invoice payments) */
  const invoiceOfPayment = new Map<string, string>();
  const idempotent = new Map<string, { status: number; body: unknown }>();
  let declines: { code: string; count: number } | null = null;
  const customerDeclines = new Map<string, string>();
  let refundDeclines = 0;
  let refundStatus: 'succeeded' | 'pending' = 'succeeded';
  let webhookEndpoint: { url: string; secret: string } | null = null;
  let origin = '';
  const signer = createStripeClient({ secretKey: 'sk_test_stand_in_signer' });
  const now = () => Math.floor(Date.now() / 1000);
  const id = (prefix: string) => `${prefix}_test_${randomBytes(12).toString('hex')}`;

  const paymentIntent = (fields: {
    amount: number;
    customer: string | null;
    payment_method: string | null;
    metadata: Record<string, string>;
    status: string;
    setup_future_usage?: string | null;
  }): StripeObject => {
    const pi: StripeObject = {
      id: id('pi'),
      object: 'payment_intent',
      amount: fields.amount,
      amount_received: fields.status === 'succeeded' ? fields.amount : 0,
      currency: 'usd',
      customer: fields.customer,
      payment_method: fields.payment_method,
      setup_future_usage: fields.setup_future_usage ?? null,
      metadata: fields.metadata,
      status: fields.status,
      latest_charge: fields.status === 'succeeded' ? id('ch') : null,
      created: now(),
      livemode: false,
    };
    paymentIntents.set(pi.id, pi);
    return pi;
  };

  /** The decline a confirmed charge of this customer gets now (and one of `decline`'s count used), or null. */
  const declineCodeFor = (customer: string | null): string | null => {
    const declinedCustomer = typeof customer === 'string' ? customerDeclines.get(customer) : undefined;
    if (declinedCustomer !== undefined) return declinedCustomer;
    if (declines === null || declines.count <= 0) return null;
    const code = declines.code;
    declines = declines.count > 1 ? { code, count: declines.count - 1 } : null;
    return code;
  };
  const declined = (code: string, pi: StripeObject) => ({
    status: 402,
    body: {
      error: {
        type: 'card_error',
        code,
        ...(code === 'card_declined' ? { decline_code: 'generic_decline' } : {}),
        message: code === 'authentication_required' ? 'This payment requires authentication.' : 'Your card was declined.',
        payment_intent: pi,
      },
    },
  });

  const routes: { method: string; pattern: RegExp; answer: (params: Record<string, any>, match: RegExpExecArray) => { status: number; body: unknown } }[] = [
    {
      method: 'POST',
      pattern: /^\/v1\/customers$/,
      answer: (params) => {
        const customer: StripeObject = {
          id: id('cus'),
          object: 'customer',
          created: now(),
          email: params['email'] ?? null,
          metadata: params['metadata'] ?? {},
          livemode: false,
        };
        customers.set(customer.id, customer);
        return { status: 200, body: customer };
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/checkout\/sessions$/,
      answer: (params) => {
        const items = Object.values((params['line_items'] ?? {}) as Record<string, any>);
        const subtotal = items.reduce((sum, item) => sum + Number(item.price_data?.unit_amount ?? 0) * Number(item.quantity ?? 1), 0);
        const sessionId = id('cs');
        const session: StripeObject = {
          id: sessionId,
          object: 'checkout.session',
          mode: params['mode'],
          status: 'open',
          payment_status: 'unpaid',
          customer: params['customer'] ?? null,
          client_reference_id: params['client_reference_id'] ?? null,
          currency: 'usd',
          amount_subtotal: subtotal,
          amount_total: subtotal,
          automatic_tax: { enabled: params['automatic_tax']?.enabled === 'true', status: null },
          invoice_creation: params['invoice_creation'] ?? { enabled: 'false' },
          tax_id_collection: { enabled: params['tax_id_collection']?.enabled === 'true' },
          invoice: null,
          payment_intent: null,
          payment_intent_data: params['payment_intent_data'] ?? {},
          metadata: params['metadata'] ?? {},
          success_url: params['success_url'] ?? null,
          cancel_url: params['cancel_url'] ?? null,
          url: `${origin}/checkout/pay/${sessionId}`,
          created: now(),
          livemode: false,
        };
        checkoutSessions.set(session.id, session);
        return { status: 200, body: publicSession(session) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/checkout\/sessions\/([^/]+)$/,
      answer: (_params, match) => {
        const session = checkoutSessions.get(match[1]!);
        return session ? { status: 200, body: publicSession(session) } : notFound('checkout.session', match[1]!);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/payment_intents$/,
      answer: (params) => {
        const metadata = (params['metadata'] ?? {}) as Record<string, string>;
        const base = { amount: Number(params['amount']), customer: params['customer'] ?? null, payment_method: params['payment_method'] ?? null, metadata };
        const code = params['confirm'] === 'true' ? declineCodeFor(base.customer) : null;
        if (code !== null) {
          const pi = paymentIntent({ ...base, status: code === 'authentication_required' ? 'requires_action' : 'requires_payment_method' });
          return declined(code, pi);
        }
        return { status: 200, body: paymentIntent({ ...base, status: params['confirm'] === 'true' ? 'succeeded' : 'requires_confirmation' }) };
      },
    },
    {
      // Confirms a PaymentIntent (off-session: the saved card, nobody to authenticate). An invoice it is
      // attached to is paid by it: status paid, amount_paid its total.
      method: 'POST',
      pattern: /^\/v1\/payment_intents\/([^/]+)\/confirm$/,
      answer: (params, match) => {
        const pi = paymentIntents.get(match[1]!);
        if (!pi) return notFound('payment_intent', match[1]!);
        if (pi['status'] === 'succeeded') return invalidState(`This PaymentIntent's status is succeeded and cannot be confirmed.`);
        if (typeof params['payment_method'] === 'string') pi['payment_method'] = params['payment_method'];
        if (pi['payment_method'] === null) return invalidState('You cannot confirm this PaymentIntent because it has no payment method.');
        const code = declineCodeFor(pi['customer'] as string | null);
        if (code !== null) {
          Object.assign(pi, { status: code === 'authentication_required' ? 'requires_action' : 'requires_payment_method' });
          return declined(code, structuredClone(pi));
        }
        Object.assign(pi, { status: 'succeeded', amount_received: pi['amount'], latest_charge: id('ch') });
        const invoiceId = invoiceOfPayment.get(pi.id);
        const invoice = invoiceId === undefined ? undefined : invoices.get(invoiceId);
        if (invoice) Object.assign(invoice, { status: 'paid', amount_paid: invoice['total'], amount_remaining: 0, status_transitions: { paid_at: now() } });
        return { status: 200, body: structuredClone(pi) };
      },
    },
    {
      // A draft invoice (Tollgate's auto top-ups): its lines come from invoice items naming it.
      method: 'POST',
      pattern: /^\/v1\/invoices$/,
      answer: (params) => {
        const customer = typeof params['customer'] === 'string' ? params['customer'] : null;
        if (customer === null || !customers.has(customer)) return notFound('customer', String(customer));
        const invoiceId = id('in');
        const invoice: StripeObject = {
          id: invoiceId,
          object: 'invoice',
          number: null,
          customer,
          status: 'draft',
          currency: params['currency'] ?? 'usd',
          collection_method: params['collection_method'] ?? 'charge_automatically',
          auto_advance: params['auto_advance'] === 'true',
          automatic_tax: { enabled: (params['automatic_tax'] as { enabled?: string } | undefined)?.enabled === 'true', status: null },
          pending_invoice_items_behavior: params['pending_invoice_items_behavior'] ?? null,
          subtotal: 0,
          tax: 0,
          total: 0,
          amount_due: 0,
          amount_paid: 0,
          amount_remaining: 0,
          lines: { object: 'list', data: [], has_more: false },
          description: params['description'] ?? null,
          metadata: params['metadata'] ?? {},
          customer_tax_exempt: 'none',
          customer_tax_ids: [],
          hosted_invoice_url: null,
          invoice_pdf: null,
          created: now(),
          livemode: false,
        };
        invoices.set(invoiceId, invoice);
        return { status: 200, body: structuredClone(invoice) };
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoiceitems$/,
      answer: (params) => {
        const invoice = invoices.get(String(params['invoice']));
        if (!invoice) return notFound('invoice', String(params['invoice']));
        if (invoice['status'] !== 'draft') return invalidState('You can only add invoice items to draft invoices.');
        if (params['customer'] !== invoice['customer']) return invalidState('The invoice item and the invoice must be for the same customer.');
        const amount = Number(params['amount']);
        if (!Number.isInteger(amount) || amount <= 0) return invalidState('amount must be a positive integer of cents');
        const item: StripeObject = {
          id: id('ii'),
          object: 'invoiceitem',
          amount,
          currency: params['currency'] ?? 'usd',
          customer: params['customer'],
          invoice: invoice.id,
          description: params['description'] ?? null,
          tax_behavior: params['tax_behavior'] ?? null,
          metadata: params['metadata'] ?? {},
        };
        (invoice['lines'] as { data: StripeObject[] }).data.push(item);
        invoice['subtotal'] = Number(invoice['subtotal']) + amount;
        return { status: 200, body: structuredClone(item) };
      },
    },
    {
      // Finalizing numbers the invoice and, with automatic tax, adds the tax (none under the reverse charge).
      method: 'POST',
      pattern: /^\/v1\/invoices\/([^/]+)\/finalize$/,
      answer: (_params, match) => {
        const invoice = invoices.get(match[1]!);
        if (!invoice) return notFound('invoice', match[1]!);
        if (invoice['status'] !== 'draft') return invalidState(`This invoice is already ${String(invoice['status'])}.`);
        const customer = invoice['customer'] as string;
        const customerTaxIds = taxIds.get(customer) ?? [];
        const reverseCharge = customerTaxIds.some((t) => (t['verification'] as { status: string }).status === 'verified');
        const automatic = (invoice['automatic_tax'] as { enabled: boolean }).enabled;
        const subtotal = Number(invoice['subtotal']);
        const tax = automatic && !reverseCharge ? Math.round((subtotal * invoiceTaxBasisPoints) / 10_000) : 0;
        invoiceNumber += 1;
        Object.assign(invoice, {
          status: 'open',
          number: `TGTEST-${String(invoiceNumber).padStart(4, '0')}`,
          automatic_tax: { enabled: automatic, status: automatic ? 'complete' : null },
          tax,
          total: subtotal + tax,
          amount_due: subtotal + tax,
          amount_remaining: subtotal + tax,
          customer_tax_exempt: reverseCharge ? 'reverse' : 'none',
          customer_tax_ids: customerTaxIds.map((t) => ({ type: t['type'], value: t['value'] })),
          hosted_invoice_url: `${origin}/invoices/${invoice.id}`,
          invoice_pdf: `${origin}/invoices/${invoice.id}.pdf`,
        });
        return { status: 200, body: structuredClone(invoice) };
      },
    },
    {
      // A PaymentIntent of the invoice's customer for its amount due pays it once confirmed.
      method: 'POST',
      pattern: /^\/v1\/invoices\/([^/]+)\/attach_payment$/,
      answer: (params, match) => {
        const invoice = invoices.get(match[1]!);
        if (!invoice) return notFound('invoice', match[1]!);
        const pi = paymentIntents.get(String(params['payment_intent']));
        if (!pi) return notFound('payment_intent', String(params['payment_intent']));
        if (invoice['status'] !== 'open') return invalidState(`You can only attach payments to open invoices; this one is ${String(invoice['status'])}.`);
        if (pi['customer'] !== invoice['customer'] || Number(pi['amount']) !== Number(invoice['amount_remaining'])) {
          return invalidState('The PaymentIntent must be of the invoice customer and for the amount remaining.');
        }
        const attached = invoiceOfPayment.get(pi.id);
        if (attached !== undefined && attached !== invoice.id) return invalidState('This PaymentIntent is attached to another invoice.');
        invoiceOfPayment.set(pi.id, invoice.id);
        return { status: 200, body: structuredClone(invoice) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoice_payments$/,
      answer: (params) => {
        const data = [...invoiceOfPayment.entries()]
          .filter(([, invoiceId]) => params['invoice'] === undefined || invoiceId === params['invoice'])
          .map(([paymentIntentId, invoiceId]) => {
            const pi = paymentIntents.get(paymentIntentId)!;
            return {
              id: `inpay_${paymentIntentId.slice(3)}`,
              object: 'invoice_payment',
              invoice: invoiceId,
              amount_requested: pi['amount'],
              amount_paid: pi['status'] === 'succeeded' ? pi['amount'] : null,
              currency: 'usd',
              is_default: true,
              payment: { type: 'payment_intent', payment_intent: paymentIntentId },
              status: pi['status'] === 'succeeded' ? 'paid' : pi['status'] === 'canceled' ? 'canceled' : 'open',
              livemode: false,
            };
          });
        return { status: 200, body: { object: 'list', url: '/v1/invoice_payments', has_more: false, data } };
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/invoices\/([^/]+)\/void$/,
      answer: (_params, match) => {
        const invoice = invoices.get(match[1]!);
        if (!invoice) return notFound('invoice', match[1]!);
        if (invoice['status'] !== 'open') return invalidState(`You can only void open invoices; this one is ${String(invoice['status'])}.`);
        invoice['status'] = 'void';
        return { status: 200, body: structuredClone(invoice) };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoices$/,
      answer: (params) => {
        const data = [...invoices.values()].filter((i) => params['customer'] === undefined || i['customer'] === params['customer']).reverse();
        return { status: 200, body: { object: 'list', url: '/v1/invoices', has_more: false, data } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/invoices\/([^/]+)$/,
      answer: (_params, match) => {
        const invoice = invoices.get(match[1]!);
        return invoice ? { status: 200, body: invoice } : notFound('invoice', match[1]!);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/customers\/([^/]+)\/tax_ids$/,
      answer: (params, match) => {
        const customer = customers.get(match[1]!);
        if (!customer) return notFound('customer', match[1]!);
        const value = String(params['value'] ?? '');
        // Stripe checks the format at once and the VIES registry later; the stand-in: EU VAT ids
        // of a country code and 8-12 digits are verified, anything else unverified.
        if (params['type'] !== 'eu_vat' || !/^[A-Z]{2}[0-9A-Z]{2,13}$/.test(value)) {
          return {
            status: 400,
            body: { error: { type: 'invalid_request_error', code: 'tax_id_invalid', param: 'value', message: `Invalid value for eu_vat: ${value}` } },
          };
        }
        const taxId: StripeObject = {
          id: id('txi'),
          object: 'tax_id',
          customer: customer.id,
          type: 'eu_vat',
          value,
          country: value.slice(0, 2),
          verification: { status: /^[A-Z]{2}[0-9]{8,12}$/.test(value) ? 'verified' : 'unverified', verified_name: null, verified_address: null },
          created: now(),
          livemode: false,
        };
        taxIds.set(customer.id, [...(taxIds.get(customer.id) ?? []), taxId]);
        return { status: 200, body: taxId };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/customers\/([^/]+)\/tax_ids$/,
      answer: (_params, match) => ({
        status: 200,
        body: { object: 'list', url: `/v1/customers/${match[1]}/tax_ids`, has_more: false, data: taxIds.get(match[1]!) ?? [] },
      }),
    },
    {
      method: 'DELETE',
      pattern: /^\/v1\/customers\/([^/]+)\/tax_ids\/([^/]+)$/,
      answer: (_params, match) => {
        const list = taxIds.get(match[1]!) ?? [];
        if (!list.some((t) => t.id === match[2])) return notFound('tax_id', match[2]!);
        taxIds.set(
          match[1]!,
          list.filter((t) => t.id !== match[2]),
        );
        return { status: 200, body: { id: match[2], object: 'tax_id', deleted: true } };
      },
    },
    {
      method: 'GET',
      pattern: /^\/v1\/payment_intents\/([^/]+)$/,
      answer: (_params, match) => {
        const pi = paymentIntents.get(match[1]!);
        return pi ? { status: 200, body: pi } : notFound('payment_intent', match[1]!);
      },
    },
    {
      method: 'POST',
      pattern: /^\/v1\/refunds$/,
      answer: (params) => {
        const pi = paymentIntents.get(String(params['payment_intent']));
        if (!pi) return notFound('payment_intent', String(params['payment_intent']));
        const received = Number(pi['amount_received']);
        const refunded = [...refunds.values()]
          .filter((r) => r['payment_intent'] === pi.id && r['status'] !== 'failed')
          .reduce((sum, r) => sum + Number(r['amount']), 0);
        const amount = params['amount'] === undefined ? received - refunded : Number(params['amount']);
        if (!Number.isInteger(amount) || amount <= 0 || amount > received - refunded) {
          return {
            status: 400,
            body: {
              error: {
                type: 'invalid_request_error',
                code: 'amount_too_large',
                param: 'amount',
                message: `Refund amount ($${(amount / 100).toFixed(2)}) is greater than unrefunded amount on charge ($${((received - refunded) / 100).toFixed(2)})`,
              },
            },
          };
        }
        if (refundDeclines > 0) {
          refundDeclines -= 1;
          return { status: 402, body: { error: { type: 'card_error', code: 'refund_declined', message: 'The refund was declined.' } } };
        }
        const refund: StripeObject = {
          id: id('re'),
          object: 'refund',
          amount,
          currency: 'usd',
          payment_intent: pi.id,
          charge: pi['latest_charge'],
          reason: params['reason'] ?? null,
          metadata: params['metadata'] ?? {},
          status: refundStatus,
          created: now(),
        };
        refunds.set(refund.id, refund);
        return { status: 200, body: refund };
      },
    },
  ];

  const server: Server = createServer((req, res) => {
    void handle(req, res).catch(() => {
      res.statusCode = 500;
      res.end(JSON.stringify({ error: { type: 'api_error', message: 'test server error' } }));
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const url = new URL(req.url ?? '/', 'http://localhost');
    const form = new URLSearchParams(req.method === 'GET' ? url.search : Buffer.concat(chunks).toString('utf8'));
    const params = decodeForm(form);
    const idempotencyKey = (req.headers['idempotency-key'] as string | undefined) ?? null;
    requests.push({ method: req.method ?? 'GET', path: url.pathname, idempotencyKey, params });
    const send = (answer: { status: number; body: unknown }) => {
      res.writeHead(answer.status, {
        'content-type': 'application/json',
        'request-id': `req_${randomBytes(7).toString('hex')}`,
        ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
      });
      res.end(JSON.stringify(answer.body));
    };
    const hosted = /^\/checkout\/pay\/([A-Za-z0-9_]+)$/.exec(url.pathname);
    if (hosted) return hostedCheckout(req.method ?? 'GET', hosted[1]!, res);
    const pdf = /^\/invoices\/([A-Za-z0-9_]+)\.pdf$/.exec(url.pathname);
    if (pdf) return invoicePdf(pdf[1]!, res);
    if (!/^Bearer sk_(test|live)_\S+$/.test(req.headers['authorization'] ?? '')) {
      return send({ status: 401, body: { error: { type: 'invalid_request_error', message: 'Invalid API Key provided.' } } });
    }
    if (req.method === 'POST' && idempotencyKey !== null) {
      const replay = idempotent.get(`${url.pathname} ${idempotencyKey}`);
      if (replay) return send(replay);
    }
    for (const route of routes) {
      const match = route.method === req.method ? route.pattern.exec(url.pathname) : null;
      if (!match) continue;
      const answer = route.answer(params, match);
      if (req.method === 'POST' && idempotencyKey !== null && answer.status < 500) idempotent.set(`${url.pathname} ${idempotencyKey}`, answer);
      return send(answer);
    }
    send({ status: 404, body: { error: { type: 'invalid_request_error', message: `Unrecognized request URL (${req.method}: ${url.pathname}).` } } });
  }

  /** The page a browser is sent to: GET shows the amount and a Pay button, POST pays. */
  async function hostedCheckout(method: string, sessionId: string, res: ServerResponse): Promise<void> {
    const session = checkoutSessions.get(sessionId);
    if (!session) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('No such checkout session.');
      return;
    }
    if (method === 'POST' && session['status'] === 'open') {
      const paid = pay(sessionId, 0);
      if (webhookEndpoint) {
        const payload = JSON.stringify(eventOf('checkout.session.completed', paid.session));
        const response = await fetch(webhookEndpoint.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'stripe-signature': signer.webhooks.generateTestHeaderString({ payload, secret: webhookEndpoint.secret }),
          },
          body: payload,
        });
        await response.arrayBuffer();
      }
      res.writeHead(303, { location: String(session['success_url']).replace('{CHECKOUT_SESSION_ID}', sessionId) }).end();
      return;
    }
    const amount = (Number(session['amount_total']) / 100).toFixed(2);
    res
      .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      .end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test checkout</title></head>
<body><main><h1>Stripe test checkout</h1><p>Local stand-in: no card is charged.</p><p>Amount: <strong id="amount">USD ${amount}</strong></p>
${session['status'] === 'open' ? `<form method="post"><button type="submit">Pay USD ${amount}</button></form>` : '<p>This session is already paid.</p>'}
</main></body></html>`);
  }

  /** The invoice document, as Stripe's invoice_pdf link serves it (a small real PDF naming the invoice). */
  function invoicePdf(invoiceId: string, res: ServerResponse): void {
    const invoice = invoices.get(invoiceId);
    if (!invoice) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('No such invoice.');
      return;
    }
    const text = `Invoice ${String(invoice['number'])} total USD ${(Number(invoice['total']) / 100).toFixed(2)} tax USD ${(Number(invoice['tax']) / 100).toFixed(2)}`;
    const body = `%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R/Resources<</Font<</F1<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>>>>>>>endobj 4 0 obj<</Length ${text.length + 30}>>stream\nBT /F1 12 Tf 50 800 Td (${text}) Tj ET\nendstream endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n`;
    res.writeHead(200, { 'content-type': 'application/pdf', 'content-disposition': `attachment; filename="${String(invoice['number'])}.pdf"` }).end(body);
  }

  function pay(sessionId: string, taxCents: number) {
    const session = checkoutSessions.get(sessionId);
    if (!session) throw new Error(`no checkout session ${sessionId}`);
    const total = Number(session['amount_subtotal']) + taxCents;
    const data = session['payment_intent_data'] as { setup_future_usage?: string; metadata?: Record<string, string> };
    const pi = paymentIntent({
      amount: total,
      customer: session['customer'] as string | null,
      payment_method: id('pm'),
      metadata: data.metadata ?? {},
      status: 'succeeded',
      setup_future_usage: data.setup_future_usage ?? null,
    });
    Object.assign(session, { status: 'complete', payment_status: 'paid', payment_intent: pi.id, amount_total: total, total_details: { amount_tax: taxCents } });
    const invoiceCreation = session['invoice_creation'] as { enabled?: string; invoice_data?: { metadata?: Record<string, string>; description?: string } };
    if (invoiceCreation.enabled === 'true') {
      invoiceNumber += 1;
      const invoiceId = id('in');
      const customer = session['customer'] as string | null;
      const reverseCharge = customer !== null && (taxIds.get(customer) ?? []).some((t) => (t['verification'] as { status: string }).status === 'verified');
      const invoice: StripeObject = {
        id: invoiceId,
        object: 'invoice',
        number: `TGTEST-${String(invoiceNumber).padStart(4, '0')}`,
        customer,
        status: 'paid',
        currency: 'usd',
        subtotal: Number(session['amount_subtotal']),
        tax: taxCents,
        total: total,
        amount_paid: total,
        description: invoiceCreation.invoice_data?.description ?? null,
        metadata: invoiceCreation.invoice_data?.metadata ?? {},
        customer_tax_exempt: reverseCharge ? 'reverse' : 'none',
        customer_tax_ids: customer === null ? [] : (taxIds.get(customer) ?? []).map((t) => ({ type: t['type'], value: t['value'] })),
        hosted_invoice_url: `${origin}/invoices/${invoiceId}`,
        invoice_pdf: `${origin}/invoices/${invoiceId}.pdf`,
        created: now(),
        livemode: false,
      };
      invoices.set(invoiceId, invoice);
      session['invoice'] = invoiceId;
    }
    return { session: publicSession(session), paymentIntent: pi };
  }

  function eventOf(type: string, object: Record<string, unknown>): StripeEventEnvelope {
    return {
      id: id('evt'),
      object: 'event',
      api_version: API_VERSION,
      created: now(),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type,
      data: { object: structuredClone(object) },
    };
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  origin = `http://127.0.0.1:${port}`;

  return {
    apiBase: origin,
    requests,
    customers,
    checkoutSessions,
    paymentIntents,
    refunds,
    disputes,
    invoices,
    taxIds,
    openDispute(paymentIntentId, options = {}) {
      const pi = paymentIntents.get(paymentIntentId);
      if (!pi || pi['status'] !== 'succeeded') throw new Error(`no succeeded payment intent ${paymentIntentId}`);
      const dispute: StripeObject = {
        id: id('dp'),
        object: 'dispute',
        amount: options.amount ?? Number(pi['amount_received']),
        currency: 'usd',
        charge: pi['latest_charge'],
        payment_intent: pi.id,
        reason: 'fraudulent',
        status: 'needs_response',
        created: now(),
      };
      disputes.set(dispute.id, dispute);
      return structuredClone(dispute);
    },
    dashboardRefund(paymentIntentId, options = {}) {
      const pi = paymentIntents.get(paymentIntentId);
      if (!pi || pi['status'] !== 'succeeded') throw new Error(`no succeeded payment intent ${paymentIntentId}`);
      const refunded = [...refunds.values()]
        .filter((r) => r['payment_intent'] === pi.id && r['status'] !== 'failed')
        .reduce((sum, r) => sum + Number(r['amount']), 0);
      const amount = options.amount ?? Number(pi['amount_received']) - refunded;
      if (amount <= 0 || amount > Number(pi['amount_received']) - refunded) throw new Error('refund larger than what is left');
      const refund: StripeObject = {
        id: id('re'),
        object: 'refund',
        amount,
        currency: 'usd',
        payment_intent: pi.id,
        charge: pi['latest_charge'],
        reason: 'requested_by_customer',
        metadata: {},
        status: options.status ?? 'succeeded',
        created: now(),
      };
      refunds.set(refund.id, refund);
      return structuredClone(refund);
    },
    setRefund(refundId, status) {
      const refund = refunds.get(refundId);
      if (!refund) throw new Error(`no refund ${refundId}`);
      refund['status'] = status;
      return structuredClone(refund);
    },
    closeDispute(disputeId, status) {
      const dispute = disputes.get(disputeId);
      if (!dispute) throw new Error(`no dispute ${disputeId}`);
      dispute['status'] = status;
      return structuredClone(dispute);
    },
    decline(options) {
      if (options.refunds) refundDeclines += options.count ?? 1;
      else declines = { code: options.code ?? 'card_declined', count: options.count ?? 1 };
    },
    declineFor(customerId, code) {
      customerDeclines.set(customerId, code);
    },
    succeededPaymentIntents(customerId) {
      return [...paymentIntents.values()].filter((pi) => pi.customer === customerId && pi.status === 'succeeded');
    },
    setInvoiceTaxRate(basisPoints) {
      invoiceTaxBasisPoints = basisPoints;
    },
    setRefundStatus(status) {
      refundStatus = status;
    },
    payCheckoutSession(sessionId, options = {}) {
      return pay(sessionId, options.taxCents ?? 0);
    },
    deliverWebhooksTo(endpoint) {
      webhookEndpoint = endpoint;
    },
    event: eventOf,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The session as the API shows it (payment_intent_data is a create parameter, not a field). */
function publicSession(session: StripeObject): StripeObject {
  const { payment_intent_data: _, ...shown } = session;
  return shown as StripeObject;
}

function invalidState(message: string) {
  return { status: 400, body: { error: { type: 'invalid_request_error', message } } };
}

function notFound(object: string, id: string) {
  return { status: 404, body: { error: { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${object}: '${id}'` } } };
}

/** Stripe's form encoding: `a[b][0][c]=v` into { a: { b: { 0: { c: 'v' } } } } (arrays stay keyed objects). */
export function decodeForm(form: URLSearchParams): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const [key, value] of form) {
    const path = key.replace(/\]/g, '').split('[');
    let node = out;
    path.forEach((segment, i) => {
      if (i === path.length - 1) node[segment] = value;
      else node = node[segment] = typeof node[segment] === 'object' && node[segment] !== null ? node[segment] : {};
    });
  }
  return out;
}
