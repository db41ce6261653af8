import OpenAI from 'openai';
import { accountStreamId } from '../../../domain/account';
import { apiKeyStreamId } from '../../../domain/api-key';
import { PRICE_BOOK_STREAM_ID } from '../../../domain/price-book';
import { adminMetadata } from '../../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { startMockLlm, type MockLlm } from '../../support/mock-llm';
import { apiClient, inOneHour, type Answer } from './http';

/**
 * The admin API end to end over HTTP on a real gateway (fresh database, mock-llm upstream):
 * every change goes through the deciders and names the acting admin on its events.
 */

const MODEL = 'llama-admin-test';
const EMAIL = 'ada.lovelace.7f3e@example.org';
let upstream: MockLlm;
let tg: TestGateway;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, tg.adminKey, body);

function expectError(answer: Answer, status: number, code: string | null, param: string | null = null): void {
  expect({ status: answer.status, code: answer.body?.error?.code, param: answer.body?.error?.param }).toEqual({ status, code, param });
  expect(typeof answer.body.error.message).toBe('string');
  expect(answer.body.error).toHaveProperty('type');
}

beforeAll(async () => {
  upstream = await startMockLlm();
  tg = await startTestGateway({ models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] }] });
  call = apiClient(tg.url);
});

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

describe('models and prices', () => {
  test('an admin adds a model and prices it; the price shows in force', async () => {
    const added = await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 });
    expect(added.status).toBe(201);
    expect(added.body).toMatchObject({ id: MODEL, operations: ['chat'], max_output_tokens: 256, retired: false, prices: [] });

    const price = await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '0.50', output_usd_per_million: '1.50' });
    expect(price.status).toBe(201);
    expect(price.body).toMatchObject({ model: MODEL, operation: 'chat', input_usd_per_million: '0.500000', output_usd_per_million: '1.500000' });

    const later = inOneHour();
    const scheduled = await admin('POST', '/admin/prices', {
      model: MODEL,
      operation: 'chat',
      input_usd_per_million: '0.60',
      output_usd_per_million: '1.80',
      effective_at: later,
      // an increase an hour ahead is shorter than the 14 days' notice: it takes a reason
      short_notice_reason: 'test of a scheduled price',
    });
    expect(scheduled.status).toBe(201);

    const models = await admin('GET', '/admin/models');
    expect(models.status).toBe(200);
    const model = models.body.data.find((m: { id: string }) => m.id === MODEL);
    expect(model.prices).toEqual([
      expect.objectContaining({ input_usd_per_million: '0.500000', in_force: true }),
      expect.objectContaining({ input_usd_per_million: '0.600000', in_force: false, effective_at: later }),
    ]);
  });

  test('refusals of the price book decider are 409 with its error name; unknown models 404', async () => {
    expectError(await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 }), 409, 'model_already_exists');
    expectError(
      await admin('POST', '/admin/prices', {
        model: MODEL,
        operation: 'chat',
        input_usd_per_million: '1',
        output_usd_per_million: '1',
        effective_at: '2020-01-01T00:00:00Z',
      }),
      409,
      'price_effective_in_past',
    );
    expectError(
      await admin('POST', '/admin/prices', { model: 'nope', operation: 'chat', input_usd_per_million: '1', output_usd_per_million: '1' }),
      404,
      'model_not_found',
      'model',
    );
    expectError(
      await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: 0.5, output_usd_per_million: '1' }),
      400,
      'invalid_type',
      'input_usd_per_million',
    );
    expectError(await admin('POST', '/admin/models', { id: 'x', operations: ['dance'], max_output_tokens: 5 }), 400, 'invalid_value', 'operations[0]');
  });

  test('a retired model is retired once', async () => {
    expect((await admin('POST', '/admin/models', { id: 'old/model-1', operations: ['chat', 'completion'], max_output_tokens: 16 })).status).toBe(201);
    const retired = await admin('DELETE', `/admin/models/${encodeURIComponent('old/model-1')}`);
    expect(retired).toEqual({ status: 200, body: { id: 'old/model-1', retired: true } });
    expectError(await admin('DELETE', `/admin/models/${encodeURIComponent('old/model-1')}`), 409, 'model_retired');
    expectError(await admin('DELETE', '/admin/models/never-added'), 404, 'model_not_found', 'model');
  });
});

