import { accountStreamId } from '../../../domain/account';
import { systemMetadata } from '../../../src/command-metadata';
import { paidTopUp, verifyPurchasedCredit, startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Card disputes through signed webhooks (charge.dispute.created / charge.dispute.closed) with the
 * Stripe stand-in: the disputed amount is held and the account suspended; won, the hold ends and
 * the account reopens unless another reason keeps it; lost, the purchased credit is debited and
 * the journal posts it to dispute_losses. Events are delivered out of order and repeated.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function account(accountId: string) {
  const view = await h.call('GET', `/admin/accounts/${accountId}?purpose=dispute+test`, h.tg.adminKey);
  expect(view.status).toBe(200);
  return view.body;
}

async function journalOf(accountId: string) {
  return h.sql<{ ledger_account: string; amount: string }>(
    'SELECT ledger_account, sum(amount)::text AS amount FROM journal_postings WHERE account_id = $1 GROUP BY ledger_account ORDER BY ledger_account',
    [accountId],
  );
}

test('created: suspended for payment_dispute, the amount held (not available, not refundable); redelivered: once; won: hold released, reopened', async () => {
  const ana = await h.openCustomer('Ana');
  const pi = await paidTopUp(h, ana, '30');
  const asked = h.stripeServer.requests.length;
  const dispute = h.stripeServer.openDispute(pi, { amount: 1000 });
  const created = h.stripeServer.event('charge.dispute.created', dispute);

  expect((await h.deliver(created)).body).toMatchObject({ outcome: 'dispute_opened', duplicate: false });
  // The gateway read the disputed PaymentIntent from Stripe to find its customer.
  expect(h.stripeServer.requests.slice(asked).map((r) => [r.method, r.path])).toEqual([['GET', `/v1/payment_intents/${pi}`]]);
  // Redelivered as the same event, and as another event for the same dispute: nothing again.
  expect((await h.deliver(created)).body).toMatchObject({ duplicate: true });
  expect((await h.deliver(h.stripeServer.event('charge.dispute.created', dispute))).body).toMatchObject({ outcome: 'already_applied', duplicate: false });

  expect(await account(ana.accountId)).toMatchObject({
    status: 'suspended',
    suspension_reason: 'payment_dispute',
    suspension_reasons: ['payment_dispute'],
    purchased_usd: '30.000000',
    available_usd: '20.000000',
    disputed_usd: '10.000000',
    disputes: [{ dispute_id: dispute.id, payment_intent: pi, amount_usd: '10.000000', status: 'open' }],
  });
  // (These tests price no model: the refusal is asked of the ledger as the gateway would.)
  const reserve = await h.tg.gateway.ledger.accounts.handle(accountStreamId(ana.accountId), {
    type: 'PlaceReservation',
    data: { requestId: 'req-ana', keyId: ana.keyId, model: 'payments-test-model', operation: 'chat', amount: 1n, priceVersion: 1 },
    metadata: systemMetadata('test'),
  });
  expect(reserve.ok ? 'placed' : reserve.error).toEqual({ error: 'account_suspended', reason: 'payment_dispute' });
  // An operator cannot lift a suspension only the open dispute holds.
  const reinstate = await h.call('POST', `/admin/accounts/${ana.accountId}/reinstate`, h.tg.adminKey);
  expect([reinstate.status, reinstate.body.error.code]).toEqual([409, 'dispute_open']);
  // The held amount is not refundable: a refund of all of it is refused, asking Stripe nothing.
  const beforeRefund = h.stripeServer.requests.length;
  const refund = await h.call('POST', `/admin/accounts/${ana.accountId}/refunds`, h.tg.adminKey, { reason: 'asked', amount_usd: '30' });
  expect(refund.body.error.code).toBe('exceeds_refundable_credit');
  expect(h.stripeServer.requests.slice(beforeRefund).filter((r) => r.path === '/v1/refunds')).toEqual([]);

  const closed = h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(dispute.id, 'won'));
  expect((await h.deliver(closed)).body).toMatchObject({ outcome: 'dispute_won' });
  expect((await h.deliver(closed)).body).toMatchObject({ duplicate: true });
  // A late created (Stripe retried it) after the close changes nothing.
  expect((await h.deliver(created)).body).toMatchObject({ duplicate: true });
  expect((await h.deliver(h.stripeServer.event('charge.dispute.created', dispute))).body).toMatchObject({ outcome: 'already_applied' });

  expect(await account(ana.accountId)).toMatchObject({
    status: 'open',
    suspension_reason: null,
    suspension_reasons: [],
    available_usd: '30.000000',
    disputed_usd: '0.000000',
    disputes: [{ dispute_id: dispute.id, status: 'won' }],
  });
  expect((await h.accountEvents(ana.accountId)).map((e) => e.type).slice(-4)).toEqual([
    'DisputeOpened',
    'AccountSuspended',
    'DisputeClosed',
    'AccountReinstated',
  ]);
  await verifyPurchasedCredit(h, ana.accountId, 30_000_000n);
});

