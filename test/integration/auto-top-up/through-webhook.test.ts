import { accountStreamId } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { systemMetadata } from '../../../src/command-metadata';
import { AUTO_TOP_UP_METADATA } from '../../../src/process-managers/auto-top-up';
import { startPaymentsHarness, verifyPurchasedCredit, type PaymentsHarness } from '../payments/harness';
import { spend as spendOnLedger } from '../../support/e2e-setup';
import { until } from '../../support/wait';

/**
 * Auto top-up as it runs in the gateway (Stripe configured, Stripe Tax on): each auto top-up is
 * its own Stripe invoice, for the net amount with tax on top, paid off-session with the card saved
 * by a Checkout top-up; the payments webhook (invoice.paid or payment_intent.succeeded, whichever
 * comes first) credits the NET amount once and ends the attempt.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

/** A customer with USD 20 bought through Checkout (card saved) and auto top-up of USD 25 below USD 10. */
async function customerWithSavedCard(name: string) {
  const customer = await h.openCustomer(name);
  const { session, paymentIntent } = await h.checkout(customer, '20');
  expect((await h.deliver(h.stripeServer.event('checkout.session.completed', session))).status).toBe(200);
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).status).toBe(200);
  const configured = await h.call('PUT', '/v1/billing/auto-top-up', customer.key, { threshold_usd: '10', amount_usd: '25' });
  expect(configured.status).toBe(200);
  return customer;
}

const spend = (accountId: string, costUsd: string) => spendOnLedger(h.tg.gateway.ledger, accountId, costUsd, 'payments-test-model');

/** Once the charge went through (the PaymentIntent exists before it is confirmed). */
const succeededIntentsOf = (accountId: string) => {
  const found = offSessionIntentsOf(accountId).filter((pi) => pi['status'] === 'succeeded');
  return found.length > 0 ? found : undefined;
};

function offSessionIntentsOf(accountId: string) {
  return [...h.stripeServer.paymentIntents.values()].filter(
    (pi) => (pi['metadata'] as Record<string, string> | undefined)?.[AUTO_TOP_UP_METADATA.accountId] === accountId,
  );
}

async function customerIdOf(accountId: string): Promise<string> {
  return (await h.sql<{ customer_id: string }>('SELECT customer_id FROM stripe_customers WHERE account_id = $1', [accountId]))[0]!.customer_id;
}

/** The invoice Stripe made for an auto top-up, once paid (or void, after a decline). */
function autoTopUpInvoicesOf(customerId: string) {
  return [...h.stripeServer.invoices.values()].filter(
    (i) => i['customer'] === customerId && (i['metadata'] as Record<string, string>)[AUTO_TOP_UP_METADATA.attemptId] !== undefined,
  );
}

const topUpsOf = async (accountId: string) => (await h.accountEvents(accountId)).filter((e) => e.type === 'TopUpCompleted').map((e) => e.data);

