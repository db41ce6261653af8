import { accountStreamId, type AccountCommand } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { mountFinanceRoutes } from '../../../adapters/http/routes/finance';
import { systemMetadata } from '../../../src/command-metadata';
import { standardRoutes } from '../../../src/routes';
import { startTestGateway, type TestGateway } from '../../support/gateway';

const PRICE = { version: 1, inputPerMillion: usd('2'), outputPerMillion: usd('6') };

describe('finance over HTTP', () => {
  let gw: TestGateway;
  const keys: Record<string, string> = {};
  let betweenTopUps = '';

  async function run(accountId: string, command: Omit<AccountCommand, 'metadata'>) {
    const handled = await gw.gateway.ledger.accounts.handle(accountStreamId(accountId), { ...command, metadata: systemMetadata('test') } as AccountCommand);
    if (!handled.ok) throw new Error(handled.error.error);
  }

  async function get(path: string, key: string, accept = 'application/json') {
    const response = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key}`, accept } });
    const text = await response.text();
    return { status: response.status, type: response.headers.get('content-type') ?? '', text, body: accept === 'application/json' ? JSON.parse(text) : null };
  }

  beforeAll(async () => {
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
      routes: [...standardRoutes, mountFinanceRoutes],
    });
    for (const accountId of ['alice', 'bob']) {
      await run(accountId, { type: 'OpenAccount', data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' } });
      await run(accountId, { type: 'CompleteTopUp', data: { paymentReference: `${accountId}-pay1`, amount: usd('20') } });
      const issued = await gw.gateway.keys.issue({ accountId, name: 'reader', scopes: ['account_read'], metadata: systemMetadata('test') });
      if (!issued.ok) throw new Error('key not issued');
      keys[accountId] = issued.key.secret;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    betweenTopUps = new Date().toISOString();
    await new Promise((resolve) => setTimeout(resolve, 20));
    await run('bob', { type: 'CompleteTopUp', data: { paymentReference: 'bob-pay2', amount: usd('15') } });
    await run('alice', {
      type: 'PlaceReservation',
      data: { requestId: 'alice-r1', keyId: 'alice-key', model: 'm', operation: 'chat', amount: usd('0.5'), priceVersion: 1 },
    });
    await run('alice', {
      type: 'SettleReservation',
      data: {
        requestId: 'alice-r1',
        usage: { inputTokens: 1000n, outputTokens: 500n, estimated: false },
        price: PRICE,
        outcome: 'completed',
      },
    });
    // Its metadata, latency included, goes to the request log, as the settle path writes it.
    await gw.gateway.ledger.requestLog.record(
      {
        requestId: 'alice-r1',
        accountId: 'alice',
        keyId: 'alice-key',
        model: 'm',
        operation: 'chat',
        ended: 'settled',
        outcome: 'completed',
        usage: { inputTokens: 1000n, outputTokens: 500n, estimated: false },
        upstream: 'u',
        httpStatus: 200,
        stream: false,
        latencyMs: 120,
        timeToFirstTokenMs: null,
      },
      systemMetadata('test'),
    );
    await run('bob', {
      type: 'PlaceReservation',
      data: { requestId: 'bob-r1', keyId: 'bob-key', model: 'm', operation: 'chat', amount: usd('0.5'), priceVersion: 1 },
    });
    await run('bob', { type: 'ReleaseReservation', data: { requestId: 'bob-r1', reason: 'gateway_error' } });
  });
  afterAll(() => gw.stop());

  test("a customer key sees only its own account's usage and transactions, never another's", async () => {
    const usage = await get('/v1/usage', keys['alice']!);
    expect(usage.status).toBe(200);
    // Read-your-writes: the settlement just written is already counted.
    expect(usage.body.data).toEqual([
      {
        day: expect.any(String),
        key_id: 'alice-key',
        model: 'm',
        operation: 'chat',
        requests: 1,
        input_tokens: 1000,
        output_tokens: 500,
        audio_seconds: 0,
        input_characters: 0,
        cost: '0.005000',
        errors: 0,
        average_latency_ms: 120,
      },
    ]);
    const bobUsage = await get('/v1/usage', keys['bob']!);
    expect(bobUsage.body.data).toEqual([expect.objectContaining({ key_id: 'bob-key', requests: 1, errors: 1, cost: '0.000000' })]);

    const transactions = await get('/v1/account/transactions', keys['alice']!);
    expect(transactions.status).toBe(200);
    expect(transactions.body).toMatchObject({ account_id: 'alice', closing_balance: '19.995000' });
    expect(transactions.body.data.map((l: { reference: string; amount: string }) => `${l.reference} ${l.amount}`)).toEqual([
      'alice-pay1 20.000000',
      'alice-r1 -0.005000',
    ]);
    expect(transactions.text).not.toContain('bob');
    // No parameter names another account: the path and query cannot reach it.
    expect((await get('/v1/account/transactions?account_id=bob', keys['alice']!)).text).not.toContain('bob');
    expect((await get('/admin/accounts/bob/statement', keys['alice']!)).status).toBe(403);
    expect((await get('/admin/accounts/bob/balance', keys['alice']!)).status).toBe(403);
  });

  test('admin: the statement as CSV or JSON by Accept, with the running balance, and the balance as of a past instant', async () => {
    const csv = await get('/admin/accounts/bob/statement', gw.adminKey, 'text/csv');
    expect(csv.status).toBe(200);
    expect(csv.type).toContain('text/csv');
    const rows = csv.text
      .trim()
      .split('\r\n')
      .map((l) => l.split(','));
    expect(rows[0]).toEqual(['occurred_at', 'event_id', 'event_type', 'reference', 'purchased_change_usd', 'promo_change_usd', 'amount_usd', 'balance_usd']);
    expect(rows.slice(1).map((r) => [r[2], r[3], r[6], r[7]])).toEqual([
      ['TopUpCompleted', 'bob-pay1', '20.000000', '20.000000'],
      ['TopUpCompleted', 'bob-pay2', '15.000000', '35.000000'],
    ]);
    const later = await get(`/admin/accounts/bob/statement?from=${encodeURIComponent(betweenTopUps)}`, gw.adminKey);
    expect(later.body).toMatchObject({
      opening_balance: '20.000000',
      closing_balance: '35.000000',
      data: [expect.objectContaining({ reference: 'bob-pay2' })],
    });

    const past = await get(`/admin/accounts/bob/balance?as_of=${encodeURIComponent(betweenTopUps)}`, gw.adminKey);
    expect(past.body).toMatchObject({ account_id: 'bob', purchased: '20.000000', balance: '20.000000', available: '20.000000', negative: false });
    const now = await get('/admin/accounts/bob/balance', gw.adminKey);
    expect(now.body).toMatchObject({ purchased: '35.000000', reserved: '0.000000' });
    expect((await get('/admin/accounts/nobody/balance', gw.adminKey)).status).toBe(404);
    expect((await get('/admin/accounts/bob/balance?as_of=yesterday', gw.adminKey)).body.error).toMatchObject({ param: 'as_of', code: 'invalid_value' });
  });
});
