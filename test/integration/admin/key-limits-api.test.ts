import { startTestGateway, type TestGateway } from '../../support/gateway';
import { startMockLlm, type MockLlm } from '../../support/mock-llm';
import { apiClient, inOneHour } from './http';

/**
 * The key-limit routes: who may set what, what a listed key shows (creator, limits, spend), and
 * bad input refused with a message that names the problem, changing nothing.
 */

const MODEL = 'llama-limits-test';
let upstream: MockLlm;
let tg: TestGateway;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, tg.adminKey, body);
let accountId: string;
let ownerKey: string;
let ownerKeyId: string;

beforeAll(async () => {
  upstream = await startMockLlm();
  tg = await startTestGateway({ models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] }] });
  call = apiClient(tg.url);
  expect((await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 })).status).toBe(201);
  expect((await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '2', output_usd_per_million: '3' })).status).toBe(201);
  const created = await admin('POST', '/admin/accounts', { display_name: 'Limits', email: 'limits@example.org' });
  accountId = created.body.account_id;
  const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'owner' });
  ownerKey = key.body.key;
  ownerKeyId = key.body.key_id;
}, 60_000);

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

test('a key records its creator; limits given at issue are listed with the spend of the window', async () => {
  const issued = await call('POST', '/v1/account/keys', ownerKey, {
    name: 'ci',
    scopes: ['inference'],
    spend_limit: { period: 'month', amount_usd: '25.50' },
    allowed_models: [MODEL],
  });
  expect(issued.status).toBe(201);
  expect(issued.body).toMatchObject({
    created_by: { kind: 'key', key_id: ownerKeyId },
    spend_limit: { period: 'month', amount_usd: '25.500000', spent_usd: '0.000000', held_usd: '0.000000', remaining_usd: '25.500000' },
    expires_at: null,
    expired: false,
    allowed_models: [MODEL],
  });
  expect(issued.body.spend_limit.resets_at).toMatch(/^\d{4}-\d{2}-01T00:00:00\.000Z$/);
  const listed = await call('GET', '/v1/account/keys', ownerKey);
  const owner = listed.body.data.find((k: { key_id: string }) => k.key_id === ownerKeyId);
  expect(owner).toMatchObject({ created_by: { kind: 'operator' }, spend_limit: null, allowed_models: null, expires_at: null });
  const { key: _secret, ...shown } = issued.body;
  expect(listed.body.data.find((k: { key_id: string }) => k.key_id === issued.body.key_id)).toEqual(shown);
});

test('set, change and clear: an absent field stays, null clears; the admin route does the same', async () => {
  const target = (await call('POST', '/v1/account/keys', ownerKey, { name: 'target', scopes: ['inference'] })).body.key_id as string;
  const expiry = inOneHour();
  const set = await call('PATCH', `/v1/account/keys/${target}/limits`, ownerKey, { spend_limit: { period: 'day', amount_usd: '3' }, expires_at: expiry });
  expect(set.status).toBe(200);
  expect(set.body).toMatchObject({ spend_limit: { period: 'day', amount_usd: '3.000000' }, expires_at: expiry, allowed_models: null });
  const changed = await admin('PATCH', `/admin/keys/${target}/limits`, { allowed_models: [MODEL], spend_limit: null });
  expect(changed.status).toBe(200);
  expect(changed.body).toMatchObject({ spend_limit: null, expires_at: expiry, allowed_models: [MODEL] });
  const cleared = await call('PATCH', `/v1/account/keys/${target}/limits`, ownerKey, { expires_at: null, allowed_models: null });
  expect(cleared.body).toMatchObject({ spend_limit: null, expires_at: null, allowed_models: null });
  // The audit log names who changed what.
  const audit = await admin('GET', `/admin/audit?target=${target}`);
  expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual(expect.arrayContaining(['api_key.limits_set']));
});

