import OpenAI from 'openai';
import { apiKeyStreamId } from '../../domain/api-key';
import { usd } from '../../domain/money';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, accountState, addModel, eventsOfType, issueKey, openAccount, openAiClient, rejectionOf } from '../support/e2e-setup';
import { moneyOf, projectedBalance, reservationEndings, runVerify, waitFor } from '../support/ledger-checks';

/**
 * A key's limits end to end, through the official openai client: the spend limit refuses with
 * 429 key_spend_limit_reached (not retried), concurrent requests never pass it, an expired key
 * gets 401, a model outside the allowlist 403; a second gateway on the same database sees every
 * change; the ledger stays exact and `tollgate verify` passes.
 */

// 18 tokens per request (mock-llm) at USD 20,000 per million: USD 0.36 charged; the estimate
// with max_tokens 10 is about USD 0.47.
const price = { input: '20000', output: '20000' };

let upstream: MockLlm;
let gw: TestGateway;
let other: TestGateway;
/** how far the keys' clock runs ahead of the real one (both gateways) */
let keysClockAheadMs = 0;
const keysClock = () => new Date(Date.now() + keysClockAheadMs);

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  const databaseUrl = await createTestDatabase('e2e_keylimits');
  const models = ['pricey', 'cheap'].map((id) => ({
    id,
    upstreams: [{ baseUrl: upstream.baseUrl, capacity: 32 }],
    maxOutputTokens: 100,
    operations: ['chat' as const],
  }));
  gw = await startTestGateway({ models, databaseUrl, keysClock });
  other = await startTestGateway({ models, databaseUrl, keysClock });
  await addModel(gw.gateway.ledger, 'pricey', { chat: price }, 100);
  await addModel(gw.gateway.ledger, 'cheap', { chat: { input: '1', output: '1' } }, 100);
}, 120_000);

afterAll(async () => {
  await other?.stop();
  await gw?.stop();
  await upstream?.stop();
});

async function setLimits(manager: string, keyId: string, body: unknown, url = gw.url) {
  const response = await fetch(`${url}/v1/account/keys/${keyId}/limits`, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${manager}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function listed(manager: string, keyId: string) {
  const response = await fetch(`${gw.url}/v1/account/keys`, { headers: { authorization: `Bearer ${manager}` } });
  const { data } = (await response.json()) as { data: Record<string, unknown>[] };
  return data.find((k) => k['key_id'] === keyId)!;
}

const ask = (client: OpenAI, model = 'pricey') => client.chat.completions.create({ model, max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] });

async function ledgerIsExact(accountId: string) {
  await gw.gateway.settlements.settled(accountId);
  await other.gateway.settlements.settled(accountId);
  const events = await accountEvents(gw.gateway.ledger, accountId);
  const endings = reservationEndings(events);
  expect(endings.wrong).toEqual([]);
  expect(endings.open).toEqual([]);
  const state = await accountState(gw.gateway.ledger, accountId);
  expect(state.purchased).toBe(moneyOf(events).balance);
  await waitFor(
    'the balances projection to catch up',
    async () => ((await projectedBalance(gw.databaseUrl, accountId))?.purchased === state.purchased ? true : undefined),
    30_000,
  );
  return events;
}

it('a daily spend limit refuses with 429 key_spend_limit_reached, not retried; the listing shows the spend', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '50' });
  const manager = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
  const worker = await issueKey(gw.gateway.keys, accountId);
  const set = await setLimits(manager.secret, worker.keyId, { spend_limit: { period: 'day', amount_usd: '2.00' } });
  expect(set.status).toBe(200);
  expect(set.body['spend_limit']).toMatchObject({ period: 'day', amount_usd: '2.000000', spent_usd: '0.000000', remaining_usd: '2.000000' });

  let attempts = 0;
  const client = new OpenAI({
    baseURL: `${gw.url}/v1`,
    apiKey: worker.secret,
    maxRetries: 2,
    fetch: (input, init) => {
      attempts++;
      return fetch(input, init);
    },
  });
  let succeeded = 0;
  let declined: unknown;
  for (let i = 0; i < 20 && declined === undefined; i++) {
    try {
      await ask(client);
      succeeded++;
    } catch (error) {
      declined = error;
    }
  }
  expect(succeeded).toBeGreaterThanOrEqual(2);
  expect(declined).toBeInstanceOf(OpenAI.RateLimitError);
  const error = declined as InstanceType<typeof OpenAI.RateLimitError>;
  expect(error.status).toBe(429);
  expect(error.code).toBe('key_spend_limit_reached');
  expect(error.headers?.get('x-should-retry')).toBe('false');
  expect(error.message).toMatch(/daily spend limit of USD 2\.000000/);
  expect(attempts).toBe(succeeded + 1);

  // The account still has credit: only this key is stopped; another key of the account works.
  const otherKey = await issueKey(gw.gateway.keys, accountId);
  expect((await ask(openAiClient(gw.url, otherKey.secret))).choices[0]!.finish_reason).toBe('stop');

  const events = await ledgerIsExact(accountId);
  const charged = eventsOfType(events, 'ReservationSettled')
    .filter((e) => e.data.keyId === worker.keyId)
    .reduce((sum, e) => sum + e.data.actualCost, 0n);
  expect(charged).toBeLessThanOrEqual(usd('2'));
  const view = await listed(manager.secret, worker.keyId);
  expect(view['spend_limit']).toMatchObject({ period: 'day', spent_usd: (Number(charged) / 1e6).toFixed(6), held_usd: '0.000000' });
  expect(view['created_by']).toBeNull();
});