test('closed (lost) before created: debited once, never suspended; the journal posts the loss', async () => {
  const bo = await h.openCustomer('Bo');
  const pi = await paidTopUp(h, bo, '25');
  const dispute = h.stripeServer.openDispute(pi);
  const createdEvent = h.stripeServer.event('charge.dispute.created', dispute);
  const closedEvent = h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(dispute.id, 'lost'));

  expect((await h.deliver(closedEvent)).body).toMatchObject({ outcome: 'dispute_lost' });
  expect((await h.deliver(createdEvent)).body).toMatchObject({ outcome: 'already_applied' });
  expect((await h.deliver(closedEvent)).body).toMatchObject({ duplicate: true });
  expect((await h.deliver(h.stripeServer.event('charge.dispute.closed', h.stripeServer.disputes.get(dispute.id)!))).body).toMatchObject({
    outcome: 'already_applied',
  });

  expect(await account(bo.accountId)).toMatchObject({ status: 'open', purchased_usd: '0.000000', disputes: [{ status: 'lost', amount_usd: '25.000000' }] });
  const events = (await h.accountEvents(bo.accountId)).filter((e) => e.type === 'DisputeOpened' || e.type === 'DisputeClosed');
  expect(events.map((e) => e.data)).toEqual([
    { disputeId: dispute.id, paymentReference: pi, amount: 25_000_000n },
    { disputeId: dispute.id, outcome: 'lost', debited: 25_000_000n },
  ]);
  await verifyPurchasedCredit(h, bo.accountId, 0n);
  expect(await journalOf(bo.accountId)).toEqual([
    { ledger_account: 'customer_purchased_credit', amount: '0' },
    { ledger_account: 'dispute_losses', amount: '-25000000' },
    { ledger_account: 'payment_clearing', amount: '25000000' },
  ]);
});

