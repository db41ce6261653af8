import crypto from 'node:crypto';
import { request, type IncomingHttpHeaders } from 'node:http';
import bcrypt from 'bcrypt';
import { startPaymentsHarness, WEBHOOK_SECRET, type PaymentsHarness } from '../integration/payments/harness';
import { manualClock } from '../support/clock';

/**
 * Security: one account's key reads nothing of another's on any route; admin routes refuse
 * customer keys; revoked and malformed keys are refused; repeated authentication failures from
 * one client are rate-limited; forged webhooks change nothing; no secret reaches the logs.
 */

let h: PaymentsHarness;
// The admission limiters' clock: it stands still unless a test moves it (see the rate-limit test).
const clock = manualClock();
let a: { accountId: string; key: string; keyId: string };
let b: { accountId: string; key: string; keyId: string };
const MARKER = 'PROMPT-MARKER-security-51c2';

beforeAll(async () => {
  h = await startPaymentsHarness({ admissionClock: clock.now });
  a = await h.openCustomer('Ada');
  b = await h.openCustomer('Bea');
  // Some history on B: a top-up (through Checkout and the webhook) and a request.
  const { session } = await h.checkout(b, '20');
  expect((await h.deliver(h.stripeServer.event('checkout.session.completed', session))).status).toBe(200);
  await h.call('POST', '/v1/chat/completions', b.key, { model: 'payments-test-model', messages: [{ role: 'user', content: MARKER }] });
}, 30_000);

afterAll(async () => {
  await h?.stop();
});

const customerReads = [
  '/v1/account',
  '/v1/account/keys',
  '/v1/account/requests',
  '/v1/usage',
  '/v1/account/transactions',
  '/v1/billing/auto-top-up',
  '/v1/billing/alerts',
  '/v1/billing/alerts/notices',
  '/v1/models',
];

test("a key of account A reads nothing of account B on any customer route, even when B's ids are put in the query", async () => {
  const bIds = [b.accountId, b.keyId, 'Bea', 'bea@example.org'];
  for (const path of customerReads) {
    for (const query of ['', `?account_id=${b.accountId}`, `?account=${b.accountId}&key_id=${b.keyId}`]) {
      const answer = await h.call('GET', path + query, a.key);
      expect({ path, status: answer.status < 500 }).toEqual({ path, status: true });
      const text = JSON.stringify(answer.body);
      for (const id of bIds) expect({ path: path + query, leaks: text.includes(id) }).toEqual({ path: path + query, leaks: false });
    }
  }
  // B's own view does show B's data, so the check above could have failed.
  expect(JSON.stringify((await h.call('GET', '/v1/account/keys', b.key)).body)).toContain(b.keyId);
  expect(JSON.stringify((await h.call('GET', '/v1/account/transactions', b.key)).body)).toContain('20');

  // A cannot revoke B's key: answered as a key that does not exist, and B's key still works.
  const revoke = await h.call('DELETE', `/v1/account/keys/${b.keyId}`, a.key);
  expect(revoke.status).toBe(404);
  expect((await h.call('GET', '/v1/account', b.key)).status).toBe(200);
});

const adminRoutes: [string, string, unknown?][] = [
  ['POST', '/admin/accounts', { display_name: 'Eve', email: 'eve@example.org' }],
  ['GET', '/admin/accounts/B'],
  ['POST', '/admin/accounts/B/top-ups', { amount_usd: '100', reference: 'x', reason: 'x' }],
  ['POST', '/admin/accounts/B/promo-grants', { amount_usd: '100', expires_at: '2030-01-01T00:00:00Z', reason: 'x' }],
  ['POST', '/admin/accounts/B/suspend', { reason: 'x' }],
  ['POST', '/admin/accounts/B/reinstate', {}],
  ['GET', '/admin/accounts/B/keys'],
  ['POST', '/admin/accounts/B/keys', { name: 'stolen' }],
  ['DELETE', '/admin/keys/BKEY', { reason: 'x' }],
  ['GET', '/admin/models'],
  ['POST', '/admin/models', { model_id: 'evil', operations: ['chat'], max_output_tokens: 10 }],
  ['DELETE', '/admin/models/payments-test-model'],
  ['POST', '/admin/prices', { model_id: 'payments-test-model', operation: 'chat', input_usd: '0', output_usd: '0' }],
  ['GET', '/admin/audit'],
  ['GET', '/admin/accounts/B/statement'],
  ['GET', '/admin/accounts/B/balance'],
  ['POST', '/admin/accounts/B/refunds', { reason: 'x' }],
];

