import fc from 'fast-check';
import { apiKeyStreamId } from '../../domain/api-key';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { addModel, issueKey, openAccount } from '../support/e2e-setup';

/**
 * Hostile input at every route that sets key limits (PATCH /v1/account/keys/:id/limits,
 * PATCH /admin/keys/:id/limits, and the limit fields of POST /v1/account/keys and
 * /admin/accounts/:id/keys): generated bodies (fast-check, fixed seed) that are each wrong in
 * at least one way. Every one is answered 4xx in OpenAI's error shape with a message that says
 * what is wrong, and nothing changes: the key's stream keeps its revision, no key is issued.
 */

const SEED = Number(process.env.TOLLGATE_HOSTILE_SEED ?? 20261201);
const RUNS = 250;

let upstream: MockLlm;
let tg: TestGateway;
let accountId: string;
let manager: string;
let targetKeyId: string;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  tg = await startTestGateway({
    models: [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] }],
    env: { LOG_LEVEL: 'warn' },
  });
  await addModel(tg.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 256);
  accountId = await openAccount(tg.gateway.ledger, { topUpUsd: '10' });
  manager = (await issueKey(tg.gateway.keys, accountId, ['account_read', 'account_write'])).secret;
  targetKeyId = (await issueKey(tg.gateway.keys, accountId)).keyId;
}, 60_000);

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

const notNullJson = fc.oneof(
  fc.string(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string(), { maxKeys: 3 }),
);

const badAmount = fc.oneof(
  fc.integer({ min: 1, max: 10_000 }).map((c) => `-${(c / 100).toFixed(2)}`), // negative
  fc.integer({ min: 1, max: 9 }).map((d) => `1.00${d}`), // not whole cents
  fc.integer({ min: 1, max: 99 }).map((d) => `0.${String(d).padStart(2, '0')}01`),
  fc.constantFrom('10000000.01', '99999999999999999999', '1e3', ' 5', '5 ', '+5', '.5', '5.', 'NaN', 'Infinity', '', '١٢', '0x10'),
  notNullJson.filter((v) => typeof v !== 'string'),
);
const badPeriod = fc.oneof(
  fc.string().filter((s) => !['day', 'month', 'total'].includes(s)),
  notNullJson.filter((v) => typeof v !== 'string'),
);
const badSpendLimit = fc.oneof(
  notNullJson.filter((v) => typeof v !== 'object' || Array.isArray(v)),
  fc.record({ period: fc.constantFrom('day', 'month', 'total'), amount_usd: badAmount }),
  fc.record({ period: badPeriod, amount_usd: fc.constant('5.00') }),
  fc.constant({ period: 'day' }),
  fc.constant({ amount_usd: '5.00' }),
  fc.constant({ period: 'day', amount_usd: '5.00', extra: true }),
);
const badExpiry = fc.oneof(
  fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2020-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('tomorrow', '2030-13-01T00:00:00Z', '2030-01-01', '2030-01-01 00:00:00', ''),
  notNullJson.filter((v) => typeof v !== 'string'),
);
const badModels = fc.oneof(
  fc.constant([]),
  fc.array(
    fc.string({ minLength: 1, maxLength: 30 }).filter((s) => s !== 'llama'),
    { minLength: 1, maxLength: 4 },
  ), // unknown models
  fc.constant(['llama', 'llama']),
  fc.constant(Array.from({ length: 101 }, () => 'llama')),
  fc.array(fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), { minLength: 1, maxLength: 3 }),
  notNullJson.filter((v) => !Array.isArray(v)),
);
const goodFields = fc.record(
  {
    spend_limit: fc.constantFrom(null, { period: 'day', amount_usd: '5.00' }),
    expires_at: fc.constantFrom(null, '2999-01-01T00:00:00Z'),
    allowed_models: fc.constantFrom(null, ['llama']),
  },
  { requiredKeys: [] },
);
/** A limits body wrong in at least one field (others may be fine: nothing at all may change). */
const badLimits: fc.Arbitrary<unknown> = fc.oneof(
  fc.tuple(goodFields, badSpendLimit).map(([good, spend_limit]) => ({ ...good, spend_limit })),
  fc.tuple(goodFields, badExpiry).map(([good, expires_at]) => ({ ...good, expires_at })),
  fc.tuple(goodFields, badModels).map(([good, allowed_models]) => ({ ...good, allowed_models })),
  fc
    .tuple(
      goodFields,
      fc.string({ minLength: 1, maxLength: 12 }).filter((k) => !['spend_limit', 'expires_at', 'allowed_models', '__proto__'].includes(k)),
    )
    .map(([good, key]) => ({ ...good, [key]: 1 })),
  fc.constant({}),
  notNullJson.filter((v) => typeof v !== 'object' || Array.isArray(v)),
);

