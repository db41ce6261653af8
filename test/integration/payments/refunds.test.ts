import { addModel } from '../../support/e2e-setup';
import { settleUsage, paidTopUp, startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Refunds of purchased credit minus usage (never promo), split over the account's card
 * payments newest first, one Stripe refund per payment with its own idempotency key, recorded
 * on the ledger when Stripe confirms; and account closure, which refunds what remains.
 */

const MODEL = 'refund-test-model';
let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
  await addModel(h.tg.gateway.ledger, MODEL, { chat: { input: '1', output: '1' } });
});

afterAll(async () => {
  await h?.stop();
});

/** Usage of `tokens` input tokens at USD 1 per million (the model's price here): the cost is tokens micro-USD. */
const use = (accountId: string, requestId: string, tokens: bigint) => settleUsage(h, MODEL, accountId, requestId, tokens);

const refundCalls = () => h.stripeServer.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds');

test('refund of a partly used balance across two payments: newest first, promo never, one idempotency key per payment', async () => {
  const alice = await h.openCustomer('Alice');
  const promo = await h.call('POST', `/admin/accounts/${alice.accountId}/promo-grants`, h.tg.adminKey, {
    amount_usd: '5',
    expires_at: new Date(Date.now() + 3_600_000).toISOString(),
    reason: 'welcome',
  });
  expect(promo.status).toBe(201);
  const older = await paidTopUp(h, alice, '20');
  const newer = await paidTopUp(h, alice, '30');
  // 7.345678 used: 5 from promo first, 2.345678 from purchased; refundable 47.654322 -> 47.65 in whole cents.
  await use(alice.accountId, 'req-alice-1', 7_345_678n);

  const before = refundCalls().length;
  const refund = await h.call('POST', '/v1/billing/refunds', alice.key, {});
  expect(refund.status).toBe(200);
  expect(refund.body).toMatchObject({
    object: 'billing.refund',
    requested_usd: '47.650000',
    refunded_usd: '47.650000',
    parts: [
      { payment_intent: newer, amount_usd: '30.000000', status: 'recorded' },
      { payment_intent: older, amount_usd: '17.650000', status: 'recorded' },
    ],
    purchased_usd: '0.004322',
    promo_usd: '0.000000',
  });

  // At Stripe: one refund per PaymentIntent, newest first, amounts in cents, distinct idempotency keys.
  const calls = refundCalls().slice(before);
  const refundId = refund.body.refund_id as string;
  expect(calls.map((c) => [c.params['payment_intent'], c.params['amount'], c.idempotencyKey])).toEqual([
    [newer, '3000', `tollgate-refund-${refundId}-${newer}`],
    [older, '1765', `tollgate-refund-${refundId}-${older}`],
  ]);
  expect(calls[0]!.params['metadata']).toEqual({ account_id: alice.accountId, tollgate_refund_id: `${refundId}:${newer}` });

  const issued = (await h.accountEvents(alice.accountId)).filter((e) => e.type === 'RefundIssued');
  expect(issued.map((e) => [e.data, e.metadata.actor])).toEqual([
    [
      { refundId: `${refundId}:${newer}`, amount: 30_000_000n, paymentReferences: [newer] },
      { kind: 'customer_key', keyId: alice.keyId },
    ],
    [
      { refundId: `${refundId}:${older}`, amount: 17_650_000n, paymentReferences: [older] },
      { kind: 'customer_key', keyId: alice.keyId },
    ],
  ]);

  // Nothing left in whole cents: asking again for a cent is refused, and Stripe is not asked.
  const again = await h.call('POST', '/v1/billing/refunds', alice.key, { amount_usd: '0.01' });
  expect(again.status).toBe(409);
  expect(again.body.error.code).toBe('exceeds_refundable_credit');
  expect(refundCalls().length).toBe(before + 2);
});

test('a refund request larger than refundable: 409 exceeds_refundable_credit with the amounts, nothing refunded', async () => {
  const bob = await h.openCustomer('Bob');
  await paidTopUp(h, bob, '10');
  await use(bob.accountId, 'req-bob-1', 2_500_000n);
  const before = refundCalls().length;
  const refused = await h.call('POST', '/v1/billing/refunds', bob.key, { amount_usd: '7.51' });
  expect(refused.status).toBe(409);
  expect(refused.body.error).toMatchObject({ type: 'invalid_request_error', code: 'exceeds_refundable_credit' });
  expect(refused.body.error.message).toContain('refundable USD 7.500000');
  expect(refused.body.error.message).toContain('requested USD 7.510000');
  expect(refundCalls().length).toBe(before);
  expect((await h.accountEvents(bob.accountId)).filter((e) => e.type === 'RefundIssued')).toEqual([]);
  // Sub-cent amounts cannot go back to a card.
  expect((await h.call('POST', '/v1/billing/refunds', bob.key, { amount_usd: '1.001' })).status).toBe(400);
  // Exactly the refundable amount goes through.
  expect((await h.call('POST', '/v1/billing/refunds', bob.key, { amount_usd: '7.50' })).body).toMatchObject({
    refunded_usd: '7.500000',
    purchased_usd: '0.000000',
  });
});

