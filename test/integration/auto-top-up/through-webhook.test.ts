import { usd } from '../../../domain/money';
import { AUTO_TOP_UP_METADATA } from '../../../src/process-managers/auto-top-up';
import { startPaymentsHarness, type PaymentsHarness } from '../payments/harness';
import { spend as spendOnLedger } from '../../support/e2e-setup';
import { until } from '../../support/wait';

/**
 * Auto top-up as it runs in the gateway (Stripe configured): the card saved by a Checkout
 * top-up is charged off-session by the gateway's own process manager, and the payments
 * webhook (payment_intent.succeeded) credits the account and ends the attempt.
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

function offSessionIntentsOf(accountId: string) {
  return [...h.stripeServer.paymentIntents.values()].filter(
    (pi) => (pi['metadata'] as Record<string, string> | undefined)?.[AUTO_TOP_UP_METADATA.accountId] === accountId,
  );
}

test('the saved card is charged off-session and the payment webhook credits the account and ends the attempt', async () => {
  const ada = await customerWithSavedCard('Ada');
  await spend(ada.accountId, '12');
  const [intent] = await until(() => (offSessionIntentsOf(ada.accountId).length > 0 ? offSessionIntentsOf(ada.accountId) : undefined), { timeoutMs: 10_000 });
  expect(intent).toMatchObject({ amount: 2_500, status: 'succeeded' });
  const pending = (await h.call('GET', '/v1/billing/auto-top-up', ada.key)).body;
  expect(pending.pending_attempt).toMatchObject({
    attempt_id: (intent!['metadata'] as Record<string, string>)[AUTO_TOP_UP_METADATA.attemptId],
    amount_usd: '25.000000',
  });

  const delivered = await h.deliver(h.stripeServer.event('payment_intent.succeeded', intent!));
  expect(delivered.status).toBe(200);
  const view = (await h.call('GET', '/v1/billing/auto-top-up', ada.key)).body;
  expect(view).toMatchObject({ enabled: true, pending_attempt: null, last_failure: null, account_status: 'open' });
  expect((await h.call('GET', '/v1/account', ada.key)).body).toMatchObject({ purchased_usd: '33.000000' });
  const topUps = (await h.accountEvents(ada.accountId)).filter((e) => e.type === 'TopUpCompleted');
  expect(topUps.map((e) => e.data)).toContainEqual({
    paymentReference: intent!['id'],
    amount: usd('25'),
    autoTopUpAttemptId: pending.pending_attempt.attempt_id,
  });
});

test('authentication_required off-session: the failure is recorded, the account suspended, and the API says why', async () => {
  const bo = await customerWithSavedCard('Bo');
  h.stripeServer.decline({ code: 'authentication_required' });
  await spend(bo.accountId, '12');
  const view = await until(
    async () => {
      const body = (await h.call('GET', '/v1/billing/auto-top-up', bo.key)).body;
      return body.last_failure ? body : undefined;
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
