import { accountStreamId } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { systemMetadata } from '../../../src/command-metadata';
import { DashboardClient } from '../../support/dashboard-client';
import { moneyOf } from '../../support/ledger-checks';
import { TestSmtpServer, linkTokenIn } from '../../support/smtp';
import { settleUsage, startPaymentsHarness, verifyPurchasedCredit, type PaymentsHarness } from './harness';

/**
 * The customer's own refund claim after closure, through HTTP with real people: signed up through
 * the identity API, the emailed link followed (real SMTP), signed in with a password. The gateway's
 * own authoriser (no test seam): the owner's or a billing member's dashboard session claims; a
 * viewer, a developer, a call without the dashboard header and an API key are refused. A closed
 * account's people still sign in and read, and change nothing else. The ledger ends exact.
 */

const PASSWORD = 'amber lanterns over the quay';
const smtp = new TestSmtpServer();
let h: PaymentsHarness;

beforeAll(async () => {
  await smtp.start();
  h = await startPaymentsHarness({
    env: { SMTP_URL: smtp.url, TOLLGATE_BCRYPT_COST: '4', TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05', TOLLGATE_MAIL_RETRY_BASE_S: '0.05' },
  });
});
afterAll(async () => {
  await h?.stop();
  await smtp.stop();
});

async function signIn(address: string): Promise<DashboardClient> {
  const client = new DashboardClient(h.tg.url);
  expect((await client.post('/dashboard/api/sign-in', { email: address, password: PASSWORD })).status).toBe(200);
  return client;
}

/** Signs up, follows the emailed link, signs in: the person's client, user id and own account. */
async function newPerson(address: string): Promise<{ client: DashboardClient; userId: string; accountId: string }> {
  const client = new DashboardClient(h.tg.url);
  const before = smtp.to(address).length;
  expect((await client.post('/dashboard/api/sign-up', { email: address, name: 'P', password: PASSWORD, organisation: 'Org' })).status).toBe(202);
  const mail = await smtp.waitFor(address, before + 1);
  expect((await client.post('/dashboard/api/verify-email', { token: linkTokenIn(mail) })).status).toBe(200);
  const signed = await signIn(address);
  const session = (await signed.get('/dashboard/api/session')).body;
  return { client: signed, userId: session.user_id, accountId: session.account_id };
}

/** `person` joins `accountId` in `role` and switches their session to it. */
async function join(person: { client: DashboardClient; userId: string }, accountId: string, role: 'viewer' | 'developer' | 'billing'): Promise<void> {
  await h.tg.gateway.identity.addMember(accountId, person.userId, role, systemMetadata('test'));
  expect((await person.client.post('/dashboard/api/me/account', { account_id: accountId })).status).toBe(200);
}

async function manualTopUpBy(harness: PaymentsHarness, accountId: string, amountUsd: string, reference: string): Promise<void> {
  const answer = await harness.call('POST', `/admin/accounts/${accountId}/top-ups`, harness.tg.adminKey, {
    amount_usd: amountUsd,
    reference,
    reason: 'bank transfer',
  });
  expect(answer.status).toBe(201);
}

const claimsOf = async (accountId: string) => (await h.accountEvents(accountId)).filter((e) => e.type === 'RefundClaimed');

test("the owner and a billing member claim a closed account's credit from their sessions; others are refused; a repeated claim counts once; the ledger is exact", async () => {
  const owner = await newPerson('owner@claim.test');
  const accountId = owner.accountId;

  // Credit by card (the owner's Checkout, paid at the Stripe stand-in) and by bank transfer; some spent.
  const started = await owner.client.post('/v1/billing/top-ups', { amount_usd: '20.00' });
  expect(started.status).toBe(201);
  const paid = h.stripeServer.payCheckoutSession(started.body.checkout_session_id, { taxCents: 0 }) as {
    paymentIntent: Record<string, unknown> & { id: string };
  };
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paid.paymentIntent))).body.outcome).toBe('credited');
  await manualTopUpBy(h, accountId, '30', 'TR-claim-1');
  await settleUsage(h, 'payments-test-model', accountId, 'req_claim_1', usd('5'));

  const billing = await newPerson('billing@claim.test');
  const viewer = await newPerson('viewer@claim.test');
  const developer = await newPerson('developer@claim.test');
  await join(billing, accountId, 'billing');
  await join(viewer, accountId, 'viewer');
  await join(developer, accountId, 'developer');
  const key = await owner.client.post('/v1/account/keys', { name: 'laptop' });
  expect(key.status).toBe(201);

  // Open: nothing to claim yet (the claim is for a closed account).
  const early = await billing.client.post('/v1/account/refund-claims');
  expect(early.status).toBe(409);
  expect((await owner.client.get('/v1/account')).body.closure).toBeNull();

  // Closed with its credit on it (as after a termination whose card refund Stripe refused).
  const closed = await h.tg.gateway.ledger.accounts.handle(accountStreamId(accountId), {
    type: 'CloseAccount',
    data: { reason: 'admin_decision' },
    metadata: systemMetadata('test'),
  });
  expect(closed.ok).toBe(true);
  const closedAt = (await h.accountEvents(accountId)).find((e) => e.type === 'AccountClosed')!.metadata.occurredAt;

  // Its people still sign in, and read the balance, the deadline and the statement.
  const owner2 = await signIn('owner@claim.test');
  const view = await owner2.get('/v1/account');
  expect(view.status).toBe(200);
  expect(view.body).toMatchObject({ status: 'closed', purchased_usd: '45.000000' });
  expect(view.body.closure).toEqual({
    closed_at: closedAt,
    claimable_until: new Date(Date.parse(closedAt) + 360 * 86_400_000).toISOString(),
    claim_period_over: false,
    claimable_usd: '45.000000',
    claimed_outstanding_usd: '0.000000',
  });
  expect((await owner2.get('/v1/account/transactions')).status).toBe(200);
  expect((await viewer.client.get('/v1/account')).body.closure.claimable_usd).toBe('45.000000');

  // Nothing that spends or changes the account: a key, a top-up, auto top-up; clearly refused.
  for (const [path, body] of [
    ['/v1/account/keys', { name: 'again' }],
    ['/v1/billing/top-ups', { amount_usd: '10.00' }],
  ] as const) {
    const refused = await owner2.post(path, body);
    expect([refused.status, refused.body.error.code, refused.body.error.type]).toEqual([403, 'account_closed', 'invalid_request_error']);
  }
  // The account's API key went with the closure; it authorises nothing, the claim included.
  const byKey = await h.call('POST', '/v1/account/refund-claims', key.body.key, {});
  expect([byKey.status, byKey.body.error.code]).toEqual([403, 'refund_claim_not_authorised']);

  // A viewer and a developer are refused, in OpenAI's shape, and nothing is recorded.
  for (const person of [viewer, developer]) {
    const refused = await person.client.post('/v1/account/refund-claims');
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual({
      error: { message: expect.stringMatching(/does not allow this/), type: 'invalid_request_error', param: null, code: 'insufficient_role' },
    });
  }
  // The session cookie without the dashboard header (a cross-site form) is not a claim.
  const forged = await billing.client.call('POST', '/v1/account/refund-claims', {}, { 'x-tollgate-dashboard': '0' });
  expect([forged.status, forged.body.error.code]).toEqual([403, 'refund_claim_not_authorised']);
  expect(await claimsOf(accountId)).toHaveLength(0);

  // The billing member claims: the card part is refunded at once, the bank transfer part stays outstanding.
  const claimed = await billing.client.post('/v1/account/refund-claims');
  expect(claimed.status).toBe(201);
  expect(claimed.body).toMatchObject({ object: 'billing.refund_claim', account_id: accountId, claimed_usd: '45.000000', outstanding_usd: '25.000000' });
  expect(claimed.body.refund.parts).toEqual([expect.objectContaining({ payment_intent: paid.paymentIntent.id, amount_usd: '20.000000', status: 'recorded' })]);

  // The owner (twice, as a double click) finds nothing left: counted once, refunded once.
  for (let i = 0; i < 2; i++) {
    const again = await owner2.post('/v1/account/refund-claims');
    expect([again.status, again.body.error.code]).toEqual([409, 'nothing_to_claim']);
  }
  const claims = await claimsOf(accountId);
  expect(claims).toHaveLength(1);
  expect(claims[0]!.metadata.actor).toEqual({ kind: 'user', userId: billing.userId });
  expect(h.stripeServer.requests.filter((r) => r.method === 'POST' && r.path === '/v1/refunds')).toHaveLength(1);
  expect((await owner2.get('/v1/account')).body.closure).toMatchObject({ claimable_usd: '0.000000', claimed_outstanding_usd: '25.000000' });
  const statement = (await owner2.get('/v1/account/transactions')).body.data.map((l: { type: string }) => l.type);
  expect(statement).toEqual(expect.arrayContaining(['RefundClaimed', 'RefundIssued']));

  // The ledger: 50 bought, 5 spent, 20 back to the card, 25 still held for the payout.
  const money = moneyOf(await h.accountEvents(accountId));
  expect(money).toEqual({ toppedUp: usd('50'), charged: usd('5'), refunded: usd('20'), balance: usd('25') });
  await verifyPurchasedCredit(h, accountId, usd('25'));
}, 180_000);

test("a closed account's owner claims with no card behind the credit: all of it outstanding for support's payout", async () => {
  const owner = await newPerson('bank@claim.test');
  await manualTopUpBy(h, owner.accountId, '12.34', 'TR-bank-1');
  // The owner closes the account from their own session: nothing to give back to a card.
  const closed = await owner.client.post('/v1/account/close');
  expect(closed.status).toBe(200);
  const claimed = await owner.client.post('/v1/account/refund-claims', { amount_usd: '10' });
  expect(claimed.status).toBe(201);
  expect(claimed.body).toMatchObject({ claimed_usd: '10.000000', outstanding_usd: '10.000000', refund: null });
  const claims = await claimsOf(owner.accountId);
  expect(claims.map((c) => [c.data.amount, c.metadata.actor])).toEqual([[usd('10'), { kind: 'user', userId: owner.userId }]]);
  expect((await owner.client.get('/v1/account')).body.closure).toMatchObject({ claimable_usd: '2.340000', claimed_outstanding_usd: '10.000000' });
  await verifyPurchasedCredit(h, owner.accountId, usd('12.34'));
}, 120_000);
