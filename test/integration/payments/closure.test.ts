import { accountStreamId } from '../../../domain/account';
import { apiKeyStreamId } from '../../../domain/api-key';
import { systemMetadata } from '../../../src/command-metadata';
import { projectedBalance, runVerify, waitFor } from '../../support/ledger-checks';
import { startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Termination for breach by an operator (with a refund of purchased credit unless for abuse).
 * Closing an account revokes every key it has, in the request that closes it; and a key of a
 * closed account is refused by authentication even when its revocation was never written.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function keyEvents(keyId: string) {
  const { events } = await h.tg.gateway.store.readStream(apiKeyStreamId(keyId));
  return events.map((e) => e.event);
}

test('closing an account revokes every active key of it in the same request, named by the customer key that closed it', async () => {
  const kim = await h.openCustomer('Kim');
  const second = await h.call('POST', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey, { name: 'ci' });
  const third = await h.call('POST', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey, { name: 'old' });
  expect((await h.call('DELETE', `/admin/keys/${third.body.key_id}`, h.tg.adminKey, { reason: 'rotated' })).status).toBe(200);
  // Another customer's key is untouched.
  const other = await h.openCustomer('Other');

  const closed = await h.call('POST', '/v1/account/close', kim.key);
  expect(closed.status).toBe(200);
  expect(closed.body).toMatchObject({ status: 'closed', keys_revoked: 2 });

  const keys = await h.call('GET', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey);
  expect(keys.body.data.map((k: { key_id: string; status: string }) => [k.key_id, k.status]).sort()).toEqual(
    [
      [kim.keyId, 'revoked'],
      [second.body.key_id, 'revoked'],
      [third.body.key_id, 'revoked'],
    ].sort(),
  );
  for (const key of [kim.key, second.body.key as string]) {
    const read = await h.call('GET', '/v1/account', key);
    expect([read.status, read.body.error.code]).toEqual([401, 'invalid_api_key']);
  }
  // The already-revoked key keeps its one revocation; the others were revoked for the closure by the closing key.
  expect((await keyEvents(third.body.key_id)).filter((e) => e.type === 'ApiKeyRevoked').map((e) => e.data)).toEqual([{ reason: 'rotated' }]);
  const revocation = (await keyEvents(second.body.key_id)).find((e) => e.type === 'ApiKeyRevoked');
  expect(revocation?.data).toEqual({ reason: 'account_closed' });
  expect(revocation?.metadata.actor).toEqual({ kind: 'customer_key', keyId: kim.keyId });

  expect((await h.call('GET', '/v1/account', other.key)).status).toBe(200);
});

test('a key of a closed account is refused even when its revocation was never written', async () => {
  const lou = await h.openCustomer('Lou');
  const unused = await h.call('POST', `/admin/accounts/${lou.accountId}/keys`, h.tg.adminKey, { name: 'never used' });
  // Verified once, so this process holds the key in its cache.
  expect((await h.call('GET', '/v1/account', lou.key)).status).toBe(200);

  // Closed without the HTTP handler: as if every revocation write had failed.
  const closed = await h.tg.gateway.ledger.accounts.handle(accountStreamId(lou.accountId), {
    type: 'CloseAccount',
    data: { reason: 'admin_decision' },
    metadata: systemMetadata('test'),
  });
  expect(closed.ok).toBe(true);
  const keys = await h.call('GET', `/admin/accounts/${lou.accountId}/keys`, h.tg.adminKey);
  expect(keys.body.data.map((k: { status: string }) => k.status)).toEqual(['active', 'active']);

  for (const key of [lou.key, unused.body.key as string]) {
    const read = await h.call('GET', '/v1/account', key);
    expect([read.status, read.body.error.code]).toEqual([401, 'invalid_api_key']);
    const chat = await h.call('POST', '/v1/chat/completions', key, { model: 'payments-test-model', messages: [{ role: 'user', content: 'hi' }] });
    expect([chat.status, chat.body.error.code]).toEqual([401, 'invalid_api_key']);
  }
  // The admin key belongs to no account and still works.
  expect((await h.call('GET', `/admin/accounts/${lou.accountId}`, h.tg.adminKey)).status).toBe(200);
});

/** A paid Checkout top-up, credited by its webhook (delivered twice: it credits once). */
async function paidTopUp(customer: { key: string }, amountUsd: string): Promise<string> {
  const { paymentIntent } = await h.checkout(customer, amountUsd);
  const event = h.stripeServer.event('payment_intent.succeeded', paymentIntent);
  expect((await h.deliver(event)).body.outcome).toBe('credited');
  expect((await h.deliver(event)).body.duplicate).toBe(true);
  return paymentIntent.id;
}

async function auditOf(accountId: string) {
  const audit = await h.call('GET', `/admin/audit?target=${accountId}`, h.tg.adminKey);
  expect(audit.status).toBe(200);
  expect(audit.body.chain.verified).toBe(true);
  return audit.body.data as { action: string; actor: { kind: string; id: string }; reason: string | null; details: Record<string, unknown> }[];
}

/** `tollgate verify` (the real CLI) passes once the projections have caught up with the account. */
async function verifyPasses(accountId: string): Promise<void> {
  const events = await h.accountEvents(accountId);
  const purchased = events.reduce(
    (sum, e) => sum + (e.type === 'TopUpCompleted' ? e.data.amount : e.type === 'RefundIssued' || e.type === 'PurchasedCreditForfeited' ? -e.data.amount : 0n),
    0n,
  );
  await waitFor(
    'the balances projection',
    async () => ((await projectedBalance(h.tg.databaseUrl, accountId))?.purchased === purchased ? true : undefined),
    30_000,
  );
  const verified = await runVerify(h.tg.databaseUrl);
  expect({ code: verified.code, out: verified.stdout + verified.stderr }).toMatchObject({ code: 0 });
}

describe('termination for breach', () => {
  test('not for abuse: closed at once, every key revoked, the purchased credit refunded to the card; audited with the admin as actor', async () => {
    const mia = await h.openCustomer('Mia');
    const pi = await paidTopUp(mia, '20');
    const asked = h.stripeServer.requests.length;

    const terminated = await h.call('POST', `/admin/accounts/${mia.accountId}/terminate`, h.tg.adminKey, { reason: 'resold credit (AUP 10)' });
    expect(terminated.status).toBe(200);
    expect(terminated.body).toMatchObject({
      status: 'closed',
      for_abuse: false,
      keys_revoked: 1,
      forfeited_usd: '0.000000',
      refund: { refunded_usd: '20.000000', parts: [{ payment_intent: pi, amount_usd: '20.000000', status: 'recorded' }] },
      balance_usd: '0.000000',
    });
    // Stripe was asked for exactly one refund of the whole payment.
    const refunds = h.stripeServer.requests.slice(asked).filter((r) => r.path === '/v1/refunds' && r.method === 'POST');
    expect(refunds.map((r) => [r.params['payment_intent'], r.params['amount']])).toEqual([[pi, '2000']]);
    expect((await h.accountEvents(mia.accountId)).map((e) => e.type).slice(-4)).toEqual([
      'TopUpCompleted',
      'AccountTerminated',
      'AccountClosed',
      'RefundIssued',
    ]);
    expect((await h.call('GET', '/v1/account', mia.key)).status).toBe(401);

    const audit = await auditOf(mia.accountId);
    const act = audit.find((e) => e.action === 'account.terminated');
    expect(act).toMatchObject({ actor: { kind: 'admin', id: 'admin' }, reason: 'resold credit (AUP 10)', details: { forAbuse: 'false' } });
    expect(audit.find((e) => e.action === 'account.closed')).toMatchObject({ actor: { kind: 'admin' }, reason: 'terminated_for_breach' });

    // Once only: a second termination is refused and asks Stripe for nothing.
    const again = await h.call('POST', `/admin/accounts/${mia.accountId}/terminate`, h.tg.adminKey, { reason: 'again' });
    expect([again.status, again.body.error.code]).toEqual([409, 'account_closed']);
    await verifyPasses(mia.accountId);
  });

  test('for abuse: nothing refunded, the purchased credit forfeited (the journal takes it to income)', async () => {
    const ned = await h.openCustomer('Ned');
    await paidTopUp(ned, '15');
    const asked = h.stripeServer.requests.length;
    const terminated = await h.call('POST', `/admin/accounts/${ned.accountId}/terminate`, h.tg.adminKey, { reason: 'card testing', for_abuse: true });
    expect(terminated.status).toBe(200);
    expect(terminated.body).toMatchObject({ status: 'closed', for_abuse: true, refund: null, forfeited_usd: '15.000000', purchased_usd: '0.000000' });
    expect(h.stripeServer.requests.slice(asked).filter((r) => r.path.startsWith('/v1/refunds'))).toEqual([]);
    expect((await h.accountEvents(ned.accountId)).filter((e) => e.type === 'PurchasedCreditForfeited').map((e) => e.data)).toEqual([
      { amount: 15_000_000n, reason: 'terminated_for_abuse' },
    ]);
    // A refund is refused now: nothing is refundable.
    // (An operator may refund a closed account's credit within the claim period; here none is left.)
    const refund = await h.call('POST', `/admin/accounts/${ned.accountId}/refunds`, h.tg.adminKey, { reason: 'try', amount_usd: '0.01' });
    expect(refund.body.error.code).toBe('exceeds_refundable_credit');
    await verifyPasses(ned.accountId);
    const journal = await h.sql<{ ledger_account: string; amount: string }>(
      `SELECT ledger_account, sum(amount)::text AS amount FROM journal_postings WHERE account_id = $1 GROUP BY ledger_account ORDER BY ledger_account`,
      [ned.accountId],
    );
    expect(journal).toEqual([
      { ledger_account: 'customer_purchased_credit', amount: '0' },
      { ledger_account: 'forfeited_credit_income', amount: '-15000000' },
      { ledger_account: 'payment_clearing', amount: '15000000' },
    ]);
    expect((await auditOf(ned.accountId)).find((e) => e.action === 'credit.forfeited')).toMatchObject({
      reason: 'terminated_for_abuse',
      details: { amountUsd: '15.000000' },
    });
  });

  test('refusals: a reason is required, a customer key may not, an unknown account is 404, in-flight requests hold it off', async () => {
    const ola = await h.openCustomer('Ola');
    expect((await h.call('POST', `/admin/accounts/${ola.accountId}/terminate`, h.tg.adminKey, {})).status).toBe(400);
    expect((await h.call('POST', `/admin/accounts/${ola.accountId}/terminate`, h.tg.adminKey, { reason: 'x', for_abuse: 'yes' })).status).toBe(400);
    expect((await h.call('POST', `/admin/accounts/${ola.accountId}/terminate`, ola.key, { reason: 'x' })).status).toBe(403);
    expect((await h.call('POST', '/admin/accounts/acct_nobody/terminate', h.tg.adminKey, { reason: 'x' })).status).toBe(404);
    await h.tg.gateway.ledger.accounts.handle(accountStreamId(ola.accountId), {
      type: 'CompleteTopUp',
      data: { paymentReference: 'manual:bank-ola', amount: 10_000_000n },
      metadata: systemMetadata('test'),
    });
    await h.tg.gateway.ledger.accounts.handle(accountStreamId(ola.accountId), {
      type: 'PlaceReservation',
      data: { requestId: 'req-ola', keyId: ola.keyId, model: 'payments-test-model', operation: 'chat', amount: 1n, priceVersion: 1 },
      metadata: systemMetadata('test'),
    });
    const held = await h.call('POST', `/admin/accounts/${ola.accountId}/terminate`, h.tg.adminKey, { reason: 'x' });
    expect([held.status, held.body.error.code]).toEqual([409, 'account_has_open_reservations']);
    expect((await h.call('GET', '/v1/account', ola.key)).status).toBe(200);
  });
});
