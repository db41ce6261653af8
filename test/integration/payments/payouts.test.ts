import { verifyPurchasedCredit, startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Payouts outside the card, recorded by an operator (POST /admin/accounts/:id/payouts): credit
 * bought by bank transfer on a closed account is no longer stranded; card refunds and payouts
 * draw on one refundable amount, so nothing is paid back twice.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

test('bank-transfer credit left on a closed account is paid out once, audited, limited to what is refundable', async () => {
  const ivy = await h.openCustomer('Ivy');
  const credited = await h.call('POST', `/admin/accounts/${ivy.accountId}/top-ups`, h.tg.adminKey, {
    amount_usd: '30',
    reference: 'bank-ivy',
    reason: 'bank transfer',
  });
  expect(credited.status).toBe(201);
  // Closing refunds what can go to a card: nothing here, so the credit stays on the closed account.
  const closed = await h.call('POST', '/v1/account/close', ivy.key);
  expect([closed.status, closed.body.status]).toEqual([200, 'closed']);

  const body = { method: 'bank_transfer', reference: 'SEPA-2026-0042', amount_usd: '30', reason: 'closed account, credit bought by bank transfer' };
  expect((await h.call('POST', `/admin/accounts/${ivy.accountId}/payouts`, ivy.key, body)).status).toBe(401);
  const tooMuch = await h.call('POST', `/admin/accounts/${ivy.accountId}/payouts`, h.tg.adminKey, { ...body, amount_usd: '30.01' });
  expect([tooMuch.status, tooMuch.body.error.code]).toEqual([409, 'exceeds_refundable_credit']);
  const paid = await h.call('POST', `/admin/accounts/${ivy.accountId}/payouts`, h.tg.adminKey, body);
  expect(paid.status).toBe(201);
  expect(paid.body).toMatchObject({ payout_id: 'payout:bank_transfer:SEPA-2026-0042', applied: true, status: 'closed', purchased_usd: '0.000000' });
  const again = await h.call('POST', `/admin/accounts/${ivy.accountId}/payouts`, h.tg.adminKey, body);
  expect([again.status, again.body.applied]).toEqual([200, false]);
  const more = await h.call('POST', `/admin/accounts/${ivy.accountId}/payouts`, h.tg.adminKey, { ...body, reference: 'SEPA-2026-0043', amount_usd: '1' });
  expect(more.body.error.code).toBe('exceeds_refundable_credit');

  expect((await h.accountEvents(ivy.accountId)).filter((e) => e.type === 'PayoutRecorded').map((e) => e.data)).toEqual([
    { payoutId: 'payout:bank_transfer:SEPA-2026-0042', method: 'bank_transfer', reference: 'SEPA-2026-0042', amount: 30_000_000n, reason: body.reason },
  ]);
  const audit = await h.call('GET', `/admin/audit?target=${ivy.accountId}`, h.tg.adminKey);
  expect(audit.body.data.find((e: { action: string }) => e.action === 'refund.payout')).toMatchObject({
    actor: { kind: 'admin' },
    reason: body.reason,
    details: { method: 'bank_transfer', reference: 'SEPA-2026-0042', amountUsd: '30.000000' },
  });
  await verifyPurchasedCredit(h, ivy.accountId, 0n);
});

test('a payout and a card refund of the same credit never both pay: the card refund offers only what the payout left', async () => {
  const jo = await h.openCustomer('Jo');
  const { paymentIntent } = await h.checkout(jo, '20');
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
  const paid = await h.call('POST', `/admin/accounts/${jo.accountId}/payouts`, h.tg.adminKey, {
    method: 'other',
    reference: 'cheque-17',
    amount_usd: '15',
    reason: 'card expired',
  });
  expect(paid.status).toBe(201);
  const asked = h.stripeServer.requests.length;
  const refund = await h.call('POST', `/admin/accounts/${jo.accountId}/refunds`, h.tg.adminKey, { reason: 'the rest' });
  expect(refund.status).toBe(200);
  expect(
    h.stripeServer.requests
      .slice(asked)
      .filter((r) => r.path === '/v1/refunds')
      .map((r) => r.params['amount']),
  ).toEqual(['500']);
  const nothing = await h.call('POST', `/admin/accounts/${jo.accountId}/payouts`, h.tg.adminKey, {
    method: 'other',
    reference: 'cheque-18',
    amount_usd: '0.01',
    reason: 'again',
  });
  expect(nothing.body.error.code).toBe('exceeds_refundable_credit');
  await verifyPurchasedCredit(h, jo.accountId, 0n);
});

test('refund after closure: a termination whose card refund Stripe declined leaves the credit owed; an operator refunds it to the card later, once', async () => {
  const kai = await h.openCustomer('Kai');
  const { paymentIntent } = await h.checkout(kai, '20');
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
  h.stripeServer.decline({ refunds: true });
  const terminated = await h.call('POST', `/admin/accounts/${kai.accountId}/terminate`, h.tg.adminKey, { reason: 'resold credit' });
  expect(terminated.body).toMatchObject({ status: 'closed', purchased_usd: '20.000000' });

  const asked = h.stripeServer.requests.length;
  const refund = await h.call('POST', `/admin/accounts/${kai.accountId}/refunds`, h.tg.adminKey, { reason: 'refund owed after termination' });
  expect(refund.status).toBe(200);
  expect(refund.body).toMatchObject({ refunded_usd: '20.000000' });
  expect(
    h.stripeServer.requests
      .slice(asked)
      .filter((r) => r.path === '/v1/refunds')
      .map((r) => [r.params['payment_intent'], r.params['amount']]),
  ).toEqual([[paymentIntent.id, '2000']]);
  // Nothing is left to pay back, by card or by payout.
  const again = await h.call('POST', `/admin/accounts/${kai.accountId}/refunds`, h.tg.adminKey, { reason: 'again', amount_usd: '0.01' });
  expect(again.body.error.code).toBe('exceeds_refundable_credit');
  const payout = await h.call('POST', `/admin/accounts/${kai.accountId}/payouts`, h.tg.adminKey, {
    method: 'other',
    reference: 'x-1',
    amount_usd: '0.01',
    reason: 'again',
  });
  expect(payout.body.error.code).toBe('exceeds_refundable_credit');
  await verifyPurchasedCredit(h, kai.accountId, 0n);
});
