import { usd } from '../../../domain/money';
import { accountStreamId } from '../../../domain/account';
import { systemMetadata } from '../../../src/command-metadata';
import { startPaymentsHarness, verifyPurchasedCredit, type PaymentsHarness } from './harness';

/**
 * Every payment has a document (issue 15): a Checkout top-up is invoiced by Stripe with Stripe Tax
 * on top of the net credit and the customer's VAT id; a manual credit has a receipt with its
 * reference. Through the HTTP API, the Stripe stand-in and signed webhooks.
 */

let h: PaymentsHarness;
beforeAll(async () => {
  h = await startPaymentsHarness();
});
afterAll(async () => h?.stop());

const get = (path: string, key: string) => h.call('GET', path, key);

test('a Checkout top-up asks Stripe for an invoice, tax and the VAT id; the ledger credits the net amount once, the invoice shows the tax and downloads as a PDF', async () => {
  const eva = await h.openCustomer('Eva');
  const started = await h.call('POST', '/v1/billing/top-ups', eva.key, { amount_usd: '20.00' });
  expect(started.status).toBe(201);
  const asked = h.stripeServer.requests.find(
    (r) => r.path === '/v1/checkout/sessions' && r.method === 'POST' && (r.params['metadata'] as any)?.account_id === eva.accountId,
  )!;
  expect(asked.params).toMatchObject({
    invoice_creation: { enabled: 'true', invoice_data: { metadata: { account_id: eva.accountId, credit_cents: '2000' } } },
    automatic_tax: { enabled: 'true' },
    tax_id_collection: { enabled: 'true' },
  });

  // 19 % VAT on top: the card pays 23.80, the ledger credits 20.
  const { session, paymentIntent } = h.stripeServer.payCheckoutSession(started.body.checkout_session_id, { taxCents: 380 });
  const completed = h.stripeServer.event('checkout.session.completed', session);
  const succeeded = h.stripeServer.event('payment_intent.succeeded', paymentIntent);
  // Out of order and repeated: credited once.
  for (const event of [succeeded, completed, succeeded, completed]) expect((await h.deliver(event)).status).toBe(200);
  const credits = (await h.accountEvents(eva.accountId)).filter((e) => e.type === 'TopUpCompleted');
  expect(credits.map((e) => e.type === 'TopUpCompleted' && e.data.amount)).toEqual([usd('20')]);

  const list = await get('/v1/billing/invoices', eva.key);
  expect(list.status).toBe(200);
  expect(list.body.data).toEqual([
    expect.objectContaining({
      object: 'billing.invoice',
      id: session['invoice'],
      status: 'paid',
      subtotal_usd: '20.000000',
      tax_usd: '3.800000',
      total_usd: '23.800000',
      reverse_charge: false,
      download_url: `/v1/billing/invoices/${String(session['invoice'])}/pdf`,
    }),
  ]);
  const pdf = await fetch(`${h.tg.url}${list.body.data[0].download_url}`, { headers: { authorization: `Bearer ${eva.key}` } });
  expect(pdf.status).toBe(200);
  expect(pdf.headers.get('content-type')).toBe('application/pdf');
  const text = Buffer.from(await pdf.arrayBuffer()).toString('latin1');
  expect(text.startsWith('%PDF-')).toBe(true);
  expect(text).toContain('total USD 23.80 tax USD 3.80');

  // Another account cannot download it.
  const other = await h.openCustomer('Otto');
  const stolen = await get(`/v1/billing/invoices/${String(session['invoice'])}/pdf`, other.key);
  expect([stolen.status, stolen.body.error.code]).toEqual([404, 'invoice_not_found']);
  await verifyPurchasedCredit(h, eva.accountId, usd('20'));
});

