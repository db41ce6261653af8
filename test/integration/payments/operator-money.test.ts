import { accountStreamId } from '../../../domain/account';
import { systemMetadata } from '../../../src/command-metadata';
import { addModel } from '../../support/e2e-setup';
import { projectedBalance, runVerify, waitFor } from '../../support/ledger-checks';
import { settleUsage, startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * What an operator does to an account's money through the admin API, each audited with the admin
 * as actor and followed by `tollgate verify`: revoking promo credit, raising one account's maximum balance.
 */

const MODEL = 'operator-money-model';
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

async function auditOf(accountId: string) {
  const audit = await h.call('GET', `/admin/audit?target=${accountId}`, h.tg.adminKey);
  expect(audit.status).toBe(200);
  expect(audit.body.chain.verified).toBe(true);
  return audit.body.data as { action: string; actor: { kind: string; id: string }; reason: string | null; details: Record<string, unknown> }[];
}

/** `tollgate verify` (the real CLI) passes once the balances projection shows `promo` and `purchased`. */
async function verifyPasses(accountId: string, expected: { purchased: bigint; promo: bigint }): Promise<void> {
  await waitFor(
    'the balances projection',
    async () => {
      const row = await projectedBalance(h.tg.databaseUrl, accountId);
      return row && row.purchased === expected.purchased && row.promo === expected.promo ? true : undefined;
    },
    30_000,
  );
  const verified = await runVerify(h.tg.databaseUrl);
  expect({ code: verified.code, out: verified.stdout + verified.stderr }).toMatchObject({ code: 0 });
}

describe('promo credit revocation', () => {
  test('an operator takes back part, then the rest, of an unexpired grant; what was spent stays spent; audited', async () => {
    const pia = await h.openCustomer('Pia');
    const granted = await h.call('POST', `/admin/accounts/${pia.accountId}/promo-grants`, h.tg.adminKey, {
      amount_usd: '5',
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      reason: 'launch campaign',
    });
    expect(granted.status).toBe(201);
    const grantId = granted.body.grant_id as string;
    await use(pia.accountId, 'req-pia-1', 2_000_000n);
    const path = `/admin/accounts/${pia.accountId}/promo-grants/${grantId}/revoke`;

    const part = await h.call('POST', path, h.tg.adminKey, { amount_usd: '1', reason: 'campaign abused' });
    expect(part.status).toBe(200);
    expect(part.body).toMatchObject({ grant_id: grantId, revoked_usd: '1.000000', remaining_usd: '2.000000', promo_usd: '2.000000', balance_usd: '2.000000' });

    const over = await h.call('POST', path, h.tg.adminKey, { amount_usd: '2.5', reason: 'x' });
    expect([over.status, over.body.error.code]).toEqual([409, 'exceeds_unspent_promo']);

    const rest = await h.call('POST', path, h.tg.adminKey, { reason: 'campaign ended early' });
    expect(rest.body).toMatchObject({ revoked_usd: '2.000000', remaining_usd: '0.000000', promo_usd: '0.000000' });
    const nothing = await h.call('POST', path, h.tg.adminKey, { reason: 'again' });
    expect([nothing.status, nothing.body.error.code]).toEqual([409, 'amount_must_be_positive']);

    // The customer sees it: the grant shows 0 left, the spent USD 2 stays spent.
    const account = await h.call('GET', '/v1/account', pia.key);
    expect(account.body).toMatchObject({ balance_usd: '0.000000', totals: { usage_cost_usd: '2.000000' } });
    expect(account.body.promo_grants).toMatchObject([{ grant_id: grantId, granted_usd: '5.000000', remaining_usd: '0.000000' }]);
    const events = (await h.accountEvents(pia.accountId)).filter((e) => e.type === 'PromoCreditRevoked');
    expect(events.map((e) => e.data)).toEqual([
      { grantId, amount: 1_000_000n, reason: 'campaign abused' },
      { grantId, amount: 2_000_000n, reason: 'campaign ended early' },
    ]);
    // On the statement, as movements of promo credit.
    const statement = await h.call('GET', `/admin/accounts/${pia.accountId}/statement`, h.tg.adminKey);
    expect(statement.status).toBe(200);
    expect(JSON.stringify(statement.body)).toContain('PromoCreditRevoked');

    const audit = (await auditOf(pia.accountId)).filter((e) => e.action === 'credit.promo_revoked');
    expect(audit).toMatchObject([
      { actor: { kind: 'admin', id: 'admin' }, reason: 'campaign abused', details: { grantId, amountUsd: '1.000000' } },
      { actor: { kind: 'admin', id: 'admin' }, reason: 'campaign ended early', details: { grantId, amountUsd: '2.000000' } },
    ]);
    await verifyPasses(pia.accountId, { purchased: 0n, promo: 0n });
  });

  test('refusals: unknown grant 404, no reason 400, a customer key 403, credit held by a request in flight 409', async () => {
    const quinn = await h.openCustomer('Quinn');
    const granted = await h.call('POST', `/admin/accounts/${quinn.accountId}/promo-grants`, h.tg.adminKey, {
      amount_usd: '3',
      expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      reason: 'trial',
    });
    const path = `/admin/accounts/${quinn.accountId}/promo-grants/${granted.body.grant_id}/revoke`;
    const unknown = await h.call('POST', `/admin/accounts/${quinn.accountId}/promo-grants/g_nothing/revoke`, h.tg.adminKey, { reason: 'x' });
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'promo_grant_not_found']);
    expect((await h.call('POST', '/admin/accounts/acct_nobody/promo-grants/g_x/revoke', h.tg.adminKey, { reason: 'x' })).status).toBe(404);
    expect((await h.call('POST', path, h.tg.adminKey, {})).status).toBe(400);
    expect((await h.call('POST', path, quinn.key, { reason: 'x' })).status).toBe(403);
    const placed = await h.tg.gateway.ledger.accounts.handle(accountStreamId(quinn.accountId), {
      type: 'PlaceReservation',
      data: { requestId: 'req-quinn', keyId: quinn.keyId, model: MODEL, operation: 'chat', amount: 2_500_000n, priceVersion: 1 },
      metadata: systemMetadata('test'),
    });
    expect(placed.ok).toBe(true);
    const held = await h.call('POST', path, h.tg.adminKey, { reason: 'x' });
    expect([held.status, held.body.error.code]).toEqual([409, 'promo_held_by_reservations']);
    const some = await h.call('POST', path, h.tg.adminKey, { amount_usd: '0.5', reason: 'what is not held' });
    expect(some.body).toMatchObject({ revoked_usd: '0.500000', available_usd: '0.000000' });
  });
});

