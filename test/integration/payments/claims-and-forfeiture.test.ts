import { accountStreamId } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { billingRoutes } from '../../../adapters/http/routes/billing';
import { systemMetadata } from '../../../src/command-metadata';
import type { RefundClaimAuthoriser } from '../../../src/payments/claims';
import { standardRoutes } from '../../../src/routes';
import { mountBillingRoutes } from '../../../adapters/http/routes/billing';
import { until } from '../../support/wait';
import { paidTopUp, settleUsage, startPaymentsHarness, verifyPurchasedCredit, type PaymentsHarness } from './harness';

/**
 * Refund claims after closure and the forfeiture 360 days after it, through the HTTP API, the
 * Stripe stand-in and the gateway's own forfeiture schedule (its clock injected and moved past
 * the period). Each ends with `tollgate verify` and the journal agreeing with the ledger.
 */

const CLAIMANT_HEADER = 'x-test-claimant';
/**
 * The customer route's authorisation seam, filled for the test: user sessions (issue 14) will
 * authorise an owner or billing member; here a header names the account. What the route does
 * with an authorised claimant is what is under test.
 */
const headerClaimant: RefundClaimAuthoriser = {
  async authorise(request) {
    const accountId = request.headers[CLAIMANT_HEADER];
    return typeof accountId === 'string' ? { accountId, actor: { kind: 'system', process: 'test-claimant' } } : null;
  },
};

const DAY_MS = 86_400_000;
let clockOffsetMs = 0;
let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness({
    forfeitureClock: () => new Date(Date.now() + clockOffsetMs),
    routes: standardRoutes.map((mount) => (mount === mountBillingRoutes ? billingRoutes({ refundClaimAuthoriser: headerClaimant }) : mount)),
    env: { TOLLGATE_RETENTION_CHECK_INTERVAL_S: '0.2' },
  });
});
afterAll(async () => h?.stop());

async function claimAsCustomer(accountId: string | null, body: unknown = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (accountId !== null) headers[CLAIMANT_HEADER] = accountId;
  const response = await fetch(`${h.tg.url}/v1/account/refund-claims`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: response.status, body: (await response.json()) as any };
}

async function manualTopUp(accountId: string, amountUsd: string, reference: string): Promise<void> {
  const answer = await h.call('POST', `/admin/accounts/${accountId}/top-ups`, h.tg.adminKey, { amount_usd: amountUsd, reference, reason: 'bank transfer' });
  expect(answer.status).toBe(201);
}

