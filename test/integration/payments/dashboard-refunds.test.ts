import { accountStreamId } from '../../../domain/account';
import { systemMetadata } from '../../../src/command-metadata';
import { paidTopUp, verifyPurchasedCredit, startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Refunds an operator makes in the Stripe Dashboard reach the ledger once, by Stripe refund id,
 * through signed refund.created / refund.updated webhooks delivered out of order and repeated.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function account(accountId: string) {
  const view = await h.call('GET', `/admin/accounts/${accountId}?purpose=refund+test`, h.tg.adminKey);
  expect(view.status).toBe(200);
  return view.body;
}

test('a Dashboard refund is applied once: pending then succeeded, created and updated in any order, redelivered', async () => {
  const fay = await h.openCustomer('Fay');
  const pi = await paidTopUp(h, fay, '40');
  const refund = h.stripeServer.dashboardRefund(pi, { amount: 1500, status: 'pending' });
  const created = h.stripeServer.event('refund.created', refund);
  const succeeded = h.stripeServer.event('refund.updated', h.stripeServer.setRefund(refund.id, 'succeeded'));
  const createdSucceeded = h.stripeServer.event('refund.created', { ...refund, status: 'succeeded' });

  // The update (succeeded) arrives first; the pending creation after it changes nothing.
  expect((await h.deliver(succeeded)).body).toMatchObject({ outcome: 'dashboard_refund_recorded', duplicate: false });
  expect((await h.deliver(created)).body).toMatchObject({ outcome: 'dashboard_refund_pending' });
  expect((await h.deliver(succeeded)).body).toMatchObject({ duplicate: true });
  expect((await h.deliver(createdSucceeded)).body).toMatchObject({ outcome: 'already_applied' });

  const refunds = (await h.accountEvents(fay.accountId)).filter((e) => e.type === 'RefundIssued' || e.type === 'RefundShortfall');
  expect(refunds.map((e) => [e.type, e.data])).toEqual([['RefundIssued', { refundId: `stripe:${refund.id}`, amount: 15_000_000n, paymentReferences: [pi] }]]);
  expect(await account(fay.accountId)).toMatchObject({ purchased_usd: '25.000000', totals: { refunded_usd: '15.000000' } });
  // Tollgate's own refund now offers only what the card has left: USD 25.
  const asked = h.stripeServer.requests.length;
  const rest = await h.call('POST', `/admin/accounts/${fay.accountId}/refunds`, h.tg.adminKey, { reason: 'the rest' });
  expect(rest.status).toBe(200);
  expect(
    h.stripeServer.requests
      .slice(asked)
      .filter((r) => r.path === '/v1/refunds')
      .map((r) => r.params['amount']),
  ).toEqual(['2500']);
  await verifyPurchasedCredit(h, fay.accountId, 0n);
});

test('a Dashboard refund of credit already spent: the refundable part, and the rest as a shortfall into debt', async () => {
  const gus = await h.openCustomer('Gus');
  // USD 20 of credit and USD 4 of tax; the Dashboard refunds the whole USD 24 charge.
  const pi = await paidTopUp(h, gus, '20', 400);
  const stream = accountStreamId(gus.accountId);
  expect(
    (
      await h.tg.gateway.ledger.accounts.handle(stream, {
        type: 'PlaceReservation',
        data: { requestId: 'req-gus', keyId: gus.keyId, model: 'payments-test-model', operation: 'chat', amount: 12_000_000n, priceVersion: 1 },
        metadata: systemMetadata('test'),
      })
    ).ok,
  ).toBe(true);
  expect(
    (
      await h.tg.gateway.ledger.accounts.handle(stream, {
        type: 'SettleReservation',
        data: {
          requestId: 'req-gus',
          usage: { inputTokens: 12_000_000n, outputTokens: 0n, estimated: false },
          price: { version: 1, inputPerMillion: 1_000_000n, outputPerMillion: 1_000_000n },
          outcome: 'completed',
        },
        metadata: systemMetadata('test'),
      })
    ).ok,
  ).toBe(true);

  const refund = h.stripeServer.dashboardRefund(pi);
  expect(refund['amount']).toBe(2400);
  const event = h.stripeServer.event('refund.created', refund);
  expect((await h.deliver(event)).body).toMatchObject({ outcome: 'dashboard_refund_recorded_with_shortfall' });
  expect((await h.deliver(h.stripeServer.event('refund.updated', refund))).body).toMatchObject({ outcome: 'already_applied' });

  // The tax was never credit: USD 20 leaves, USD 8 as a refund and USD 12 as a shortfall.
  const refunds = (await h.accountEvents(gus.accountId)).filter((e) => e.type === 'RefundIssued' || e.type === 'RefundShortfall');
  expect(refunds.map((e) => [e.type, e.data.amount])).toEqual([
    ['RefundIssued', 8_000_000n],
    ['RefundShortfall', 12_000_000n],
  ]);
  expect(await account(gus.accountId)).toMatchObject({ purchased_usd: '-12.000000' });
  const audit = await h.call('GET', `/admin/audit?target=${gus.accountId}`, h.tg.adminKey);
  expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['refund.issued', 'refund.shortfall']));
  await verifyPurchasedCredit(h, gus.accountId, -12_000_000n);
});

test('a refund of a payment no account received is recorded as unknown_account, not applied', async () => {
  const hal = await h.openCustomer('Hal');
  const pi = await paidTopUp(h, hal, '10');
  // Stripe's customer is unlinked from any account (as if the payment came from elsewhere).
  h.stripeServer.paymentIntents.get(pi)!['customer'] = 'cus_test_stranger';
  const refund = h.stripeServer.dashboardRefund(pi);
  expect((await h.deliver(h.stripeServer.event('refund.created', refund))).body.outcome).toBe('unknown_account');
  expect(await account(hal.accountId)).toMatchObject({ purchased_usd: '10.000000' });
});