it('concurrent requests never take a key past its limit', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '50' });
  const manager = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
  const worker = await issueKey(gw.gateway.keys, accountId);
  expect((await setLimits(manager.secret, worker.keyId, { spend_limit: { period: 'total', amount_usd: '3.00' } })).status).toBe(200);
  // Both gateways at once, 24 requests: about 6 reservations fit in USD 3.
  const clients = [openAiClient(gw.url, worker.secret), openAiClient(other.url, worker.secret)];
  const results = await Promise.allSettled(Array.from({ length: 24 }, (_, i) => ask(clients[i % 2]!)));
  const ok = results.filter((r) => r.status === 'fulfilled').length;
  const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as InstanceType<typeof OpenAI.APIError>);
  expect(ok).toBeGreaterThan(0);
  expect(refused.length).toBeGreaterThan(0);
  for (const e of refused) expect(e.code).toBe('key_spend_limit_reached');

  const events = await ledgerIsExact(accountId);
  const placed = eventsOfType(events, 'ReservationPlaced').filter((e) => e.data.keyId === worker.keyId);
  expect(placed).toHaveLength(ok);
  // Replayed in the stream's order: after every placement, what the key was charged plus what it
  // held never passed the limit (a settlement frees its hold and charges no more than it).
  let charged = 0n;
  const held = new Map<string, bigint>();
  for (const e of events) {
    if (e.type === 'ReservationPlaced' && e.data.keyId === worker.keyId) {
      held.set(e.data.requestId, e.data.amount);
      const holding = [...held.values()].reduce((a, b) => a + b, 0n);
      expect(charged + holding).toBeLessThanOrEqual(usd('3'));
    }
    if (e.type === 'ReservationSettled' && held.has(e.data.requestId)) {
      held.delete(e.data.requestId);
      charged += e.data.actualCost;
    }
    if ((e.type === 'ReservationReleased' || e.type === 'ReservationExpired') && held.has(e.data.requestId)) held.delete(e.data.requestId);
  }
  expect(charged).toBeLessThanOrEqual(usd('3'));
  expect(charged).toBeGreaterThan(0n);
});

it('a model outside the allowlist gets 403 model_not_allowed; the change reaches the other gateway', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '20' });
  const manager = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
  const worker = await issueKey(gw.gateway.keys, accountId);
  const onOther = openAiClient(other.url, worker.secret);
  // The other gateway has verified and cached the key, unlimited.
  await ask(onOther);

  expect((await setLimits(manager.secret, worker.keyId, { allowed_models: ['cheap'] })).status).toBe(200);
  const denied = await waitFor(
    'the other gateway to apply the allowlist',
    async () => {
      const e = await rejectionOf(ask(onOther)).catch(() => undefined);
      return e instanceof OpenAI.PermissionDeniedError ? e : undefined;
    },
    10_000,
    50,
  );
  expect(denied.status).toBe(403);
  expect(denied.code).toBe('model_not_allowed');
  expect(denied.param).toBe('model');
  expect((await ask(onOther, 'cheap')).choices[0]!.finish_reason).toBe('stop');
  expect((await ask(openAiClient(gw.url, worker.secret), 'cheap')).choices[0]!.finish_reason).toBe('stop');
  await ledgerIsExact(accountId);
});

it('an expired key gets 401 api_key_expired on every gateway; the ledger verifies', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '20' });
  const manager = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
  const worker = await issueKey(gw.gateway.keys, accountId);
  const clients = [openAiClient(gw.url, worker.secret), openAiClient(other.url, worker.secret)];
  const inOneHour = new Date(Date.now() + 3_600_000).toISOString();
  expect((await setLimits(manager.secret, worker.keyId, { expires_at: inOneHour })).status).toBe(200);
  for (const client of clients) expect((await ask(client, 'cheap')).choices[0]!.finish_reason).toBe('stop');

  keysClockAheadMs = 2 * 3_600_000;
  try {
    for (const client of clients) {
      const e = await rejectionOf(ask(client, 'cheap'));
      expect(e).toBeInstanceOf(OpenAI.AuthenticationError);
      expect((e as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('api_key_expired');
    }
  } finally {
    keysClockAheadMs = 0;
  }
  expect(await listed(manager.secret, worker.keyId)).toMatchObject({ expires_at: inOneHour, expired: false, status: 'active' });
  const { state } = await gw.gateway.ledger.apiKeys.load(apiKeyStreamId(worker.keyId));
  expect(state.status).toBe('active');
  await ledgerIsExact(accountId);

  const verified = await runVerify(gw.databaseUrl);
  expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
}, 120_000);