test('an admin refund is audited with the admin as actor', async () => {
  const carol = await h.openCustomer('Carol');
  const pi = await paidTopUp(h, carol, '12');
  const refund = await h.call('POST', `/admin/accounts/${carol.accountId}/refunds`, h.tg.adminKey, { amount_usd: '2', reason: 'goodwill' });
  expect(refund.status).toBe(200);
  expect(refund.body).toMatchObject({ parts: [{ payment_intent: pi, amount_usd: '2.000000', status: 'recorded' }], purchased_usd: '10.000000' });
  const [issued] = (await h.accountEvents(carol.accountId)).filter((e) => e.type === 'RefundIssued');
  expect(issued!.metadata.actor).toEqual({ kind: 'admin', adminId: expect.any(String) });
  expect(issued!.metadata.correlationId).toBe('reason: goodwill');
  // A customer key cannot use the admin route.
  expect((await h.call('POST', `/admin/accounts/${carol.accountId}/refunds`, carol.key, { reason: 'x' })).status).toBe(403);
});

test('a refund Stripe has not confirmed yet is recorded by the refund.updated webhook, once', async () => {
  const dan = await h.openCustomer('Dan');
  const pi = await paidTopUp(h, dan, '10');
  h.stripeServer.setRefundStatus('pending');
  try {
    const pending = await h.call('POST', '/v1/billing/refunds', dan.key, { amount_usd: '4' });
    expect(pending.status).toBe(202);
    expect(pending.body.parts).toEqual([{ payment_intent: pi, amount_usd: '4.000000', stripe_refund_id: expect.stringMatching(/^re_/), status: 'pending' }]);
    expect((await h.accountEvents(dan.accountId)).filter((e) => e.type === 'RefundIssued')).toEqual([]);

    const stripeRefund = h.stripeServer.refunds.get(pending.body.parts[0].stripe_refund_id)!;
    const updated = h.stripeServer.event('refund.updated', { ...stripeRefund, status: 'succeeded' });
    expect((await h.deliver(updated)).body.outcome).toBe('refund_recorded');
    expect((await h.deliver(h.stripeServer.event('refund.updated', { ...stripeRefund, status: 'succeeded' }))).body.outcome).toBe('already_applied');
    const issued = (await h.accountEvents(dan.accountId)).filter((e) => e.type === 'RefundIssued');
    expect(issued.map((e) => e.data)).toEqual([{ refundId: `${pending.body.refund_id}:${pi}`, amount: 4_000_000n, paymentReferences: [pi] }]);
  } finally {
    h.stripeServer.setRefundStatus('succeeded');
  }
});

test('a refund Stripe declines is reported (502) and not recorded', async () => {
  const erin = await h.openCustomer('Erin');
  await paidTopUp(h, erin, '10');
  h.stripeServer.decline({ refunds: true });
  const declined = await h.call('POST', '/v1/billing/refunds', erin.key, {});
  expect(declined.status).toBe(502);
  expect(declined.body.parts).toMatchObject([{ status: 'failed', stripe_refund_id: null }]);
  expect((await h.accountEvents(erin.accountId)).filter((e) => e.type === 'RefundIssued')).toEqual([]);
});

test('closing an account refunds what remains, then closes it', async () => {
  const gina = await h.openCustomer('Gina');
  const pi = await paidTopUp(h, gina, '10');
  await use(gina.accountId, 'req-gina-1', 1_000_000n);
  const closed = await h.call('POST', '/v1/account/close', gina.key);
  expect(closed.status).toBe(200);
  expect(closed.body).toMatchObject({
    status: 'closed',
    refund: { refunded_usd: '9.000000', parts: [{ payment_intent: pi, amount_usd: '9.000000', status: 'recorded' }] },
  });
  const types = (await h.accountEvents(gina.accountId)).map((e) => e.type);
  expect(types.slice(-2)).toEqual(['RefundIssued', 'AccountClosed']);
  // Closed: the key that closed it is revoked, and no more top-ups, not even by an operator.
  expect((await h.call('POST', '/v1/billing/top-ups', gina.key, { amount_usd: '10' })).body.error.code).toBe('invalid_api_key');
  const manual = await h.call('POST', `/admin/accounts/${gina.accountId}/top-ups`, h.tg.adminKey, { amount_usd: '10', reference: 'bank-1', reason: 'test' });
  expect(manual.body.error.code).toBe('account_closed');
});