describe('an account from opening to suspension', () => {
  let accountId: string;
  let customerKey: string;
  const ask = () =>
    new OpenAI({ baseURL: `${tg.url}/v1`, apiKey: customerKey, maxRetries: 0 }).chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'hello' }],
      max_tokens: 16,
    });

  test('an admin opens an account with promo credit and issues it a key', async () => {
    const created = await admin('POST', '/admin/accounts', {
      display_name: 'Ada Lovelace',
      email: EMAIL,
      promo_credit_usd: '5',
      promo_expires_at: inOneHour(),
    });
    expect(created.status).toBe(201);
    accountId = created.body.account_id;
    expect(accountId).toMatch(/^acct_[0-9a-f]{20}$/);

    const shown = await admin('GET', `/admin/accounts/${accountId}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({
      account_id: accountId,
      status: 'open',
      display_name: 'Ada Lovelace',
      email: EMAIL,
      balance_usd: '5.000000',
      available_usd: '5.000000',
      purchased_usd: '0.000000',
      promo_usd: '5.000000',
      reserved_usd: '0.000000',
      promo_grants: [expect.objectContaining({ granted_usd: '5.000000', remaining_usd: '5.000000', expired: false })],
      open_reservations: [],
    });

    const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'ci' });
    expect(key.status).toBe(201);
    expect(key.body).toMatchObject({ name: 'ci', scopes: ['inference', 'account_read', 'account_write'], status: 'active' });
    expect(key.body.key).toMatch(new RegExp(`^${key.body.prefix}_`));
    customerKey = key.body.key;
  });

  test('a manual top-up is credited once per reference', async () => {
    const body = { amount_usd: '20.50', reference: 'wire-2024-001', reason: 'bank transfer received' };
    const first = await admin('POST', `/admin/accounts/${accountId}/top-ups`, body);
    expect(first.status).toBe(201);
    expect(first.body).toMatchObject({ applied: true, payment_reference: 'manual:wire-2024-001', purchased_usd: '20.500000', balance_usd: '25.500000' });
    const again = await admin('POST', `/admin/accounts/${accountId}/top-ups`, body);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ applied: false, purchased_usd: '20.500000' });
    expectError(await admin('POST', `/admin/accounts/${accountId}/top-ups`, { ...body, reference: 'small', amount_usd: '1' }), 409, 'top_up_below_minimum');
  });

  test('a promo grant adds credit with its expiry', async () => {
    const grant = await admin('POST', `/admin/accounts/${accountId}/promo-grants`, {
      amount_usd: '2.25',
      expires_at: inOneHour(),
      reason: 'conference voucher',
    });
    expect(grant.status).toBe(201);
    expect(grant.body).toMatchObject({ amount_usd: '2.250000', promo_usd: '7.250000' });
    expectError(
      await admin('POST', `/admin/accounts/${accountId}/promo-grants`, { amount_usd: '1', expires_at: '2001-01-01T00:00:00Z', reason: 'x' }),
      409,
      'promo_expiry_not_in_future',
    );
  });

  test('a suspended account is refused inference with 403 account_suspended, and served again once reinstated', async () => {
    await expect(ask()).resolves.toHaveProperty('choices');

    const suspended = await admin('POST', `/admin/accounts/${accountId}/suspend`, { reason: 'payment_dispute' });
    expect(suspended).toEqual({ status: 200, body: { account_id: accountId, status: 'suspended', suspension_reason: 'payment_dispute' } });
    const refusal = await ask().catch((error: unknown) => error);
    expect(refusal).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect(refusal).toMatchObject({ status: 403, code: 'account_suspended' });
    expectError(await admin('POST', `/admin/accounts/${accountId}/suspend`, { reason: 'payment_dispute' }), 409, 'account_already_suspended');
    expectError(await admin('POST', `/admin/accounts/${accountId}/suspend`, { reason: 'because' }), 400, 'invalid_value', 'reason');
    // Reasons are a set: another one adds to it.
    const again = await admin('POST', `/admin/accounts/${accountId}/suspend`, { reason: 'terms_violation' });
    expect(again).toEqual({ status: 200, body: { account_id: accountId, status: 'suspended', suspension_reason: 'terms_violation' } });

    // No dispute is open (the reason was an operator's): reinstatement lifts every reason.
    const reinstated = await admin('POST', `/admin/accounts/${accountId}/reinstate`);
    expect(reinstated.body).toMatchObject({ status: 'open', suspension_reason: null });
    expectError(await admin('POST', `/admin/accounts/${accountId}/reinstate`), 409, 'account_not_suspended');
    await expect(ask()).resolves.toHaveProperty('choices');
  });

  test('a revoked key is refused with 401', async () => {
    const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'temporary', scopes: ['inference'] });
    const keyId = key.body.key_id;
    expect(await admin('DELETE', `/admin/keys/${keyId}`, { reason: 'leaked in a log' })).toEqual({ status: 200, body: { key_id: keyId, status: 'revoked' } });
    expect((await call('GET', '/v1/models', key.body.key)).status).toBe(401);
    expectError(await admin('DELETE', `/admin/keys/${keyId}`), 409, 'api_key_revoked');
    expectError(await admin('DELETE', '/admin/keys/doesnotexist0000'), 404, 'api_key_not_found');
  });

  test('the acting admin is the actor of every event the admin API wrote', async () => {
    const { events } = await tg.gateway.ledger.store.readStream(accountStreamId(accountId));
    const byAdmin = events.filter((e) => !e.type.startsWith('Reservation'));
    expect(byAdmin.map((e) => e.type)).toEqual([
      'AccountOpened',
      'PromoCreditGranted',
      'TopUpCompleted',
      'PromoCreditGranted',
      'AccountSuspended',
      'AccountSuspended',
      'AccountReinstated',
    ]);
    for (const e of byAdmin) expect(e.event.metadata.actor).toEqual({ kind: 'admin', adminId: 'admin' });
    // TopUpCompleted carries no reason of its own: the admin's reason is its correlation.
    expect(byAdmin[2]!.event.metadata.correlationId).toBe('reason: bank transfer received');

    const { events: book } = await tg.gateway.ledger.store.readStream(PRICE_BOOK_STREAM_ID);
    for (const e of book) expect(e.event.metadata.actor).toEqual({ kind: 'admin', adminId: 'admin' });
    const key = await admin('GET', `/admin/accounts/${accountId}/keys`);
    expect(key.body.data).toHaveLength(2);
    const { events: keyEvents } = await tg.gateway.ledger.store.readStream(apiKeyStreamId(key.body.data[1].key_id));
    expect(keyEvents.map((e) => [e.type, e.event.metadata.actor])).toEqual([
      ['ApiKeyIssued', { kind: 'admin', adminId: 'admin' }],
      ['ApiKeyRevoked', { kind: 'admin', adminId: 'admin' }],
    ]);
  });

  test('personal data never reaches the events table in plaintext', async () => {
    const { rows } = await tg.gateway.database.pool.query<{ n: string }>(
      `SELECT count(*) AS n FROM events WHERE data::text ILIKE '%' || $1 || '%' OR metadata::text ILIKE '%' || $1 || '%' OR data::text ILIKE '%lovelace%'`,
      [EMAIL],
    );
    expect(rows[0]!.n).toBe('0');
    expect(tg.logLines.join('\n')).not.toMatch(/lovelace/i);
    expect(tg.logLines.join('\n')).not.toContain(tg.adminKey);
    // Admin requests are logged with the acting key's public prefix.
    expect(tg.logLines.some((line) => line.includes('"keyPrefix":"tg_admin"'))).toBe(true);
  });

  test('the admin view shows corrected personal data, and none once it is erased', async () => {
    const stream = accountStreamId(accountId);
    const vault = tg.gateway.vault;
    const corrected = await tg.gateway.ledger.accounts.handle(stream, {
      type: 'CorrectPersonalData',
      data: { emailCiphertext: await vault.encrypt(accountId, 'ada@new.example.org') },
      metadata: adminMetadata('admin'),
    });
    expect(corrected.ok).toBe(true);
    expect((await admin('GET', `/admin/accounts/${accountId}`)).body).toMatchObject({ display_name: 'Ada Lovelace', email: 'ada@new.example.org' });

    await vault.destroyKey(accountId);
    expect((await admin('GET', `/admin/accounts/${accountId}`)).body).toMatchObject({ display_name: null, email: null, balance_usd: expect.any(String) });
  });

  test('a customer key never reaches the admin API', async () => {
    expectError(await call('GET', `/admin/accounts/${accountId}`, customerKey), 403, 'insufficient_permissions');
    expectError(await call('POST', '/admin/accounts', customerKey, { display_name: 'x', email: 'x@example.org' }), 403, 'insufficient_permissions');
    expectError(await call('GET', '/admin/models', null), 401, 'invalid_api_key');
  });
});

describe('bad input', () => {
  test('is a 400 naming the parameter, and never echoes the value', async () => {
    expectError(await admin('POST', '/admin/accounts', { email: 'a@example.org' }), 400, 'missing_required_parameter', 'display_name');
    const badEmail = await admin('POST', '/admin/accounts', { display_name: 'A', email: 'not-an-email-secret' });
    expectError(badEmail, 400, 'invalid_value', 'email');
    expect(badEmail.body.error.message).not.toContain('not-an-email-secret');
    expectError(
      await admin('POST', '/admin/accounts', { display_name: 'A', email: 'a@example.org', promo_credit_usd: '5' }),
      400,
      'missing_required_parameter',
      'promo_expires_at',
    );
    expectError(
      await admin('POST', '/admin/accounts', { display_name: 'A', email: 'a@example.org', promo_credit_usd: '5.1234567', promo_expires_at: inOneHour() }),
      400,
      'invalid_value',
      'promo_credit_usd',
    );
    expectError(await admin('POST', '/admin/accounts/acct_unknown/top-ups', { amount_usd: '10', reference: 'r1', reason: 'x' }), 404, 'account_not_found');
    expectError(await admin('GET', '/admin/accounts/acct_unknown'), 404, 'account_not_found');
  });
});
