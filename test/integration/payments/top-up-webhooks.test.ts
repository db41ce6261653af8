import { startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Top-ups through Checkout, credited only by Stripe's webhook, exactly once per PaymentIntent
 * however the events arrive; webhooks that do not verify change nothing.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

const balanceOf = async (key: string) => (await h.call('GET', '/v1/account', key)).body;
const topUps = async (accountId: string) => (await h.accountEvents(accountId)).filter((e) => e.type === 'TopUpCompleted');

test('a top-up starts a Checkout Session (payment mode, card saved off-session, account in metadata) and credits nothing yet', async () => {
  const alice = await h.openCustomer('Alice');
  const started = await h.call('POST', '/v1/billing/top-ups', alice.key, { amount_usd: '25.50' });
  expect(started.status).toBe(201);
  expect(started.body).toMatchObject({ object: 'billing.top_up', account_id: alice.accountId, amount_usd: '25.500000' });
  // The stand-in's hosted checkout page for the session, as Stripe answers checkout.stripe.com's.
  expect(started.body.url).toBe(`${h.stripeServer.apiBase}/checkout/pay/${started.body.checkout_session_id}`);

  const customerCalls = h.stripeServer.requests.filter((r) => r.path === '/v1/customers');
  expect(customerCalls).toHaveLength(1);
  expect(customerCalls[0]!.idempotencyKey).toBe(`tollgate-customer-${alice.accountId}`);
  const session = h.stripeServer.requests.filter((r) => r.path === '/v1/checkout/sessions').at(-1)!;
  expect(session.params).toMatchObject({
    mode: 'payment',
    customer: [...h.stripeServer.customers.values()].find((c) => (c['metadata'] as Record<string, string>)['account_id'] === alice.accountId)!.id,
    line_items: { 0: { quantity: '1', price_data: { currency: 'usd', unit_amount: '2550', tax_behavior: 'exclusive' } } },
    automatic_tax: { enabled: 'true' },
    payment_intent_data: { setup_future_usage: 'off_session', metadata: { account_id: alice.accountId, credit_cents: '2550' } },
    metadata: { account_id: alice.accountId, credit_cents: '2550' },
  });
  expect(await topUps(alice.accountId)).toEqual([]);

  // A second top-up reuses the customer.
  expect((await h.call('POST', '/v1/billing/top-ups', alice.key, { amount_usd: '10' })).status).toBe(201);
  expect(h.stripeServer.requests.filter((r) => r.path === '/v1/customers')).toHaveLength(1);
});

test('top-up amounts are checked: minimum, whole cents, the balance maximum', async () => {
  const bob = await h.openCustomer('Bob');
  const below = await h.call('POST', '/v1/billing/top-ups', bob.key, { amount_usd: '9.99' });
  expect(below.status).toBe(409);
  expect(below.body.error.code).toBe('top_up_below_minimum');
  const subCent = await h.call('POST', '/v1/billing/top-ups', bob.key, { amount_usd: '10.005' });
  expect(subCent.status).toBe(400);
  expect(subCent.body.error.param).toBe('amount_usd');
  const over = await h.call('POST', '/v1/billing/top-ups', bob.key, { amount_usd: '10000.01' });
  expect(over.status).toBe(409);
  expect(over.body.error.code).toBe('balance_limit_exceeded');
});

test('a top-up is credited once under 3 redeliveries of each event (net of tax)', async () => {
  const carol = await h.openCustomer('Carol');
  const { session, paymentIntent } = await h.checkout(carol, '20', 400);
  const completed = h.stripeServer.event('checkout.session.completed', session);
  const succeeded = h.stripeServer.event('payment_intent.succeeded', paymentIntent);

  const answers = [];
  for (let i = 0; i < 3; i++) answers.push(await h.deliver(completed));
  for (let i = 0; i < 3; i++) answers.push(await h.deliver(succeeded));
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
  expect(answers.map((a) => [a.body.outcome, a.body.duplicate])).toEqual([
    ['credited', false],
    ['credited', true],
    ['credited', true],
    ['already_applied', false],
    ['already_applied', true],
    ['already_applied', true],
  ]);

  const credited = await topUps(carol.accountId);
  expect(credited).toHaveLength(1);
  // 20.00 credited although 24.00 was paid: the 4.00 is VAT, which is not credit.
  expect(credited[0]!.data).toMatchObject({ paymentReference: paymentIntent.id, amount: 20_000_000n });
  expect(await balanceOf(carol.key)).toMatchObject({ purchased_usd: '20.000000' });
  const recorded = await h.sql('SELECT event_id, outcome, account_id FROM stripe_webhook_events WHERE event_id = ANY($1) ORDER BY outcome', [
    [completed.id, succeeded.id],
  ]);
  expect(recorded).toEqual([
    { event_id: succeeded.id, outcome: 'already_applied', account_id: carol.accountId },
    { event_id: completed.id, outcome: 'credited', account_id: carol.accountId },
  ]);
});

test('out of order (payment_intent.succeeded before checkout.session.completed): same single credit, card saved', async () => {
  const dan = await h.openCustomer('Dan');
  const { session, paymentIntent } = await h.checkout(dan, '15');
  const first = await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent));
  const second = await h.deliver(h.stripeServer.event('checkout.session.completed', session));
  expect([first.body.outcome, second.body.outcome]).toEqual(['credited', 'already_applied']);
  const credited = await topUps(dan.accountId);
  expect(credited.map((e) => e.data)).toEqual([{ paymentReference: paymentIntent.id, amount: 15_000_000n, autoTopUpAttemptId: null }]);
  expect(await balanceOf(dan.key)).toMatchObject({ purchased_usd: '15.000000', balance_usd: '15.000000' });
  const saved = await h.sql('SELECT payment_method_id FROM stripe_customers WHERE account_id = $1', [dan.accountId]);
  expect(saved).toEqual([{ payment_method_id: paymentIntent['payment_method'] }]);
});

