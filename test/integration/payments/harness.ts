import { Client } from 'pg';
import { startStripeTestServer, type StripeEventEnvelope, type StripeTestServer } from '../../support/stripe-stand-in';
import { createStripeClient, type StripeClient } from '../../../adapters/payments/stripe-client';
import { accountStreamId, type AccountEvent } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { systemMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { projectedBalance, runVerify, waitFor } from '../../support/ledger-checks';
import { apiClient } from '../admin/http';

/** A gateway with payments on, its Stripe pointed at the local stand-in, and webhook delivery. */

export const WEBHOOK_SECRET = 'whsec_test_tollgate_payments_0123456789';

export interface PaymentsHarness {
  readonly tg: TestGateway;
  readonly stripeServer: StripeTestServer;
  readonly call: ReturnType<typeof apiClient>;
  readonly signer: StripeClient;
  openCustomer(name: string): Promise<{ accountId: string; key: string; keyId: string }>;
  /** signs (with the webhook secret unless told otherwise) and POSTs an event to /webhooks/stripe */
  deliver(event: StripeEventEnvelope, options?: { secret?: string; timestamp?: number; signature?: string | null }): Promise<{ status: number; body: any }>;
  /** a customer top-up through Checkout, paid at the stand-in; returns the objects for the webhooks */
  checkout(
    customer: { key: string },
    amountUsd: string,
    taxCents?: number,
  ): Promise<{ session: Record<string, unknown>; paymentIntent: Record<string, unknown> & { id: string } }>;
  accountEvents(accountId: string): Promise<AccountEvent[]>;
  sql<T extends Record<string, unknown>>(text: string, values?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

export async function startPaymentsHarness(
  options: { admissionClock?: () => number; forfeitureClock?: () => Date; routes?: readonly RouteMount[]; env?: Record<string, string> } = {},
): Promise<PaymentsHarness> {
  const stripeServer = await startStripeTestServer();
  const tg = await startTestGateway({
    admissionClock: options.admissionClock,
    forfeitureClock: options.forfeitureClock,
    ...(options.routes && { routes: options.routes }),
    // No inference in these tests: an upstream that is never called.
    models: [{ id: 'payments-test-model', upstreams: [{ baseUrl: 'http://127.0.0.1:9', capacity: 1 }], maxOutputTokens: 16, operations: ['chat'] }],
    env: { STRIPE_SECRET_KEY: 'sk_test_tollgate_payments', STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, STRIPE_API_BASE: stripeServer.apiBase, ...options.env },
  }).catch(async (error: unknown) => {
    await stripeServer.stop();
    throw error;
  });
  const call = apiClient(tg.url);
  const signer = createStripeClient({ secretKey: 'sk_test_signer_only', apiBase: stripeServer.apiBase });
  const db = new Client({ connectionString: tg.databaseUrl });
  await db.connect();

  return {
    tg,
    stripeServer,
    call,
    signer,
    async openCustomer(name) {
      const created = await call('POST', '/admin/accounts', tg.adminKey, { display_name: name, email: `${name.toLowerCase()}@example.org` });
      expect(created.status).toBe(201);
      const accountId = created.body.account_id as string;
      const key = await call('POST', `/admin/accounts/${accountId}/keys`, tg.adminKey, { name: 'main' });
      expect(key.status).toBe(201);
      return { accountId, key: key.body.key, keyId: key.body.key_id };
    },
    async deliver(event, options = {}) {
      const payload = JSON.stringify(event);
      const header =
        options.signature === undefined
          ? signer.webhooks.generateTestHeaderString({
              payload,
              secret: options.secret ?? WEBHOOK_SECRET,
              ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
            })
          : options.signature;
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (header !== null) headers['stripe-signature'] = header;
      const response = await fetch(`${tg.url}/webhooks/stripe`, { method: 'POST', headers, body: payload });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    },
    async checkout(customer, amountUsd, taxCents = 0) {
      const started = await call('POST', '/v1/billing/top-ups', customer.key, { amount_usd: amountUsd });
      expect(started.status).toBe(201);
      const paid = stripeServer.payCheckoutSession(started.body.checkout_session_id, { taxCents });
      return paid as { session: Record<string, unknown>; paymentIntent: Record<string, unknown> & { id: string } };
    },
    async accountEvents(accountId) {
      const { events } = await tg.gateway.store.readStream(accountStreamId(accountId));
      return events.map((e) => e.event as AccountEvent);
    },
    async sql(text, values = []) {
      return (await db.query(text, values)).rows;
    },
    async stop() {
      await db.end().catch(() => {});
      await tg.stop();
      await stripeServer.stop();
    },
  };
}

/**
 * A request of `tokens` input tokens on `model` priced at USD 1 per million, reserved and settled
 * through the ledger: the account is charged exactly `tokens` micro-USD.
 */
export async function settleUsage(h: PaymentsHarness, model: string, accountId: string, requestId: string, tokens: bigint): Promise<void> {
  const stream = accountStreamId(accountId);
  const placed = await h.tg.gateway.ledger.accounts.handle(stream, {
    type: 'PlaceReservation',
    data: { requestId, keyId: 'k_test', model, operation: 'chat', amount: tokens, priceVersion: 1 },
    metadata: systemMetadata('test'),
  });
  if (!placed.ok) throw new Error(`reservation refused: ${placed.error.error}`);
  const settled = await h.tg.gateway.ledger.accounts.handle(stream, {
    type: 'SettleReservation',
    data: {
      requestId,
      usage: { inputTokens: tokens, outputTokens: 0n, estimated: false },
      price: { inputPerMillion: usd('1'), outputPerMillion: usd('1'), version: 1 },
      outcome: 'completed',
    },
    metadata: systemMetadata('test'),
  });
  if (!settled.ok) throw new Error(`settlement refused: ${settled.error.error}`);
}

/** A paid Checkout top-up (tax on top, if any), credited by its webhook: the PaymentIntent id. */
export async function paidTopUp(h: PaymentsHarness, customer: { key: string }, amountUsd: string, taxCents = 0): Promise<string> {
  const { paymentIntent } = await h.checkout(customer, amountUsd, taxCents);
  expect((await h.deliver(h.stripeServer.event('payment_intent.succeeded', paymentIntent))).body.outcome).toBe('credited');
  return paymentIntent.id;
}

/**
 * `tollgate verify` (the real CLI) exits 0 once the balances projection and the journal both show
 * `purchased` as the account's purchased credit.
 */
export async function verifyPurchasedCredit(h: PaymentsHarness, accountId: string, purchased: bigint): Promise<void> {
  await waitFor(
    'the balances projection',
    async () => ((await projectedBalance(h.tg.databaseUrl, accountId))?.purchased === purchased ? true : undefined),
    30_000,
  );
  await waitFor(
    'the journal',
    async () => {
      const rows = await h.sql<{ amount: string }>(
        `SELECT coalesce(sum(amount), 0)::text AS amount FROM journal_postings WHERE account_id = $1 AND ledger_account = 'customer_purchased_credit'`,
        [accountId],
      );
      return BigInt(rows[0]!.amount) === -purchased ? true : undefined;
    },
    30_000,
  );
  const verified = await runVerify(h.tg.databaseUrl);
  expect({ code: verified.code, out: verified.stdout + verified.stderr }).toMatchObject({ code: 0 });
}
