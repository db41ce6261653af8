import { accountStreamId } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { systemMetadata } from '../../../src/command-metadata';
import { until } from '../../support/wait';
import { startPaymentsHarness, verifyPurchasedCredit, type PaymentsHarness } from './harness';

/**
 * One account through every money flow of issue 15, in one gateway with payments on: a Checkout
 * top-up with tax and its invoice, promo granted and partly revoked, usage, auto top-up after a
 * settlement that left it negative (debt and configured amount in one charge), a dispute won
 * (delivered out of order) and one lost, a Stripe Dashboard refund, a manual credit and its
 * receipt, closure, a claim paid by payout, and the forfeiture of the rest 360 days later (the
 * forfeiture schedule's clock moved). Then `tollgate verify` passes and the whole journal's trial
 * balance is zero.
 */

const DAY_MS = 86_400_000;
let clockOffsetMs = 0;
let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness({
    forfeitureClock: () => new Date(Date.now() + clockOffsetMs),
    env: { TOLLGATE_RETENTION_CHECK_INTERVAL_S: '0.2', TOLLGATE_BILLING_POLL_INTERVAL_S: '0.1' },
  });
});
afterAll(async () => h?.stop());

test('one account through every flow: the ledger, the journal and tollgate verify agree at the end', async () => {
  const w = await h.openCustomer('Wanda');
  const stream = accountStreamId(w.accountId);
  const state = async () => (await h.tg.gateway.ledger.accounts.load(stream)).state;
  const admin = (method: string, path: string, body?: unknown) => h.call(method, path, h.tg.adminKey, body);

  // 1. Checkout top-up of 50 with 9.50 VAT on top: credited 50 once, whatever the webhook order; invoiced.
  const started = await h.call('POST', '/v1/billing/top-ups', w.key, { amount_usd: '50.00' });
  const { session, paymentIntent: first } = h.stripeServer.payCheckoutSession(started.body.checkout_session_id, { taxCents: 950 });
  for (const event of [h.stripeServer.event('payment_intent.succeeded', first), h.stripeServer.event('checkout.session.completed', session)]) {
    expect((await h.deliver(event)).status).toBe(200);
    expect((await h.deliver(event)).body.duplicate).toBe(true);
  }
  expect((await state()).purchased).toBe(usd('50'));
  const invoices = await h.call('GET', '/v1/billing/invoices', w.key);
  expect(invoices.body.data).toEqual([expect.objectContaining({ subtotal_usd: '50.000000', tax_usd: '9.500000', total_usd: '59.500000' })]);

  // 2. Promo 5, 2 of it revoked.
  const grant = await admin('POST', `/admin/accounts/${w.accountId}/promo-grants`, {
    amount_usd: '5',
    expires_at: new Date(Date.now() + 30 * DAY_MS).toISOString(),
    reason: 'welcome',
  });
  expect(grant.status).toBe(201);
  expect(
    (await admin('POST', `/admin/accounts/${w.accountId}/promo-grants/${grant.body.grant_id}/revoke`, { amount_usd: '2', reason: 'over-granted' })).status,
  ).toBe(200);

  // 3. Auto top-up of 20 below 10, then a request reserved at 1 that cost 46: 3 promo, 43 purchased... and 3 more: in debt by 3 - wait, 50 - 43 = 7, so 46 - 3 promo = 43, leaving 7; a second one costing 10 leaves -3.
  const configured = await h.call('PUT', '/v1/billing/auto-top-up', w.key, { threshold_usd: '5', amount_usd: '20' });
  expect(configured.status).toBe(200);
  await settle(stream, 'req_w_1', usd('1'), 46_000_000n);
  await settle(stream, 'req_w_2', usd('1'), 10_000_000n);
  // One charge of the debt (3) and the configured amount (20).
  const autoCharge = await until(() => h.stripeServer.succeededPaymentIntents(String(first['customer'])).find((pi) => pi.id !== first.id), {
    timeoutMs: 30_000,
  });
  expect(autoCharge['amount']).toBe(2_300);
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', autoCharge))).body.outcome).toBe('credited');
  expect((await state()).purchased).toBe(usd('20'));

  // 4. A dispute of 5 on the first payment, closed (won) delivered before created: applied once, reopened.
  const won = h.stripeServer.openDispute(first.id, { amount: 500 });
  const wonCreated = h.stripeServer.event('charge.dispute.created', won);
  expect((await h.deliver(h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(won.id, 'won')))).body.outcome).toBe('dispute_won');
  expect((await h.deliver(wonCreated)).body.outcome).toBe('already_applied');
  expect((await state()).status).toBe('open');

  // 5. A dispute of 8 on the auto top-up, lost: debited; the operator reinstates.
  const lost = h.stripeServer.openDispute(autoCharge.id, { amount: 800 });
  expect((await h.deliver(h.stripeServer.event('charge.dispute.created', lost))).body.outcome).toBe('dispute_opened');
  expect((await h.deliver(h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(lost.id, 'lost')))).body.outcome).toBe('dispute_lost');
  expect((await state()).purchased).toBe(usd('12'));
  expect((await admin('POST', `/admin/accounts/${w.accountId}/reinstate`)).status).toBe(200);

  // 6. A refund of 2 made in the Stripe Dashboard, delivered twice: applied once.
  const dashboard = h.stripeServer.dashboardRefund(first.id, { amount: 200 });
  const refunded = h.stripeServer.event('refund.created', dashboard);
  await h.deliver(refunded);
  await h.deliver(h.stripeServer.event('refund.updated', dashboard));
  expect((await state()).purchased).toBe(usd('10'));

  // 7. A manual credit of 30 by bank transfer: its receipt names the reference.
  expect((await admin('POST', `/admin/accounts/${w.accountId}/top-ups`, { amount_usd: '30', reference: 'SEPA-W-1', reason: 'bank transfer' })).status).toBe(
    201,
  );
  const documents = await h.call('GET', '/v1/billing/invoices', w.key);
  expect(documents.body.data[0]).toMatchObject({ object: 'billing.receipt', reference: 'SEPA-W-1', total_usd: '30.000000' });

  // 8. Closure: both card payments were disputed, so nothing goes back to a card; 40 stays owed, every key revoked.
  const closed = await h.call('POST', '/v1/account/close', w.key);
  expect([closed.status, closed.body.status]).toEqual([200, 'closed']);
  expect((await h.call('GET', '/v1/account', w.key)).status).toBe(401);

  // 9. A claim of 25 within the period, paid by bank transfer.
  const claim = await admin('POST', `/admin/accounts/${w.accountId}/refund-claims`, { amount_usd: '25', reason: 'customer asked' });
  expect(claim.body).toMatchObject({ claimed_usd: '25.000000', outstanding_usd: '25.000000' });
  expect(
    (await admin('POST', `/admin/accounts/${w.accountId}/payouts`, { method: 'bank_transfer', reference: 'OUT-W-1', amount_usd: '25', reason: 'claim' }))
      .status,
  ).toBe(201);

  // 10. 361 days on, the schedule forfeits the unclaimed 15.
  clockOffsetMs = 361 * DAY_MS;
  const forfeited = await until(async () => (await h.accountEvents(w.accountId)).find((e) => e.type === 'PurchasedCreditForfeited'), { timeoutMs: 30_000 });
  expect(forfeited.data).toEqual({ amount: usd('15'), reason: 'claim_period_over' });

  // The end: nothing owed, verify passes, the journal balances as a whole.
  const end = await state();
  expect([end.purchased, end.totalForfeited, end.totalDisputeLosses, end.totalClaimed]).toEqual([0n, usd('15'), usd('8'), usd('25')]);
  await verifyPurchasedCredit(h, w.accountId, 0n);
  const [trial] = await h.sql<{ total: string; lines: string }>(
    'SELECT coalesce(sum(amount), 0)::text AS total, count(*)::text AS lines FROM journal_postings',
  );
  expect(trial!.total).toBe('0');
  expect(Number(trial!.lines)).toBeGreaterThan(20);
});

/** A request reserved at `reserved` that cost `tokens` micro-USD (USD 1 per million tokens). */
async function settle(stream: string, requestId: string, reserved: bigint, tokens: bigint): Promise<void> {
  const { ledger } = h.tg.gateway;
  const placed = await ledger.accounts.handle(stream, {
    type: 'PlaceReservation',
    data: { requestId, keyId: 'k_walk', model: 'payments-test-model', operation: 'chat', amount: reserved, priceVersion: 1 },
    metadata: systemMetadata('test'),
  });
  if (!placed.ok) throw new Error(`reservation refused: ${placed.error.error}`);
  const settled = await ledger.accounts.handle(stream, {
    type: 'SettleReservation',
    data: {
      requestId,
      usage: { inputTokens: tokens, outputTokens: 0n, estimated: false },
      price: { inputPerMillion: usd('1'), outputPerMillion: usd('1'), version: 1 },
      outcome: 'completed',
    },
    metadata: systemMetadata('test'),
  });
  if (!settled.ok) throw new Error(`settlement refused: ${settled.error.error}`);
}