test('a top-up reinstates an account suspended for a negative balance', async () => {
  const erin = await h.openCustomer('Erin');
  await h.call('POST', `/admin/accounts/${erin.accountId}/suspend`, h.tg.adminKey, { reason: 'negative_balance' });
  const { paymentIntent } = await h.checkout(erin, '10');
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
  const types = (await h.accountEvents(erin.accountId)).map((e) => e.type);
  expect(types.slice(-2)).toEqual(['TopUpCompleted', 'AccountReinstated']);
  expect(await balanceOf(erin.key)).toMatchObject({ status: 'open' });
});

test('a forged or missing signature gets 400 and changes nothing', async () => {
  const frank = await h.openCustomer('Frank');
  const { paymentIntent } = await h.checkout(frank, '10');
  const event = h.stripeServer.event('payment_intent.succeeded', paymentIntent);
  const forged = await h.deliver(event, { secret: 'whsec_not_the_right_secret' });
  expect(forged.status).toBe(400);
  expect(forged.body.error.code).toBe('invalid_signature');
  const missing = await h.deliver(event, { signature: null });
  expect(missing.status).toBe(400);
  expect(missing.body.error.code).toBe('missing_signature');
  // A valid signature over other bytes: the body was altered in transit.
  const header = h.signer.webhooks.generateTestHeaderString({
    payload: JSON.stringify({ ...event, id: 'evt_other' }),
    secret: 'whsec_test_tollgate_payments_0123456789',
  });
  expect((await h.deliver(event, { signature: header })).status).toBe(400);

  expect(await topUps(frank.accountId)).toEqual([]);
  expect(await h.sql('SELECT event_id FROM stripe_webhook_events WHERE event_id = $1', [event.id])).toEqual([]);
  // The genuine delivery still works afterwards.
  expect((await h.deliver(event)).body.outcome).toBe('credited');
});

test('a signature older than the tolerance (300 s) gets 400 and changes nothing', async () => {
  const gina = await h.openCustomer('Gina');
  const { paymentIntent } = await h.checkout(gina, '10');
  const event = h.stripeServer.event('payment_intent.succeeded', paymentIntent);
  const stale = await h.deliver(event, { timestamp: Math.floor(Date.now() / 1000) - 301 });
  expect(stale.status).toBe(400);
  expect(stale.body.error.code).toBe('invalid_signature');
  expect(await topUps(gina.accountId)).toEqual([]);
  expect(await h.sql('SELECT event_id FROM stripe_webhook_events WHERE event_id = $1', [event.id])).toEqual([]);
  // Just inside the tolerance is accepted.
  expect((await h.deliver(event, { timestamp: Math.floor(Date.now() / 1000) - 240 })).body.outcome).toBe('credited');
});

test('a webhook for an unknown customer is recorded, not credited, reported (200 so Stripe stops retrying)', async () => {
  const henry = await h.openCustomer('Henry');
  const stranger = {
    id: 'pi_test_stranger_0001',
    object: 'payment_intent',
    amount: 5_000,
    amount_received: 5_000,
    currency: 'usd',
    customer: 'cus_test_not_ours',
    payment_method: 'pm_test_not_ours',
    // Metadata naming a real account does not make a stranger's payment that account's credit.
    metadata: { account_id: henry.accountId, credit_cents: '5000' },
    status: 'succeeded',
  };
  const event = h.stripeServer.event('payment_intent.succeeded', stranger);
  const answer = await h.deliver(event);
  expect(answer).toEqual({ status: 200, body: { received: true, event_id: event.id, duplicate: false, outcome: 'unknown_account' } });
  expect(await h.sql('SELECT outcome, account_id FROM stripe_webhook_events WHERE event_id = $1', [event.id])).toEqual([
    { outcome: 'unknown_account', account_id: null },
  ]);
  expect(await h.sql(`SELECT count(*)::int AS n FROM events WHERE type = 'TopUpCompleted' AND data->>'paymentReference' = $1`, [stranger.id])).toEqual([
    { n: 0 },
  ]);
  expect(await topUps(henry.accountId)).toEqual([]);
  const warning = h.tg.logLines.map((l) => JSON.parse(l)).find((l) => l.stripeEventId === event.id);
  expect(warning).toMatchObject({ level: 40, outcome: 'unknown_account', customerId: 'cus_test_not_ours', paymentIntentId: stranger.id });
  expect((await h.deliver(event)).body).toMatchObject({ duplicate: true, outcome: 'unknown_account' });
});

test('no log line carries the webhook secret or the Stripe secret key', () => {
  const all = h.tg.logLines.join('\n');
  expect(all).not.toContain('whsec_test_tollgate');
  expect(all).not.toContain('sk_test_tollgate_payments');
});
