import { accountStreamId } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import type { StripeCustomers } from '../../adapters/payments/customers';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import type { EventStore } from '../ports/event-store';
import { microUsdOfCents } from './amounts';

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

/** The account's invoices (at Stripe, for its customer) and manual-credit receipts, newest first. */
export async function billingDocuments(
  deps: { readonly stripe: StripeClient | null; readonly customers: StripeCustomers | null; readonly store: EventStore<DomainEvent> },
  accountId: string,
): Promise<BillingDocument[]> {
  const documents: BillingDocument[] = [];
  const customerId = deps.customers ? await deps.customers.customerOf(accountId) : null;
  if (deps.stripe && customerId !== null) {
    for await (const invoice of deps.stripe.invoices.list({ customer: customerId, limit: 100 })) {
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
  }
  const { events } = await deps.store.readStream(accountStreamId(accountId));
  for (const { event } of events) {
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
  return documents.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
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