describe("one account's maximum balance", () => {
  test('an operator raises it above the default; Checkout top-ups and auto top-up are held to it; audited', async () => {
    const rae = await h.openCustomer('Rae');
    const manual = await h.call('POST', `/admin/accounts/${rae.accountId}/top-ups`, h.tg.adminKey, {
      amount_usd: '9995',
      reference: 'bank-rae-1',
      reason: 'bank transfer',
    });
    expect(manual.status).toBe(201);
    const refused = await h.call('POST', '/v1/billing/top-ups', rae.key, { amount_usd: '10' });
    expect([refused.status, refused.body.error.code]).toEqual([409, 'balance_limit_exceeded']);
    expect((await h.call('PUT', '/v1/billing/auto-top-up', rae.key, { threshold_usd: '15000', amount_usd: '5000' })).body.error.code).toBe(
      'balance_limit_exceeded',
    );

    const path = `/admin/accounts/${rae.accountId}/maximum-balance`;
    const below = await h.call('POST', path, h.tg.adminKey, { maximum_usd: '5000', reason: 'x' });
    expect([below.status, below.body.error.code]).toEqual([409, 'maximum_below_default']);
    expect((await h.call('POST', path, h.tg.adminKey, { maximum_usd: '25000' })).status).toBe(400);
    expect((await h.call('POST', path, rae.key, { maximum_usd: '25000', reason: 'x' })).status).toBe(403);
    const raised = await h.call('POST', path, h.tg.adminKey, { maximum_usd: '25000', reason: 'enterprise contract #42' });
    expect(raised.status).toBe(200);
    expect(raised.body).toMatchObject({ maximum_balance_usd: '25000.000000', default_maximum_balance_usd: '10000.000000', raised: true });

    // Now a Checkout top-up over the default goes through, and its webhook credits it.
    const { paymentIntent } = await h.checkout(rae, '100');
    expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
    expect((await h.call('GET', '/v1/account', rae.key)).body.balance_usd).toBe('10095.000000');
    const auto = await h.call('PUT', '/v1/billing/auto-top-up', rae.key, { threshold_usd: '15000', amount_usd: '5000' });
    expect(auto.status).toBe(200);
    // Still a ceiling: the raised one.
    const over = await h.call('POST', `/admin/accounts/${rae.accountId}/top-ups`, h.tg.adminKey, {
      amount_usd: '15000',
      reference: 'bank-rae-2',
      reason: 'bank transfer',
    });
    expect([over.status, over.body.error.code]).toEqual([409, 'balance_limit_exceeded']);
    expect(over.body.error.message).toContain('maximum USD 25000.000000');

    const back = await h.call('POST', path, h.tg.adminKey, { maximum_usd: null, reason: 'contract ended' });
    expect(back.body).toMatchObject({ maximum_balance_usd: '10000.000000', raised: false });
    expect((await h.call('POST', '/v1/billing/top-ups', rae.key, { amount_usd: '10' })).body.error.code).toBe('balance_limit_exceeded');

    const audit = (await auditOf(rae.accountId)).filter((e) => e.action === 'account.maximum_balance_set');
    expect(audit).toMatchObject([
      { actor: { kind: 'admin', id: 'admin' }, reason: 'enterprise contract #42', details: { maximumUsd: '25000.000000' } },
      { actor: { kind: 'admin', id: 'admin' }, reason: 'contract ended', details: { maximumUsd: null } },
    ]);
    await verifyPasses(rae.accountId, { purchased: 10_095_000_000n, promo: 0n });
  });
});