test('an auto top-up is its own invoice with VAT on top, paid off-session; the webhooks, out of order and repeated, credit the net amount once', async () => {
  h.stripeServer.setInvoiceTaxRate(1_900);
  try {
    const ada = await customerWithSavedCard('Ada');
    const customerId = await customerIdOf(ada.accountId);
    await spend(ada.accountId, '12');
    const [intent] = await until(() => succeededIntentsOf(ada.accountId), { timeoutMs: 10_000 });
    // 25.00 net, 19 % VAT on top: the card pays 29.75.
    expect(intent).toMatchObject({ amount: 2_975, status: 'succeeded' });
    const metadata = intent!['metadata'] as Record<string, string>;
    const [invoice] = autoTopUpInvoicesOf(customerId);
    expect(invoice).toMatchObject({ status: 'paid', subtotal: 2_500, tax: 475, total: 2_975, amount_paid: 2_975, customer_tax_exempt: 'none' });
    expect(metadata).toMatchObject({ credit_cents: '2500', [AUTO_TOP_UP_METADATA.invoiceId]: invoice!.id });

    // What Stripe was asked: an invoice with Stripe Tax, one tax-exclusive item for the net amount,
    // finalized, and a charge confirmed off-session with the saved card, each under the attempt's own key.
    const asked = h.stripeServer.requests.filter((r) => r.method === 'POST' && r.idempotencyKey?.startsWith('tollgate-auto-top-up-'));
    expect(asked.map((r) => r.path.replace(/(in|pi)_test_[0-9a-f]+/, ':id'))).toEqual([
      '/v1/invoices',
      '/v1/invoiceitems',
      '/v1/invoices/:id/finalize',
      '/v1/payment_intents',
      '/v1/invoices/:id/attach_payment',
      '/v1/payment_intents/:id/confirm',
    ]);
    expect(new Set(asked.map((r) => r.idempotencyKey)).size).toBe(6);
    expect(asked[0]!.params).toMatchObject({ customer: customerId, automatic_tax: { enabled: 'true' }, auto_advance: 'false' });
    expect(asked[1]!.params).toMatchObject({ invoice: invoice!.id, amount: '2500', currency: 'usd', tax_behavior: 'exclusive' });
    expect(asked[5]!.params).toMatchObject({ off_session: 'true' });

    const pending = (await h.call('GET', '/v1/billing/auto-top-up', ada.key)).body;
    expect(pending.pending_attempt).toMatchObject({ attempt_id: metadata[AUTO_TOP_UP_METADATA.attemptId], amount_usd: '25.000000' });

    const paid = h.stripeServer.event('invoice.paid', invoice!);
    const succeeded = h.stripeServer.event('payment_intent.succeeded', intent!);
    const outcomes: string[] = [];
    for (const event of [paid, succeeded, paid, succeeded]) {
      const delivered = await h.deliver(event);
      expect(delivered.status).toBe(200);
      outcomes.push(delivered.body.outcome);
    }
    expect(outcomes).toEqual(['credited', 'already_applied', 'credited', 'already_applied']);
    const view = (await h.call('GET', '/v1/billing/auto-top-up', ada.key)).body;
    expect(view).toMatchObject({ enabled: true, pending_attempt: null, last_failure: null, account_status: 'open' });
    expect((await h.call('GET', '/v1/account', ada.key)).body).toMatchObject({ purchased_usd: '33.000000' });
    // Net of tax, once, by the PaymentIntent that paid the invoice (refunds and disputes find it by that).
    expect((await topUpsOf(ada.accountId)).filter((t) => 'autoTopUpAttemptId' in t && t.autoTopUpAttemptId != null)).toEqual([
      { paymentReference: intent!['id'], amount: usd('25'), autoTopUpAttemptId: pending.pending_attempt.attempt_id },
    ]);

    // The invoice is the customer's, with its PDF.
    const list = await h.call('GET', '/v1/billing/invoices', ada.key);
    const shown = list.body.data.find((d: { id: string }) => d.id === invoice!.id);
    expect(shown).toMatchObject({
      status: 'paid',
      subtotal_usd: '25.000000',
      tax_usd: '4.750000',
      total_usd: '29.750000',
      reverse_charge: false,
      download_url: `/v1/billing/invoices/${invoice!.id}/pdf`,
    });
    const pdf = await fetch(`${h.tg.url}${shown.download_url}`, { headers: { authorization: `Bearer ${ada.key}` } });
    expect([pdf.status, pdf.headers.get('content-type')]).toEqual([200, 'application/pdf']);
    expect(Buffer.from(await pdf.arrayBuffer()).toString('latin1')).toContain('total USD 29.75 tax USD 4.75');

    await verifyPurchasedCredit(h, ada.accountId, usd('33'));
  } finally {
    h.stripeServer.setInvoiceTaxRate(0);
  }
});