test('a key with limits cannot lift its own; an unlimited key may limit itself', async () => {
  const self = await call('POST', '/v1/account/keys', ownerKey, { name: 'self', scopes: ['inference', 'account_read', 'account_write'] });
  const selfKey = self.body.key as string;
  const selfId = self.body.key_id as string;
  expect((await call('PATCH', `/v1/account/keys/${selfId}/limits`, selfKey, { spend_limit: { period: 'day', amount_usd: '1.00' } })).status).toBe(200);
  const lift = await call('PATCH', `/v1/account/keys/${selfId}/limits`, selfKey, { spend_limit: null });
  expect(lift.status).toBe(403);
  expect(lift.body.error.code).toBe('cannot_change_own_limits');
  // Another key of the account (or an operator) can.
  expect((await call('PATCH', `/v1/account/keys/${selfId}/limits`, ownerKey, { spend_limit: null })).status).toBe(200);
});

test("another account's key and operators' keys are not found", async () => {
  const other = await admin('POST', '/admin/accounts', { display_name: 'Other', email: 'other@example.org' });
  const otherKey = (await admin('POST', `/admin/accounts/${other.body.account_id}/keys`, { name: 'k' })).body.key_id as string;
  expect((await call('PATCH', `/v1/account/keys/${otherKey}/limits`, ownerKey, { expires_at: null })).status).toBe(404);
  expect((await admin('PATCH', '/admin/keys/admin/limits', { expires_at: null })).status).toBe(404);
  expect((await admin('PATCH', '/admin/keys/nosuchkey/limits', { expires_at: null })).status).toBe(404);
});

describe('bad input is a 400 that says what is wrong, and changes nothing', () => {
  let target: string;
  beforeAll(async () => {
    target = (await call('POST', '/v1/account/keys', ownerKey, { name: 'bad-input', scopes: ['inference'] })).body.key_id;
    expect((await call('PATCH', `/v1/account/keys/${target}/limits`, ownerKey, { spend_limit: { period: 'day', amount_usd: '7.00' } })).status).toBe(200);
  });
  const cases: [string, unknown, string | null, RegExp][] = [
    ['a negative limit', { spend_limit: { period: 'day', amount_usd: '-5.00' } }, 'spend_limit.amount_usd', /must not be negative/],
    ['a limit not in whole cents', { spend_limit: { period: 'day', amount_usd: '5.005' } }, 'spend_limit.amount_usd', /whole cents/],
    ['a limit as a number', { spend_limit: { period: 'day', amount_usd: 5 } }, 'spend_limit.amount_usd', /decimal string/],
    ['an unknown period', { spend_limit: { period: 'week', amount_usd: '5.00' } }, 'spend_limit.period', /Invalid value/],
    ['an expiry in the past', { expires_at: '2020-01-01T00:00:00Z' }, 'expires_at', /must be in the future/],
    ['an expiry that is not an instant', { expires_at: 'next week' }, 'expires_at', /ISO-8601/],
    ['an unknown model in the allowlist', { allowed_models: [MODEL, 'no-such-model'] }, 'allowed_models[1]', /no such model in the price book/],
    ['an empty allowlist', { allowed_models: [] }, 'allowed_models', /at least one model/],
    ['a model twice', { allowed_models: [MODEL, MODEL] }, 'allowed_models', /each model at most once/],
    ['an unknown field', { spend_limit: null, daily: '5' }, null, /Unrecognized parameter/],
    ['nothing to change', {}, null, /at least one of spend_limit, expires_at, allowed_models/],
  ];
  test.each(cases)('%s', async (_name, body, param, message) => {
    const before = (await call('GET', '/v1/account/keys', ownerKey)).body.data.find((k: { key_id: string }) => k.key_id === target);
    const answer = await call('PATCH', `/v1/account/keys/${target}/limits`, ownerKey, body);
    expect(answer.status).toBe(400);
    expect(answer.body.error.type).toBe('invalid_request_error');
    expect(answer.body.error.param).toBe(param);
    expect(answer.body.error.message).toMatch(message);
    const after = (await call('GET', '/v1/account/keys', ownerKey)).body.data.find((k: { key_id: string }) => k.key_id === target);
    expect(after).toEqual(before);
  });
});