async function send(method: string, path: string, key: string, body: string) {
  const response = await fetch(`${tg.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
  return { status: response.status, body: (await response.json()) as { error?: { message: string; type: string; param: string | null; code: string | null } } };
}

function expectRefusal(answer: Awaited<ReturnType<typeof send>>, statuses: readonly number[] = [400]) {
  expect(statuses).toContain(answer.status);
  const error = answer.body.error!;
  expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(error.type).toBe('invalid_request_error');
  expect(error.param === null || typeof error.param === 'string').toBe(true);
  expect(error.code === null || typeof error.code === 'string').toBe(true);
  expect(error.message.length).toBeGreaterThan(10);
}

async function keyRevision(keyId: string) {
  return (await tg.gateway.ledger.store.readStream(apiKeyStreamId(keyId))).events.length;
}

async function keyCount() {
  return (await tg.gateway.accountDirectory.keyIdsOf(accountId)).length;
}

it('PATCH /v1/account/keys/:id/limits and /admin/keys/:id/limits refuse every hostile body and change nothing', async () => {
  const before = await keyRevision(targetKeyId);
  await fc.assert(
    fc.asyncProperty(badLimits, fc.boolean(), async (body, asAdmin) => {
      const answer = asAdmin
        ? await send('PATCH', `/admin/keys/${targetKeyId}/limits`, tg.adminKey, JSON.stringify(body))
        : await send('PATCH', `/v1/account/keys/${targetKeyId}/limits`, manager, JSON.stringify(body));
      expectRefusal(answer);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  expect(await keyRevision(targetKeyId)).toBe(before);
}, 300_000);

it('issuing a key with hostile limits refuses and issues nothing', async () => {
  const before = await keyCount();
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(
      badLimits.filter((b) => typeof b === 'object' && b !== null && !Array.isArray(b) && Object.keys(b).length > 0),
      fc.boolean(),
      async (limits, asAdmin) => {
        const body = JSON.stringify({ name: 'hostile', ...(limits as object) });
        const answer = asAdmin
          ? await send('POST', `/admin/accounts/${accountId}/keys`, tg.adminKey, body)
          : await send('POST', '/v1/account/keys', manager, body);
        // POST bodies are not strict: one whose only fault is an unknown field is a valid issue
        const unknownFieldOnly = Object.keys(limits as object).some((k) => !['spend_limit', 'expires_at', 'allowed_models'].includes(k));
        if (answer.status === 201 && unknownFieldOnly) {
          accepted++;
          return;
        }
        expectRefusal(answer);
      },
    ),
    { seed: SEED + 1, numRuns: RUNS },
  );
  // Nothing refused left a key behind
  expect(await keyCount()).toBe(before + accepted);
}, 300_000);

it('hostile key ids and raw bodies are answered 4xx in the error shape', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(fc.string({ minLength: 1, maxLength: 300 }), fc.constantFrom('..', '%00', 'admin', 'a'.repeat(129))),
      fc.oneof(fc.constant('{"expires_at": null}'), fc.constant('{'), fc.constant('[]'), fc.constant('"x"'), fc.constant('{"a":'.repeat(100))),
      async (keyId, raw) => {
        const answer = await send('PATCH', `/v1/account/keys/${encodeURIComponent(keyId)}/limits`, manager, raw);
        expect(answer.status).toBeGreaterThanOrEqual(400);
        expect(answer.status).toBeLessThan(500);
        expect(answer.body.error).toBeDefined();
      },
    ),
    { seed: SEED + 2, numRuns: RUNS },
  );
  // the admin key cannot be given limits
  expectRefusal(await send('PATCH', '/admin/keys/admin/limits', tg.adminKey, '{"expires_at": null}'), [404]);
}, 300_000);