test('a negative balance with a verified VAT id: the debt and the amount in one reverse-charge invoice, credited net once', async () => {
  h.stripeServer.setInvoiceTaxRate(1_900);
  try {
    const cy = await customerWithSavedCard('Cy');
    expect((await h.call('PUT', '/v1/billing/tax-id', cy.key, { vat_id: 'FR12345678901' })).status).toBe(200);
    const customerId = await customerIdOf(cy.accountId);
    // Reserved USD 1, cost USD 23.25 on USD 20 of credit: USD 3.25 in debt.
    const stream = accountStreamId(cy.accountId);
    const { ledger } = h.tg.gateway;
    const placed = await ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: { requestId: 'req_debt', keyId: 'k', model: 'payments-test-model', operation: 'chat', amount: usd('1'), priceVersion: 1 },
      metadata: systemMetadata('test'),
    });
    expect(placed.ok).toBe(true);
    const settled = await ledger.accounts.handle(stream, {
      type: 'SettleReservation',
      data: {
        requestId: 'req_debt',
        usage: { inputTokens: 23_250_000n, outputTokens: 0n, estimated: false },
        price: { inputPerMillion: usd('1'), outputPerMillion: 0n, version: 1 },
        outcome: 'completed',
      },
      metadata: systemMetadata('test'),
    });
    expect(settled.ok).toBe(true);

    const [intent] = await until(() => succeededIntentsOf(cy.accountId), { timeoutMs: 10_000 });
    const [invoice] = autoTopUpInvoicesOf(customerId);
    // Reverse charge: no VAT, the customer's VAT id on the invoice.
    expect(invoice).toMatchObject({ status: 'paid', subtotal: 2_825, tax: 0, total: 2_825, customer_tax_exempt: 'reverse' });
    expect(invoice!['customer_tax_ids']).toEqual([{ type: 'eu_vat', value: 'FR12345678901' }]);
    expect(intent).toMatchObject({ amount: 2_825 });

    const succeeded = h.stripeServer.event('payment_intent.succeeded', intent!);
    const paid = h.stripeServer.event('invoice.paid', invoice!);
    for (const event of [succeeded, paid, succeeded, paid]) expect((await h.deliver(event)).status).toBe(200);
    const autoTopUps = (await topUpsOf(cy.accountId)).filter((t) => 'autoTopUpAttemptId' in t && t.autoTopUpAttemptId != null);
    expect(autoTopUps.map((t) => t.amount)).toEqual([usd('28.25')]);
    // The debt is paid and the configured amount is there to spend.
    expect((await h.call('GET', '/v1/account', cy.key)).body).toMatchObject({ purchased_usd: '25.000000', status: 'open' });
    const list = await h.call('GET', '/v1/billing/invoices', cy.key);
    expect(list.body.data.find((d: { id: string }) => d.id === invoice!.id)).toMatchObject({ tax_usd: '0.000000', reverse_charge: true });
    await verifyPurchasedCredit(h, cy.accountId, usd('25'));
  } finally {
    h.stripeServer.setInvoiceTaxRate(0);
  }
});

test('authentication_required off-session: the failure is recorded, the account suspended, and the API says why', async () => {
  const bo = await customerWithSavedCard('Bo');
  h.stripeServer.decline({ code: 'authentication_required' });
  await spend(bo.accountId, '12');
  const view = await until(
    async () => {
      const body = (await h.call('GET', '/v1/billing/auto-top-up', bo.key)).body;
      // Account reads come from the live log's cache, which may trail the attempts table by a moment.
      return body.last_failure && body.account_status === 'suspended' ? body : undefined;
    },
    { timeoutMs: 10_000 },
  );
  expect(view).toMatchObject({
    account_status: 'suspended',
    suspension_reason: 'auto_top_up_failed',
    pending_attempt: null,
    last_failure: { reason: 'authentication_required' },
  });
  expect((await h.call('GET', '/v1/account', bo.key)).body).toMatchObject({ status: 'suspended', suspension_reason: 'auto_top_up_failed' });
});

test('a declined card: the failure is recorded, the account suspended, the invoice voided, and nothing credited', async () => {
  const di = await customerWithSavedCard('Di');
  const customerId = await customerIdOf(di.accountId);
  h.stripeServer.declineFor(customerId, 'card_declined');
  await spend(di.accountId, '12');
  const view = await until(
    async () => {
      const body = (await h.call('GET', '/v1/billing/auto-top-up', di.key)).body;
      // Account reads come from the live log's cache, which may trail the attempts table by a moment.
      return body.last_failure && body.account_status === 'suspended' ? body : undefined;
    },
    { timeoutMs: 10_000 },
  );
  expect(view).toMatchObject({ account_status: 'suspended', suspension_reason: 'auto_top_up_failed', last_failure: { reason: 'card_declined' } });
  const invoices = await until(() => {
    const found = autoTopUpInvoicesOf(customerId);
    return found[0]?.['status'] === 'void' ? found : undefined;
  });
  expect(invoices).toHaveLength(1);
  // A redelivered or stray payment_intent event of the declined charge credits nothing.
  const [intent] = offSessionIntentsOf(di.accountId);
  expect(intent).toMatchObject({ status: 'requires_payment_method' });
  expect((await topUpsOf(di.accountId)).map((t) => t.amount)).toEqual([usd('20')]);
  await verifyPurchasedCredit(h, di.accountId, usd('8'));
});
