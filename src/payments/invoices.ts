import { accountStreamId } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import type { StripeCustomers } from '../../adapters/payments/customers';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import type { EventStore } from '../ports/event-store';
import { microUsdOfCents } from './amounts';
import type { StripeWebhookDispatcher } from './webhooks';

/**
 * Invoices and receipts: every payment has a document. A Checkout top-up is invoiced by Stripe
 * (`invoice_creation`, with Stripe Tax's VAT on top of the net credit); a manual credit recorded by
 * an operator (bank transfer) has a receipt record built from its ledger entry, with the reference.
 */

export interface BillingDocument {
  readonly kind: 'invoice' | 'receipt';
  /** Stripe's invoice id (in_...), or `receipt:<payment reference>` */
  readonly id: string;
  readonly number: string | null;
  readonly status: string;
  /** net of tax: what was credited */
  readonly subtotal: MicroUsd;
  readonly tax: MicroUsd;
  readonly total: MicroUsd;
  /** the reverse charge applied (a verified EU VAT id, no VAT added) */
  readonly reverseCharge: boolean;
  /** the operator's reference of a manual credit (bank transfer), null for invoices */
  readonly reference: string | null;
  readonly createdAt: string;
  /** Stripe's link to the invoice PDF (an unguessable URL Stripe gives the customer), null for receipts */
  readonly documentUrl: string | null;
}

const MANUAL = 'manual:';

/**
 * The account events after which its Stripe invoices may have changed: a payment credited (a
 * Checkout's invoice, or an auto top-up's), an auto top-up tried or failed (its invoice made,
 * paid or voided). Counted from the account's stream, which every instance shares, they make a
 * cached invoice list stale on all instances at once, whichever one received the webhook.
 */
const INVOICE_CHANGING_EVENTS: ReadonlySet<string> = new Set(['TopUpCompleted', 'AutoTopUpTriggered', 'AutoTopUpFailed']);

/** The account's invoices (at Stripe, for its customer) and manual-credit receipts, newest first. */
export async function billingDocuments(
  deps: {
    readonly stripe: StripeClient | null;
    readonly customers: StripeCustomers | null;
    readonly store: EventStore<DomainEvent>;
    /** Stripe's answers kept a short while; without it, Stripe is asked on every call */
    readonly cache?: InvoiceListCache | null;
  },
  accountId: string,
): Promise<BillingDocument[]> {
  const documents: BillingDocument[] = [];
  const { events } = await deps.store.readStream(accountStreamId(accountId));
  let invoiceChanges = 0;
  for (const { event } of events) {
    if (INVOICE_CHANGING_EVENTS.has(event.type) && !(event.type === 'TopUpCompleted' && event.data.paymentReference.startsWith(MANUAL))) invoiceChanges++;
    if (event.type !== 'TopUpCompleted' || !event.data.paymentReference.startsWith(MANUAL)) continue;
    documents.push({
      kind: 'receipt',
      id: `receipt:${event.data.paymentReference}`,
      number: null,
      status: 'paid',
      subtotal: event.data.amount,
      tax: 0n,
      total: event.data.amount,
      reverseCharge: false,
      reference: event.data.paymentReference.slice(MANUAL.length),
      createdAt: event.metadata.occurredAt,
      documentUrl: null,
    });
  }
  const customerId = deps.customers ? await deps.customers.customerOf(accountId) : null;
  const stripe = deps.stripe;
  if (stripe && customerId !== null) {
    const fetch = () => stripeInvoices(stripe, customerId);
    documents.push(...(deps.cache ? await deps.cache.list(customerId, invoiceChanges, fetch) : await fetch()));
  }
  return documents.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
}

async function stripeInvoices(stripe: StripeClient, customerId: string): Promise<BillingDocument[]> {
  const documents: BillingDocument[] = [];
  for await (const invoice of stripe.invoices.list({ customer: customerId, limit: 100 })) {
    const raw = invoice as unknown as { tax?: number | null; total_taxes?: { amount: number }[] | null };
    const taxCents = raw.tax ?? (raw.total_taxes ?? []).reduce((sum, t) => sum + t.amount, 0);
    documents.push({
      kind: 'invoice',
      id: invoice.id!,
      number: invoice.number ?? null,
      status: invoice.status ?? 'draft',
      subtotal: microUsdOfCents(invoice.subtotal),
      tax: microUsdOfCents(taxCents),
      total: microUsdOfCents(invoice.total),
      reverseCharge: invoice.customer_tax_exempt === 'reverse',
      reference: null,
      createdAt: new Date(invoice.created * 1000).toISOString(),
      documentUrl: typeof invoice.invoice_pdf === 'string' ? invoice.invoice_pdf : null,
    });
  }
  return documents;
}

/** Stripe events after which a customer's invoice list may have changed (the object names the customer). */
export const INVOICE_WEBHOOK_EVENTS: readonly string[] = [
  'invoice.created',
  'invoice.finalized',
  'invoice.updated',
  'invoice.paid',
  'invoice.payment_succeeded',
  'invoice.payment_failed',
  'invoice.voided',
  'invoice.marked_uncollectible',
  'invoice.deleted',
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
];

/**
 * Each Stripe customer's invoice list, kept for a short while (`ttlMs`, 60 s by default) so the
 * billing page does not call Stripe's API on every load (Stripe rate-limits, and each call takes
 * a round trip to Stripe). An entry is dropped at once when a webhook says the customer's invoices
 * changed (invalidate), and is not used once the account's stream shows a payment or an auto
 * top-up since it was fetched (`stamp`, see INVOICE_CHANGING_EVENTS): that covers another
 * instance's webhook. The TTL bounds what neither shows (an invoice edited in Stripe's Dashboard,
 * with no invoice webhook enabled). Per process, in memory: invoices are Stripe's, not Tollgate's.
 */