test('admin routes refuse customer keys (all customer scopes) with 403 and change nothing', async () => {
  const eventsBefore = (await h.sql<{ n: string }>('SELECT count(*)::text AS n FROM events'))[0]!.n;
  for (const [method, template, body] of adminRoutes) {
    const path = template.replace('BKEY', b.keyId).replace('/B', `/${b.accountId}`);
    const answer = await h.call(method, path, a.key, body);
    expect({ method, path, status: answer.status, type: typeof answer.body?.error?.message }).toEqual({ method, path, status: 403, type: 'string' });
  }
  expect((await h.sql<{ n: string }>('SELECT count(*)::text AS n FROM events'))[0]!.n).toBe(eventsBefore);
  // The same route answers the admin key, so the 403s were about the key.
  expect((await h.call('GET', `/admin/accounts/${b.accountId}`, h.tg.adminKey)).status).toBe(200);
});

test('revoked and malformed keys are refused with 401 on every kind of route', async () => {
  const revoked = await h.call('POST', '/v1/account/keys', a.key, { name: 'to revoke' });
  expect(revoked.status).toBe(201);
  expect((await h.call('GET', '/v1/account', revoked.body.key)).status).toBe(200);
  expect((await h.call('DELETE', `/v1/account/keys/${revoked.body.key_id}`, a.key)).status).toBe(200);
  const malformed = [
    `${a.key}x`,
    a.key.slice(0, -1),
    `${a.key.slice(0, -1)}${a.key.at(-1) === 'A' ? 'B' : 'A'}`, // last character wrong
    `tg_${a.keyId}_${'A'.repeat(43)}`, // right id, wrong secret
    `tg_${'x'.repeat(16)}_${'A'.repeat(43)}`, // unknown id
    h.tg.adminKey.slice(0, -1),
    'x'.repeat(300),
    'tg_',
  ];
  for (const key of [revoked.body.key as string, ...malformed]) {
    for (const [method, path] of [
      ['GET', '/v1/account'],
      ['GET', '/v1/models'],
      ['POST', '/v1/chat/completions'],
      ['GET', '/admin/audit'],
    ] as const) {
      const answer = await h.call(
        method,
        path,
        key,
        method === 'POST' ? { model: 'payments-test-model', messages: [{ role: 'user', content: 'hi' }] } : undefined,
      );
      expect({ key: key.slice(0, 12), path, status: answer.status, code: answer.body?.error?.code }).toEqual({
        key: key.slice(0, 12),
        path,
        status: 401,
        code: 'invalid_api_key',
      });
    }
  }
});

test('a presented key is compared with the verified one in constant time (crypto.timingSafeEqual over SHA-256 digests)', async () => {
  const keys = h.tg.gateway.keys;
  expect(await keys.verify(a.key)).not.toBeNull(); // verified once (bcrypt), now cached
  const compare = jest.spyOn(crypto, 'timingSafeEqual');
  try {
    for (const wrong of [`${a.key.slice(0, -1)}${a.key.at(-1) === 'A' ? 'B' : 'A'}`, `${a.key.slice(0, 20)}${'A'.repeat(a.key.length - 20)}`]) {
      compare.mockClear();
      expect(await keys.verify(wrong)).toBeNull();
      // The secret never meets a short-circuiting ===: fixed-length digests, compared in full.
      expect(compare).toHaveBeenCalledTimes(1);
      const [x, y] = compare.mock.calls[0]! as [Buffer, Buffer];
      expect([x.length, y.length]).toEqual([32, 32]);
    }
  } finally {
    compare.mockRestore();
  }
});

test('a burst of first requests with one new key runs bcrypt once, not once per request', async () => {
  const fresh = await h.openCustomer('Cy');
  const compare = jest.spyOn(bcrypt, 'compare');
  try {
    const verified = await Promise.all(Array.from({ length: 20 }, () => h.tg.gateway.keys.verify(fresh.key)));
    expect(verified.every((key) => key?.accountId === fresh.accountId)).toBe(true);
    expect(compare).toHaveBeenCalledTimes(1);
  } finally {
    compare.mockRestore();
  }
});

