import OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { mockChatUsage, startMockLlm, type MockLlm } from '../../support/mock-llm';
import { apiClient, inOneHour } from './http';

/**
 * The customer API: an account-scoped key sees its own balance, keys and recent requests'
 * metadata, manages its own keys, and never reaches another account or the admin API.
 */

const MODEL = 'llama-account-test';
const MARKER = 'MARKER-acct-8d1f-prompt';
let upstream: MockLlm;
let tg: TestGateway;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, tg.adminKey, body);

async function openAccount(name: string, topUpUsd: string): Promise<{ accountId: string; key: string; keyId: string }> {
  const created = await admin('POST', '/admin/accounts', { display_name: name, email: `${name.toLowerCase()}@example.org` });
  const accountId = created.body.account_id as string;
  expect((await admin('POST', `/admin/accounts/${accountId}/top-ups`, { amount_usd: topUpUsd, reference: `${name}-1`, reason: 'test' })).status).toBe(201);
  const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'main' });
  return { accountId, key: key.body.key, keyId: key.body.key_id };
}

let alice: { accountId: string; key: string; keyId: string };
let bob: { accountId: string; key: string; keyId: string };

beforeAll(async () => {
  upstream = await startMockLlm();
  tg = await startTestGateway({ models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] }] });
  call = apiClient(tg.url);
  expect((await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 })).status).toBe(201);
  expect((await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '2', output_usd_per_million: '3' })).status).toBe(201);
  alice = await openAccount('Alice', '20');
  bob = await openAccount('Bob', '10');
});

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

test('GET /v1/account shows the key’s own balance', async () => {
  const grant = await admin('POST', `/admin/accounts/${alice.accountId}/promo-grants`, { amount_usd: '1.5', expires_at: inOneHour(), reason: 'welcome' });
  expect(grant.status).toBe(201);
  const account = await call('GET', '/v1/account', alice.key);
  expect(account.status).toBe(200);
  expect(account.body).toMatchObject({
    account_id: alice.accountId,
    status: 'open',
    balance_usd: '21.500000',
    available_usd: '21.500000',
    purchased_usd: '20.000000',
    promo_usd: '1.500000',
    reserved_usd: '0.000000',
  });
  // Personal data stays on the admin side.
  expect(account.body).not.toHaveProperty('email');
});

test('keys: list, create, revoke; a revoked key then gets 401', async () => {
  const created = await call('POST', '/v1/account/keys', alice.key, { name: 'laptop', scopes: ['inference', 'account_read'] });
  expect(created.status).toBe(201);
  expect(created.body).toMatchObject({ name: 'laptop', scopes: ['inference', 'account_read'], status: 'active' });
  expect((await call('GET', '/v1/account', created.body.key)).status).toBe(200);

  const listed = await call('GET', '/v1/account/keys', alice.key);
  const noLimits = { spend_limit: null, expires_at: null, expired: false, allowed_models: null };
  expect(listed.body.data).toEqual([
    {
      key_id: alice.keyId,
      prefix: `tg_${alice.keyId}`,
      name: 'main',
      scopes: ['inference', 'account_read', 'account_write'],
      status: 'active',
      created_by: { kind: 'operator' },
      ...noLimits,
    },
    {
      key_id: created.body.key_id,
      prefix: created.body.prefix,
      name: 'laptop',
      scopes: ['inference', 'account_read'],
      status: 'active',
      created_by: { kind: 'key', key_id: alice.keyId },
      ...noLimits,
    },
  ]);
  expect(JSON.stringify(listed.body)).not.toMatch(/\$2[aby]\$/);

  // A key without account_write cannot manage keys.
  const forbidden = await call('POST', '/v1/account/keys', created.body.key, { name: 'x' });
  expect(forbidden.status).toBe(403);
  expect(forbidden.body.error.code).toBe('insufficient_permissions');

  expect(await call('DELETE', `/v1/account/keys/${created.body.key_id}`, alice.key)).toEqual({
    status: 200,
    body: { key_id: created.body.key_id, status: 'revoked' },
  });
  const revoked = await call('GET', '/v1/account', created.body.key);
  expect(revoked.status).toBe(401);
  expect(revoked.body.error.code).toBe('invalid_api_key');
  expect((await call('GET', '/v1/account/keys', alice.key)).body.data[1].status).toBe('revoked');
});

test('a customer key may not give itself the admin scope', async () => {
  const answer = await call('POST', '/v1/account/keys', alice.key, { name: 'sneaky', scopes: ['admin'] });
  expect(answer.status).toBe(400);
  expect(answer.body.error).toMatchObject({ param: 'scopes[0]', code: 'invalid_value' });
});

test('a customer key never reaches another account', async () => {
  // Bob's key id is public (it is the prefix); revoking it with Alice's key is "no such key".
  const other = await call('DELETE', `/v1/account/keys/${bob.keyId}`, alice.key);
  expect(other.status).toBe(404);
  expect(other.body.error.code).toBe('api_key_not_found');
  expect((await call('GET', '/v1/account', bob.key)).status).toBe(200);
  expect((await call('GET', '/v1/account', alice.key)).body.account_id).toBe(alice.accountId);

  for (const path of [`/admin/accounts/${bob.accountId}`, `/admin/accounts/${bob.accountId}/keys`]) {
    const answer = await call('GET', path, alice.key);
    expect(answer.status).toBe(403);
  }
  expect((await call('DELETE', `/admin/keys/${bob.keyId}`, alice.key)).status).toBe(403);
  // The admin key is not an account key.
  expect((await call('GET', '/v1/account', tg.adminKey)).status).toBe(403);
});

test('recent requests: metadata of a real chat request, newest first, never its content', async () => {
  const client = new OpenAI({ baseURL: `${tg.url}/v1`, apiKey: alice.key, maxRetries: 0 });
  await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `Say ${MARKER}` }], max_tokens: 20 });
  await client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }).catch(() => undefined);

  const requests = await call('GET', '/v1/account/requests?limit=10', alice.key);
  expect(requests.status).toBe(200);
  expect(requests.body.data).toHaveLength(1);
  // 11 input tokens at USD 2 per million + 7 output tokens at USD 3 per million = 43 micro-USD
  expect(requests.body.data[0]).toMatchObject({
    status: 'settled',
    key_id: alice.keyId,
    model: MODEL,
    operation: 'chat',
    outcome: 'completed',
    cost_usd: '0.000043',
    usage: { input_tokens: String(mockChatUsage.prompt_tokens), output_tokens: String(mockChatUsage.completion_tokens), estimated: false },
    http_status: 200,
    stream: false,
    upstream: expect.any(String),
    latency_ms: expect.any(Number),
  });
  expect(JSON.stringify(requests.body)).not.toContain(MARKER);

  const account = await call('GET', '/v1/account', alice.key);
  expect(account.body).toMatchObject({ balance_usd: '21.499957', reserved_usd: '0.000000' });

  // Bob sees none of Alice's requests.
  expect((await call('GET', '/v1/account/requests', bob.key)).body.data).toEqual([]);

  const bad = await call('GET', '/v1/account/requests?limit=0', alice.key);
  expect(bad.status).toBe(400);
  expect(bad.body.error.param).toBe('limit');
});