export class InvoiceListCache {
  private readonly entries = new Map<string, { readonly documents: readonly BillingDocument[]; readonly stamp: number; readonly fetchedAt: number }>();
  /** fetches in flight: concurrent loads share one; an invalidation discards it */
  private readonly fetching = new Map<string, { readonly stamp: number; readonly promise: Promise<readonly BillingDocument[]> }>();
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(options: { readonly ttlMs?: number; readonly now?: () => number; readonly maxEntries?: number } = {}) {
    this.ttlMs = options.ttlMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  /** The customer's invoices: cached while fresh and `stamp` is the one they were fetched at, else `fetch`ed. */
  async list(customerId: string, stamp: number, fetch: () => Promise<readonly BillingDocument[]>): Promise<readonly BillingDocument[]> {
    const entry = this.entries.get(customerId);
    if (entry && entry.stamp === stamp && this.now() - entry.fetchedAt < this.ttlMs) return entry.documents;
    const running = this.fetching.get(customerId);
    if (running && running.stamp === stamp) return running.promise;
    const fetchedAt = this.now();
    const mine = { stamp, promise: fetch() };
    this.fetching.set(customerId, mine);
    try {
      const documents = await mine.promise;
      // Kept only if nothing invalidated it while Stripe answered: that answer may predate the change.
      if (this.fetching.get(customerId) === mine) {
        this.entries.delete(customerId);
        this.entries.set(customerId, { documents, stamp, fetchedAt });
        if (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      }
      return documents;
    } finally {
      if (this.fetching.get(customerId) === mine) this.fetching.delete(customerId);
    }
  }

  /** The customer's invoices changed: the next load asks Stripe. */
  invalidate(customerId: string): void {
    this.entries.delete(customerId);
    this.fetching.delete(customerId);
  }
}

/**
 * Drops a customer's cached invoice list when Stripe says its invoices changed. Its outcome is
 * `ignored`, so the event's recorded outcome stays that of the handlers that move money.
 */
export function registerInvoiceListInvalidation(dispatcher: StripeWebhookDispatcher, cache: InvoiceListCache): void {
  for (const type of INVOICE_WEBHOOK_EVENTS) {
    dispatcher.on(type, async (event) => {
      const customer = event.data.object['customer'];
      const customerId = typeof customer === 'string' ? customer : isRecord(customer) && typeof customer['id'] === 'string' ? customer['id'] : null;
      if (customerId !== null) cache.invalidate(customerId);
      return { outcome: 'ignored', accountId: null };
    });
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** The invoice document's URL, only for an invoice of this account's own customer (null otherwise). */
export async function invoiceDocumentUrl(
  deps: { readonly stripe: StripeClient; readonly customers: StripeCustomers },
  accountId: string,
  invoiceId: string,
): Promise<string | null> {
  const customerId = await deps.customers.customerOf(accountId);
  if (customerId === null) return null;
  let invoice;
  try {
    invoice = await deps.stripe.invoices.retrieve(invoiceId);
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return null;
    throw error;
  }
  const owner = typeof invoice.customer === 'string' ? invoice.customer : (invoice.customer?.id ?? null);
  return owner === customerId && typeof invoice.invoice_pdf === 'string' ? invoice.invoice_pdf : null;
}

export interface VatId {
  readonly value: string;
  /** Stripe's check against the EU registry: the reverse charge applies once it is verified */
  readonly verification: string;
}

/** The account's EU VAT id at Stripe (customer tax ids), or null. */
export async function vatIdOf(deps: { readonly stripe: StripeClient; readonly customers: StripeCustomers }, accountId: string): Promise<VatId | null> {
  const customerId = await deps.customers.customerOf(accountId);
  if (customerId === null) return null;
  const list = await deps.stripe.customers.listTaxIds(customerId);
  const vat = list.data.find((t) => t.type === 'eu_vat');
  return vat ? { value: vat.value, verification: vat.verification?.status ?? 'unavailable' } : null;
}

/**
 * Sets (or with null, removes) the account's EU VAT id: the previous one is removed, the new one
 * added to the Stripe customer, where Stripe Tax reads it at checkout (reverse charge for a valid
 * id of another EU country) and invoices print it. A value Stripe refuses is answered as such.
 */
export async function setVatId(
  deps: { readonly stripe: StripeClient; readonly customers: StripeCustomers },
  accountId: string,
  value: string | null,
): Promise<{ ok: true; value: VatId | null } | { ok: false; error: { readonly error: 'vat_id_invalid' } }> {
  const customerId = await deps.customers.ensureCustomer(accountId);
  const list = await deps.stripe.customers.listTaxIds(customerId);
  if (value !== null) {
    let created;
    try {
      created = await deps.stripe.customers.createTaxId(customerId, { type: 'eu_vat', value });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 400) return { ok: false, error: { error: 'vat_id_invalid' } };
      throw error;
    }
    for (const old of list.data.filter((t) => t.type === 'eu_vat' && t.id !== created.id)) await deps.stripe.customers.deleteTaxId(customerId, old.id);
    return { ok: true, value: { value: created.value, verification: created.verification?.status ?? 'unavailable' } };
  }
  for (const old of list.data.filter((t) => t.type === 'eu_vat')) await deps.stripe.customers.deleteTaxId(customerId, old.id);
  return { ok: true, value: null };
}