test('repeated authentication failures from one client are rate-limited; keys it already proved keep working', async () => {
  // Counted, not timed: a client of its own (another loopback address, so its allowance is
  // whole) and the gateway's admission clock standing still, so nothing refills while the test
  // sends, however slow the machine. The clock moves only when the test moves it, below.
  const allowance = h.tg.gateway.config.TOLLGATE_AUTH_FAILURES_PER_MINUTE;
  const other = fromAddress('127.0.0.2');
  const wrong = (i: number) => `tg_${'y'.repeat(16)}_${String(i).padStart(43, 'B')}`;
  expect((await other('GET', '/v1/account', a.key)).status).toBe(200); // A's key, verified here before the failures
  const answers: number[] = [];
  for (let i = 0; i < allowance + 5; i++) answers.push((await other('GET', '/v1/account', wrong(i))).status);
  // Exactly the allowance of 401s, then refused before the key is even looked at.
  expect(answers).toEqual([...new Array(allowance).fill(401), ...new Array(5).fill(429)]);
  const limited = await other('GET', '/v1/account', `tg_${'z'.repeat(16)}_${'C'.repeat(43)}`);
  expect(limited.status).toBe(429);
  expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
  expect(limited.body).toMatchObject({ error: { code: 'rate_limit_exceeded', type: 'requests', param: null } });
  // Only this client is limited: the same wrong key from the harness's address is still a 401.
  expect((await h.call('GET', '/v1/account', wrong(0))).status).toBe(401);
  // A's key was verified by this process before: it still works from the limited client.
  expect((await other('GET', '/v1/account', a.key)).status).toBe(200);
  // Even the right secret of a key not yet verified here is refused while the client is limited,
  // so guessing gains nothing.
  const fresh = await h.call('POST', '/v1/account/keys', a.key, { name: 'fresh' });
  expect(fresh.status).toBe(201);
  expect((await other('GET', '/v1/account', fresh.body.key)).status).toBe(429);

  // After the wait it advertised, the client may try again: one failure's worth refilled, no more.
  clock.advance(Number(limited.headers['retry-after-ms']));
  expect((await other('GET', '/v1/account', fresh.body.key)).status).toBe(200);
  expect((await other('GET', '/v1/account', wrong(1_000))).status).toBe(401);
  expect((await other('GET', '/v1/account', wrong(1_001))).status).toBe(429);
});

test('forged webhooks change nothing: wrong secret, no signature, garbage, stale timestamp, tampered body', async () => {
  const { session } = await h.checkout(a, '50');
  const event = h.stripeServer.event('checkout.session.completed', session);
  const before = (await h.accountEvents(a.accountId)).length;
  const recordedBefore = (await h.sql<{ n: string }>('SELECT count(*)::text AS n FROM stripe_webhook_events'))[0]!.n;

  const forgeries = [
    await h.deliver(event, { secret: 'whsec_not_the_real_secret_0123456789' }),
    await h.deliver(event, { signature: null }),
    await h.deliver(event, { signature: 't=1,v1=deadbeef' }),
    await h.deliver(event, { timestamp: Math.floor(Date.now() / 1000) - 3_600 }),
  ];
  // A valid signature over one body, sent with another (the amount raised).
  const payload = JSON.stringify(event);
  const signature = h.signer.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
  const tampered = await fetch(`${h.tg.url}/webhooks/stripe`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'stripe-signature': signature },
    body: payload.replace('"amount_total":5000', '"amount_total":500000'),
  });
  expect(forgeries.map((f) => f.status)).toEqual([400, 400, 400, 400]);
  expect(tampered.status).toBe(400);
  for (const f of forgeries) expect(typeof f.body.error.message).toBe('string');

  expect(await h.accountEvents(a.accountId)).toHaveLength(before);
  expect((await h.sql<{ n: string }>('SELECT count(*)::text AS n FROM stripe_webhook_events'))[0]!.n).toBe(recordedBefore);
  // The genuine event still credits (once).
  expect((await h.deliver(event)).status).toBe(200);
  expect((await h.accountEvents(a.accountId)).filter((e) => e.type === 'TopUpCompleted')).toHaveLength(1);
});

test('no secret and no prompt appears in the captured logs', async () => {
  const log = h.tg.logLines.join('\n');
  expect(h.tg.logLines.length).toBeGreaterThan(50);
  // The secret is everything after `tg_<16-character id>_`; it may itself hold '_', so it is not
  // "what follows the last underscore" (which can be one character, found by chance in any log).
  const secretPart = /^tg_[A-Za-z0-9]{16}_([A-Za-z0-9_-]{43})$/.exec(a.key)?.[1];
  expect(secretPart).toHaveLength(43);
  const secrets = {
    'key A': a.key,
    'key B': b.key,
    'admin key': h.tg.adminKey,
    'Stripe secret key': 'sk_test_tollgate_payments',
    'webhook secret': WEBHOOK_SECRET,
    'key A secret part': secretPart!,
    prompt: MARKER,
  };
  const found = Object.entries(secrets)
    .filter(([, secret]) => log.includes(secret))
    .map(([name]) => name);
  expect(found).toEqual([]);
  // The logs do say whose requests they were, by account id and a short key prefix.
  expect(log).toContain(a.accountId);
  expect(log).toMatch(/"keyPrefix":"tg_/);
});

/** Requests sent from another loopback address: to the gateway, a client of its own. */
function fromAddress(localAddress: string) {
  return (method: string, path: string, key: string) =>
    new Promise<{ status: number; headers: IncomingHttpHeaders; body: any }>((resolve, reject) => {
      const req = request(`${h.tg.url}${path}`, { method, localAddress, agent: false, headers: { authorization: `Bearer ${key}` } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (part: string) => (text += part));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : null }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
}
