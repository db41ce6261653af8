import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { accountStreamId, type AccountEvent } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { systemMetadata } from '../../../src/command-metadata';
import {
  AUTO_TOP_UP_METADATA,
  AutoTopUpProcess,
  attemptIdFor,
  idempotencyKeyFor,
  stripeOffSessionCharger,
  type OffSessionCharger,
  type SavedCard,
} from '../../../src/process-managers/auto-top-up';
import { accountEvents, eventsOfType, issueKey, openAccount, topUp, spend as spendOnLedger } from '../../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { createStripeClient } from '../../../adapters/payments/stripe-client';
import { startStripeTestServer, type StripeTestServer } from '../../support/stripe-stand-in';
import { until } from '../../support/wait';

const quiet = pino({ level: 'silent' });

describe('auto top-up', () => {
  let gw: TestGateway;
  let stripe: StripeTestServer;
  const cards = new Map<string, SavedCard>();
  const processes: AutoTopUpProcess[] = [];

  beforeAll(async () => {
    stripe = await startStripeTestServer();
    stripeClient = createStripeClient({ secretKey: 'sk_test_auto_top_up', apiBase: stripe.apiBase });
    // No STRIPE_SECRET_KEY: the gateway runs no auto top-up itself; each test runs its own.
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    });
  });
  // One manager at a time, as one would run per deployment.
  afterEach(async () => {
    for (const p of processes.splice(0)) await p.stop();
  });
  afterAll(async () => {
    await gw.stop();
    await stripe.stop();
  });

  /** What the manager asked Stripe to charge for a customer, replays included. */
  function chargeRequests(customerId: string) {
    return stripe.requests.filter((r) => r.method === 'POST' && r.path === '/v1/payment_intents' && r.params['customer'] === customerId);
  }

  /** The confirmations (the charge itself) of a customer's PaymentIntents, replays included. */
  function confirmRequests(customerId: string) {
    const ids = new Set([...stripe.paymentIntents.values()].filter((pi) => pi['customer'] === customerId).map((pi) => pi.id));
    return stripe.requests.filter((r) => r.method === 'POST' && /^\/v1\/payment_intents\/[^/]+\/confirm$/.test(r.path) && ids.has(r.path.split('/')[3]!));
  }

  function invoicesOf(customerId: string) {
    return [...stripe.invoices.values()].filter((i) => i['customer'] === customerId);
  }

  let stripeClient: ReturnType<typeof createStripeClient>;

  function charger(): OffSessionCharger {
    return stripeOffSessionCharger(stripeClient, async (accountId) => cards.get(accountId) ?? null, { automaticTax: true });
  }

  function startProcess(using: OffSessionCharger = charger()): AutoTopUpProcess {
    const { database, store, ledger } = gw.gateway;
    const p = new AutoTopUpProcess(database.pool, store, ledger, using, quiet, { pollIntervalMs: 50, retryBaseMs: 0 });
    p.start();
    processes.push(p);
    return p;
  }

  /** An account with $20, a saved card, and auto top-up of $25 below $10. */
  async function setUp(): Promise<{ accountId: string; customerId: string }> {
    const { ledger } = gw.gateway;
    const accountId = await openAccount(ledger, { topUpUsd: '20' });
    const customer = await stripeClient.customers.create({ metadata: { account_id: accountId } });
    const customerId = customer.id;
    cards.set(accountId, { customerId, paymentMethodId: `pm_${randomBytes(6).toString('hex')}` });
    const configured = await ledger.accounts.handle(accountStreamId(accountId), {
      type: 'ConfigureAutoTopUp',
      data: { autoTopUp: { threshold: usd('10'), amount: usd('25') } },
      metadata: systemMetadata('test'),
    });
    expect(configured.ok).toBe(true);
    return { accountId, customerId };
  }

  /** A request that costs `costUsd` (1 USD per million input tokens), settled. */
  const spend = (accountId: string, costUsd: string) => spendOnLedger(gw.gateway.ledger, accountId, costUsd, 'm');

  /** What the payment webhook does on payment_intent.succeeded (the payments part owns the real one). */
  async function paymentSucceeded(stored: { id: string } & Record<string, unknown>): Promise<void> {
    const intent = stored as { id: string; amount: number; metadata: Record<string, string> };
    const accountId = intent.metadata[AUTO_TOP_UP_METADATA.accountId]!;
    const handled = await gw.gateway.ledger.accounts.handle(accountStreamId(accountId), {
      type: 'CompleteTopUp',
      data: {
        paymentReference: intent.id,
        amount: BigInt(intent.metadata[AUTO_TOP_UP_METADATA.creditCents]!) * 10_000n,
        autoTopUpAttemptId: intent.metadata[AUTO_TOP_UP_METADATA.attemptId]!,
      },
      metadata: systemMetadata('test-webhook'),
    });
    expect(handled.ok).toBe(true);
  }

  const withType = <T extends AccountEvent['type']>(events: AccountEvent[], type: T) => eventsOfType(events, type);

  test('a settlement below the threshold charges the saved card off-session once, and the webhook ends the attempt', async () => {
    startProcess();
    const { accountId, customerId } = await setUp();
    await spend(accountId, '5'); // 15 left: above the threshold, nothing happens
    await spend(accountId, '7'); // 8 left: below
    const intent = await until(() => stripe.succeededPaymentIntents(customerId)[0]);

    const events = await accountEvents(gw.gateway.ledger, accountId);
    const [trigger] = withType(events, 'AutoTopUpTriggered');
    const { events: stored } = await gw.gateway.store.readStream(accountStreamId(accountId));
    const settlement = stored.filter((e) => e.event.type === 'ReservationSettled')[1]!;
    // The attempt is named after the triggering settlement, so a restart finds the same attempt.
    expect(trigger!.data).toEqual({ attemptId: attemptIdFor(settlement.id), amount: usd('25'), debt: 0n });
    expect(intent.amount).toBe(2_500);
    const [invoice] = invoicesOf(customerId);
    const metadata = { [AUTO_TOP_UP_METADATA.accountId]: accountId, [AUTO_TOP_UP_METADATA.attemptId]: trigger!.data.attemptId, credit_cents: '2500' };
    expect(intent.metadata).toEqual({ ...metadata, [AUTO_TOP_UP_METADATA.invoiceId]: invoice!.id });
    // Invoiced separately: its own invoice, for the net amount with tax asked of Stripe Tax, paid by this charge.
    expect(invoice).toMatchObject({ status: 'paid', subtotal: 2_500, total: 2_500, amount_paid: 2_500, metadata, automatic_tax: { enabled: true } });
    const request = chargeRequests(customerId)[0]!;
    expect(request.params).toMatchObject({ currency: 'usd', payment_method: cards.get(accountId)!.paymentMethodId });
    expect(confirmRequests(customerId)[0]!.params).toMatchObject({ off_session: 'true' });
    expect(request.idempotencyKey).toBe(`${idempotencyKeyFor(trigger!.data.attemptId)}-intent`);

    await paymentSucceeded(intent);
    const { state } = await gw.gateway.ledger.accounts.load(accountStreamId(accountId));
    expect(state.pendingAutoTopUp).toBeNull();
    expect(state.purchased).toBe(usd('33'));
    // Nothing else was charged meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(stripe.succeededPaymentIntents(customerId)).toHaveLength(1);
  });

  test('a settlement that leaves the balance negative charges the debt and the configured amount in one charge', async () => {
    startProcess();
    const { accountId, customerId } = await setUp();
    const stream = accountStreamId(accountId);
    const { ledger } = gw.gateway;
    // Reserved USD 1, cost USD 23.25 on USD 20 of credit: USD 3.25 in debt.
    const placed = await ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: { requestId: 'req_short', keyId: 'k', model: 'm', operation: 'chat', amount: usd('1'), priceVersion: 1 },
      metadata: systemMetadata('test'),
    });
    expect(placed.ok).toBe(true);
    const settled = await ledger.accounts.handle(stream, {
      type: 'SettleReservation',
      data: {
        requestId: 'req_short',
        usage: { inputTokens: 23_250_000n, outputTokens: 0n, estimated: false },
        price: { inputPerMillion: 1_000_000n, outputPerMillion: 0n, version: 1 },
        outcome: 'completed',
      },
      metadata: systemMetadata('test'),
    });
    expect(settled.ok).toBe(true);

    const intent = await until(() => stripe.succeededPaymentIntents(customerId)[0]);
    const [trigger] = withType(await accountEvents(ledger, accountId), 'AutoTopUpTriggered');
    expect(trigger!.data).toMatchObject({ amount: usd('28.25'), debt: usd('3.25') });
    expect(intent.amount).toBe(2_825);
    expect(chargeRequests(customerId)).toHaveLength(1);

    await paymentSucceeded(intent);
    const { state } = await ledger.accounts.load(stream);
    // The debt is paid and the configured amount is there to spend.
    expect([state.purchased, state.status, state.pendingAutoTopUp]).toEqual([usd('25'), 'open', null]);
  });

  test.each(['card_declined', 'authentication_required'] as const)(
    'a decline (%s) records the failure, suspends the account, and the account API says why',
    async (code) => {
      startProcess();
      const { accountId, customerId } = await setUp();
      stripe.declineFor(customerId, code);
      const key = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
      await spend(accountId, '12');

      const failed = await until(async () => withType(await accountEvents(gw.gateway.ledger, accountId), 'AutoTopUpFailed')[0]);
      expect(failed.data.reason).toBe(code);
      const suspended = await until(async () => withType(await accountEvents(gw.gateway.ledger, accountId), 'AccountSuspended')[0]);
      expect(suspended.data.reason).toBe('auto_top_up_failed');

      const headers = { authorization: `Bearer ${key.secret}` };
      const view = await until(async () => {
        const body = (await (await fetch(`${gw.url}/v1/billing/auto-top-up`, { headers })).json()) as {
          last_failure: { reason: string } | null;
          account_status: string;
        };
        // Account reads come from the live log's cache, which may trail the attempts table by a moment.
        return body.last_failure && body.account_status === 'suspended' ? body : undefined;
      });
      expect(view).toMatchObject({
        enabled: true,
        threshold_usd: '10.000000',
        amount_usd: '25.000000',
        account_status: 'suspended',
        suspension_reason: 'auto_top_up_failed',
        pending_attempt: null,
        last_failure: { attempt_id: failed.data.attemptId, reason: code, amount_usd: '25.000000' },
      });
      const account = (await (await fetch(`${gw.url}/v1/account`, { headers })).json()) as { status: string; suspension_reason: string };
      expect(account).toMatchObject({ status: 'suspended', suspension_reason: 'auto_top_up_failed' });

      // Replenished by hand: the suspension ends.
      await topUp(gw.gateway.ledger, accountId, '20');
      const { state } = await gw.gateway.ledger.accounts.load(accountStreamId(accountId));
      expect(state.status).toBe('open');
      expect(stripe.succeededPaymentIntents(customerId)).toHaveLength(0);
      // The declined attempt's invoice was voided: nothing is owed on it.
      expect(invoicesOf(customerId).map((i) => i['status'])).toEqual(['void']);
    },
  );

  test('a crash between the charge and the webhook: the restarted manager sends the same idempotency key and nothing is charged twice', async () => {
    let crashed!: () => void;
    const crash = new Promise<void>((resolve) => (crashed = resolve));
    const real = charger();
    const first = startProcess({
      async charge(input) {
        await real.charge(input);
        crashed();
        // The process dies before it can record that the charge went through.
        throw new Error('crashed after the charge call');
      },
    });
    const { accountId, customerId } = await setUp();
    await spend(accountId, '12');
    await crash;
    await first.stop();
    expect(stripe.succeededPaymentIntents(customerId)).toHaveLength(1);

    startProcess();
    await until(() => (confirmRequests(customerId).length >= 2 ? true : undefined));
    const { rows } = await until(async () => {
      const result = await gw.gateway.database.pool.query<{ status: string; payment_intent_id: string }>(
        "SELECT status, payment_intent_id FROM auto_top_up_attempts WHERE account_id = $1 AND status = 'charged'",
        [accountId],
      );
      return result.rows.length > 0 ? result : undefined;
    });

    const sent = chargeRequests(customerId);
    expect(sent.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sent.map((r) => r.idempotencyKey)).size).toBe(1);
    expect(new Set(confirmRequests(customerId).map((r) => r.idempotencyKey)).size).toBe(1);
    expect(stripe.succeededPaymentIntents(customerId)).toHaveLength(1);
    // Every step replayed under its own key: one invoice, paid once.
    expect(invoicesOf(customerId).map((i) => [i['status'], i['amount_paid']])).toEqual([['paid', 2_500]]);
    const intent = stripe.succeededPaymentIntents(customerId)[0]!;
    expect(rows[0]!.payment_intent_id).toBe(intent.id);
    expect(withType(await accountEvents(gw.gateway.ledger, accountId), 'AutoTopUpTriggered')).toHaveLength(1);

    await paymentSucceeded(intent);
    const { state } = await gw.gateway.ledger.accounts.load(accountStreamId(accountId));
    expect(state.pendingAutoTopUp).toBeNull();
    expect(state.purchased).toBe(usd('33'));
  });

  test('PUT /v1/billing/auto-top-up configures, validates and disables', async () => {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '20' });
    const key = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
    const put = (body: unknown) =>
      fetch(`${gw.url}/v1/billing/auto-top-up`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    const ok = await put({ threshold_usd: '5', amount_usd: '25.00' });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ enabled: true, threshold_usd: '5.000000', amount_usd: '25.000000', last_failure: null });
    const tooSmall = await put({ threshold_usd: '5', amount_usd: '5' });
    expect(tooSmall.status).toBe(409);
    expect(((await tooSmall.json()) as { error: { code: string } }).error.code).toBe('top_up_below_minimum');
    const subCent = await put({ threshold_usd: '5', amount_usd: '25.001' });
    expect(subCent.status).toBe(400);
    const off = await put({ enabled: false });
    expect(await off.json()).toMatchObject({ enabled: false, threshold_usd: null });
    const readOnly = await issueKey(gw.gateway.keys, accountId, ['account_read']);
    const forbidden = await fetch(`${gw.url}/v1/billing/auto-top-up`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${readOnly.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ threshold_usd: '5', amount_usd: '25' }),
    });
    expect(forbidden.status).toBe(403);
  });
});