test('a VAT id in the billing settings: verified, the next invoice applies the reverse charge; a removed one is gone', async () => {
  const bea = await h.openCustomer('Bea');
  expect((await get('/v1/billing/tax-id', bea.key)).body).toMatchObject({ vat_id: null, reverse_charge: false });
  const set = await h.call('PUT', '/v1/billing/tax-id', bea.key, { vat_id: 'FR 12.345678901' });
  expect(set.status).toBe(200);
  expect(set.body).toEqual({ object: 'billing.tax_id', vat_id: 'FR12345678901', verification: 'verified', reverse_charge: true });
  const bad = await h.call('PUT', '/v1/billing/tax-id', bea.key, { vat_id: 'F' });
  expect([bad.status, bad.body.error.param]).toEqual([400, 'vat_id']);
  // What Stripe was asked: one tax id on Bea's customer.
  const customerId = (await h.sql<{ customer_id: string }>('SELECT customer_id FROM stripe_customers WHERE account_id = $1', [bea.accountId]))[0]!.customer_id;
  expect(h.stripeServer.taxIds.get(customerId)?.map((t) => t['value'])).toEqual(['FR12345678901']);

  const started = await h.call('POST', '/v1/billing/top-ups', bea.key, { amount_usd: '15.00' });
  const { session } = h.stripeServer.payCheckoutSession(started.body.checkout_session_id, { taxCents: 0 });
  expect((await h.deliver(h.stripeServer.event('checkout.session.completed', session))).body.outcome).toBe('credited');
  const list = await get('/v1/billing/invoices', bea.key);
  expect(list.body.data[0]).toMatchObject({ subtotal_usd: '15.000000', tax_usd: '0.000000', reverse_charge: true });

  const removed = await h.call('PUT', '/v1/billing/tax-id', bea.key, { vat_id: null });
  expect(removed.body).toMatchObject({ vat_id: null });
  expect(h.stripeServer.taxIds.get(customerId)).toEqual([]);
});

test('a manual credit recorded by an operator has a receipt with its reference', async () => {
  const max = await h.openCustomer('Max');
  const credited = await h.call('POST', `/admin/accounts/${max.accountId}/top-ups`, h.tg.adminKey, {
    amount_usd: '250',
    reference: 'SEPA-2026-0042',
    reason: 'bank transfer',
  });
  expect(credited.status).toBe(201);
  const list = await get('/v1/billing/invoices', max.key);
  expect(list.body.data).toEqual([
    expect.objectContaining({
      object: 'billing.receipt',
      id: 'receipt:manual:SEPA-2026-0042',
      reference: 'SEPA-2026-0042',
      total_usd: '250.000000',
      download_url: null,
    }),
  ]);
  const { state } = await h.tg.gateway.ledger.accounts.load(accountStreamId(max.accountId));
  expect(state.purchased).toBe(usd('250'));
});

test("the invoice list is Stripe's answer kept a while: a second load asks Stripe nothing; an invoice webhook or a payment on the ledger makes the next load ask again", async () => {
  const ida = await h.openCustomer('Ida');
  const { session } = await h.checkout(ida, '12.00');
  expect((await h.deliver(h.stripeServer.event('checkout.session.completed', session))).body.outcome).toBe('credited');
  const customerId = (await h.sql<{ customer_id: string }>('SELECT customer_id FROM stripe_customers WHERE account_id = $1', [ida.accountId]))[0]!.customer_id;
  const stripeCalls = () =>
    h.stripeServer.requests.filter((r) => r.method === 'GET' && r.path === '/v1/invoices' && r.params['customer'] === customerId).length;
  const invoiceId = String(session['invoice']);

  const first = await get('/v1/billing/invoices', ida.key);
  expect(first.body.data).toEqual([expect.objectContaining({ id: invoiceId, status: 'paid', subtotal_usd: '12.000000' })]);
  const asked = stripeCalls();
  expect(asked).toBe(1);
  const second = await get('/v1/billing/invoices', ida.key);
  expect(second.body).toEqual(first.body);
  expect(stripeCalls()).toBe(asked);

  // Stripe changes the invoice (an operator voids it in Stripe's Dashboard, say): unseen until Stripe says so.
  h.stripeServer.invoices.get(invoiceId)!['status'] = 'void';
  expect((await get('/v1/billing/invoices', ida.key)).body.data[0].status).toBe('paid');
  expect(stripeCalls()).toBe(asked);
  expect((await h.deliver(h.stripeServer.event('invoice.voided', h.stripeServer.invoices.get(invoiceId)!))).status).toBe(200);
  expect((await get('/v1/billing/invoices', ida.key)).body.data[0]).toMatchObject({ id: invoiceId, status: 'void' });
  expect(stripeCalls()).toBe(asked + 1);
  await get('/v1/billing/invoices', ida.key);
  expect(stripeCalls()).toBe(asked + 1);

  // A payment credited on the ledger by any instance (here straight through the ledger, as another
  // instance's webhook would) makes the cached list stale here too: its invoice may be new.
  const credited = await h.tg.gateway.ledger.accounts.handle(accountStreamId(ida.accountId), {
    type: 'CompleteTopUp',
    data: { paymentReference: 'pi_from_another_instance', amount: usd('10') },
    metadata: systemMetadata('test'),
  });
  expect(credited.ok && credited.events.map((e) => e.event.type)).toEqual(['TopUpCompleted']);
  await get('/v1/billing/invoices', ida.key);
  expect(stripeCalls()).toBe(asked + 2);
  await get('/v1/billing/invoices', ida.key);
  expect(stripeCalls()).toBe(asked + 2);
});