test("a customer claims a closed account's credit: the card part is refunded at once, the bank-transfer part stays outstanding for a payout, nothing twice", async () => {
  const ann = await h.openCustomer('Ann');
  const cardPayment = await paidTopUp(h, ann, '20.00');
  await manualTopUp(ann.accountId, '30', 'TR-ann-1');
  await settleUsage(h, 'payments-test-model', ann.accountId, 'req_ann_1', usd('5'));
  // Closed with its card credit still on it (as after a termination whose refund Stripe refused).
  const closed = await h.tg.gateway.ledger.accounts.handle(accountStreamId(ann.accountId), {
    type: 'CloseAccount',
    data: { reason: 'admin_decision' },
    metadata: systemMetadata('test'),
  });
  expect(closed.ok).toBe(true);

  expect((await claimAsCustomer(null)).status).toBe(403);
  const claimed = await claimAsCustomer(ann.accountId);
  expect(claimed.status).toBe(201);
  // 45 remains (50 bought, 5 spent); the card gives back at most what it paid, 20.
  expect(claimed.body).toMatchObject({ object: 'billing.refund_claim', claimed_usd: '45.000000', outstanding_usd: '25.000000' });
  expect(claimed.body.refund.parts).toEqual([expect.objectContaining({ payment_intent: cardPayment, amount_usd: '20.000000', status: 'recorded' })]);
  expect(h.stripeServer.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(1);

  // A second claim finds nothing unclaimed; the claim id's refunds are not made again.
  const again = await claimAsCustomer(ann.accountId);
  expect([again.status, again.body.error.code]).toEqual([409, 'nothing_to_claim']);

  // The operator pays the outstanding part by bank transfer; more than that is refused.
  const tooMuch = await h.call('POST', `/admin/accounts/${ann.accountId}/payouts`, h.tg.adminKey, {
    method: 'bank_transfer',
    reference: 'OUT-ann-0',
    amount_usd: '25.01',
    reason: 'claim',
  });
  expect([tooMuch.status, tooMuch.body.error.code]).toEqual([409, 'exceeds_refundable_credit']);
  const paid = await h.call('POST', `/admin/accounts/${ann.accountId}/payouts`, h.tg.adminKey, {
    method: 'bank_transfer',
    reference: 'OUT-ann-1',
    amount_usd: '25',
    reason: 'claim',
  });
  expect(paid.status).toBe(201);
  const { state } = await h.tg.gateway.ledger.accounts.load(accountStreamId(ann.accountId));
  expect([state.purchased, state.claimedUnpaid, state.totalClaimed]).toEqual([0n, 0n, usd('45')]);

  const statement = await h.call('GET', `/admin/accounts/${ann.accountId}/statement`, h.tg.adminKey);
  expect(statement.body.data.map((l: { type: string }) => l.type)).toEqual(expect.arrayContaining(['RefundClaimed', 'RefundIssued', 'PayoutRecorded']));
  await verifyPurchasedCredit(h, ann.accountId, 0n);
});

test('360 days after closure the schedule forfeits what nobody claimed, never what was claimed; the journal takes it to income', async () => {
  const ben = await h.openCustomer('Ben');
  await manualTopUp(ben.accountId, '30', 'TR-ben-1');
  const closed = await h.call('POST', '/v1/account/close', ben.key);
  expect(closed.status).toBe(200);
  const claim = await h.call('POST', `/admin/accounts/${ben.accountId}/refund-claims`, h.tg.adminKey, { amount_usd: '10', reason: 'asked by phone' });
  expect(claim.status).toBe(201);
  expect(claim.body).toMatchObject({ claimed_usd: '10.000000', outstanding_usd: '10.000000', refund: null });

  // Within the period, the operator's route refuses and the schedule (running on the real date) leaves it.
  const early = await h.call('POST', `/admin/accounts/${ben.accountId}/forfeit-unclaimed`, h.tg.adminKey, { reason: 'tidy' });
  expect([early.status, early.body.error.code]).toEqual([409, 'claim_period_not_over']);

  clockOffsetMs = 361 * DAY_MS;
  const forfeited = await until(async () => (await h.accountEvents(ben.accountId)).find((e) => e.type === 'PurchasedCreditForfeited'), { timeoutMs: 30_000 });
  expect(forfeited.data).toEqual({ amount: usd('20'), reason: 'claim_period_over' });
  // Recorded as of the schedule's clock, past the claim period.
  expect(Date.parse(forfeited.metadata.occurredAt)).toBeGreaterThan(Date.now() + 360 * DAY_MS);

  // The schedule runs again and again: nothing more is forfeited; the claim stays owed.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const events = await h.accountEvents(ben.accountId);
  expect(events.filter((e) => e.type === 'PurchasedCreditForfeited')).toHaveLength(1);
  const { state } = await h.tg.gateway.ledger.accounts.load(accountStreamId(ben.accountId));
  expect([state.purchased, state.claimedUnpaid]).toEqual([usd('10'), usd('10')]);

  await until(
    async () => {
      const rows = await h.sql<{ amount: string }>(
        `SELECT coalesce(sum(amount), 0)::text AS amount FROM journal_postings WHERE account_id = $1 AND ledger_account = 'forfeited_credit_income'`,
        [ben.accountId],
      );
      return BigInt(rows[0]!.amount) === -usd('20') ? true : undefined;
    },
    { timeoutMs: 30_000 },
  );
  const statement = await h.call('GET', `/admin/accounts/${ben.accountId}/statement`, h.tg.adminKey);
  expect(statement.body.data).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ type: 'RefundClaimed', amount: '0.000000' }),
      expect.objectContaining({ type: 'PurchasedCreditForfeited', reference: 'claim_period_over', amount: '-20.000000' }),
    ]),
  );
  const audit = await h.sql<{ action: string; reason: string }>(`SELECT action, reason FROM audit_log WHERE target_id = $1 AND action = 'credit.forfeited'`, [
    ben.accountId,
  ]);
  expect(audit).toEqual([{ action: 'credit.forfeited', reason: 'claim_period_over' }]);

  // The claimed part is still paid out.
  const paid = await h.call('POST', `/admin/accounts/${ben.accountId}/payouts`, h.tg.adminKey, {
    method: 'bank_transfer',
    reference: 'OUT-ben-1',
    amount_usd: '10',
    reason: 'claim',
  });
  expect(paid.status).toBe(201);
  await verifyPurchasedCredit(h, ben.accountId, 0n);
});