test('lost after the credit was spent: the purchased credit goes negative; the account stays suspended for an operator; tax is not debited', async () => {
  const cy = await h.openCustomer('Cy');
  // USD 20 of credit, USD 4 of tax: the dispute is of the USD 24 charged.
  const { paymentIntent } = await h.checkout(cy, '20', 400);
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
  const stream = accountStreamId(cy.accountId);
  // USD 15 spent (a settled request, written as the gateway does).
  const place = await h.tg.gateway.ledger.accounts.handle(stream, {
    type: 'PlaceReservation',
    data: { requestId: 'req-cy', keyId: cy.keyId, model: 'payments-test-model', operation: 'chat', amount: 15_000_000n, priceVersion: 1 },
    metadata: systemMetadata('test'),
  });
  expect(place.ok).toBe(true);
  const settled = await h.tg.gateway.ledger.accounts.handle(stream, {
    type: 'SettleReservation',
    data: {
      requestId: 'req-cy',
      usage: { inputTokens: 15_000_000n, outputTokens: 0n, estimated: false },
      price: { version: 1, inputPerMillion: 1_000_000n, outputPerMillion: 1_000_000n },
      outcome: 'completed',
    },
    metadata: systemMetadata('test'),
  });
  expect(settled.ok).toBe(true);

  const dispute = h.stripeServer.openDispute(paymentIntent.id);
  expect(dispute['amount']).toBe(2400);
  const created = h.stripeServer.event('charge.dispute.created', dispute);
  const closed = h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(dispute.id, 'lost'));
  for (const event of [created, closed, created, closed]) expect((await h.deliver(event)).status).toBe(200);

  const view = await account(cy.accountId);
  expect(view).toMatchObject({ status: 'suspended', suspension_reasons: ['payment_dispute'], purchased_usd: '-15.000000', disputed_usd: '0.000000' });
  // Now an operator may lift it (the dispute is over); the debt still refuses new requests.
  const reinstated = await h.call('POST', `/admin/accounts/${cy.accountId}/reinstate`, h.tg.adminKey);
  expect([reinstated.status, reinstated.body.status]).toEqual([200, 'open']);
  await verifyPurchasedCredit(h, cy.accountId, -15_000_000n);
  const journal = await journalOf(cy.accountId);
  expect(journal.find((r) => r.ledger_account === 'dispute_losses')).toEqual({ ledger_account: 'dispute_losses', amount: '-20000000' });
  expect(journal.reduce((sum, r) => sum + BigInt(r.amount), 0n)).toBe(0n);
});

test('won while another reason holds the account: only payment_dispute is lifted', async () => {
  const di = await h.openCustomer('Di');
  const pi = await paidTopUp(h, di, '20');
  const dispute = h.stripeServer.openDispute(pi);
  expect((await h.deliver(h.stripeServer.event('charge.dispute.created', dispute))).body.outcome).toBe('dispute_opened');
  const suspended = await h.call('POST', `/admin/accounts/${di.accountId}/suspend`, h.tg.adminKey, { reason: 'terms_violation' });
  expect([suspended.status, suspended.body.suspension_reason]).toEqual([200, 'terms_violation']);
  // The same reason again is refused.
  expect((await h.call('POST', `/admin/accounts/${di.accountId}/suspend`, h.tg.adminKey, { reason: 'terms_violation' })).status).toBe(409);

  expect((await h.deliver(h.stripeServer.event('charge.dispute.closed', h.stripeServer.closeDispute(dispute.id, 'won')))).body.outcome).toBe('dispute_won');
  expect(await account(di.accountId)).toMatchObject({ status: 'suspended', suspension_reasons: ['terms_violation'], available_usd: '20.000000' });
  const reinstated = await h.call('POST', `/admin/accounts/${di.accountId}/reinstate`, h.tg.adminKey);
  expect([reinstated.status, reinstated.body.status]).toEqual([200, 'open']);
  await verifyPurchasedCredit(h, di.accountId, 20_000_000n);
});

test('a dispute of a payment no account received is recorded, not applied; a dispute still under review at close is not decided', async () => {
  const ed = await h.openCustomer('Ed');
  const pi = await paidTopUp(h, ed, '10');
  const dispute = h.stripeServer.openDispute(pi);
  const pending = h.stripeServer.event('charge.dispute.closed', { ...dispute, status: 'under_review' });
  expect((await h.deliver(pending)).body.outcome).toBe('dispute_under_review');
  const foreign = h.stripeServer.event('charge.dispute.created', { ...dispute, id: 'dp_test_foreign', payment_intent: 'pi_test_unknown' });
  // Stripe does not know that PaymentIntent: the handler fails, nothing is recorded, Stripe will retry.
  expect((await h.deliver(foreign)).status).toBe(500);
  expect(await account(ed.accountId)).toMatchObject({ status: 'open', disputes: [] });
});
