import fc from 'fast-check';
import { Pool } from 'pg';
import { DashboardClient } from '../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../support/gateway';

/**
 * Hostile input at the admin-user routes and the finance and compliance reads over HTTP (issue 14):
 * fast-check (fixed seed) sends bodies of the wrong shape, unknown roles, malformed emails, weak
 * passwords, odd path ids and query values, with the bootstrap admin key, a forged session
 * cookie or nothing. Each must be refused with a 4xx in OpenAI's error shape and change nothing:
 * no event in the log (a report run is an event, so a refused read records none), the same admin
 * roles. The gateway serves normally afterwards.
 */

const SEED = Number(process.env.TOLLGATE_HOSTILE_SEED ?? 20261202);
const RUNS = 300;
const PASSWORD = 'amber lantern over the quay';
const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];

let tg: TestGateway;
let pool: Pool;
let operatorId: string;

beforeAll(async () => {
  tg = await startTestGateway({ models: MODELS, env: { TOLLGATE_BCRYPT_COST: '4', LOG_LEVEL: 'warn' } });
  pool = new Pool({ connectionString: tg.databaseUrl, max: 2 });
  const added = await bootstrap('POST', '/admin/admin-users', { email: 'op@ops.example.test', role: 'operator', password: PASSWORD });
  expect(added.status).toBe(201);
  operatorId = added.body.user_id;
}, 90_000);

afterAll(async () => {
  await pool?.end();
  await tg?.stop();
});

function bootstrap(method: string, path: string, body?: unknown, headers?: Record<string, string>) {
  return new DashboardClient(tg.url).call(method, path, body, headers ?? { authorization: `Bearer ${tg.adminKey}` });
}

const anyJson = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
const badRole = fc.oneof(
  fc.string({ maxLength: 12 }).filter((r) => !['operator', 'finance', 'compliance'].includes(r)),
  fc.constantFrom('Operator', 'admin', 'owner', ' finance', 'compliance ', 'root'),
  anyJson.filter((v) => typeof v !== 'string'),
);
const badEmail = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(s.trim())),
  fc.constantFrom('a@', '@b.test', 'a@b', 'a b@c.test', 'a@@b.test', `${'x'.repeat(300)}@example.test`),
);
const weakPassword = fc.oneof(fc.string({ maxLength: 11 }), fc.constantFrom('password1234', 'qwertyuiop123', 'aaaaaaaaaaaaaaaa'));
/** never a real id: letters, punctuation and traversal, or a well-formed id nobody holds */
const oddId = fc.oneof(
  fc.string({ minLength: 1, maxLength: 40 }),
  fc.stringMatching(/^usr_[a-f0-9]{16}$/),
  fc.stringMatching(/^acct_[a-f0-9]{16}$/),
  fc.constantFrom('..', '../admin', "' OR 1=1 --", '%00', 'x'.repeat(300)),
);
/** query values no period, grace or purpose schema can take: letters only (no date or number in them), or known-bad forms */
const oddQuery = fc.oneof(fc.stringMatching(/^[a-zA-Z]{1,12}$/), fc.constantFrom('2026-13-45', '-1', 'NaN', "' OR 1=1 --", '1e999', '2026-02-30T25:61:00Z'));

interface Hostile {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  /** 'key': the bootstrap admin key; 'forged': a made-up session cookie; 'none': nothing */
  readonly as: 'key' | 'forged' | 'none';
}

const withKey: fc.Arbitrary<Hostile> = fc.oneof(
  fc
    .oneof(
      badEmail.map((email) => ({ email, role: 'finance', password: PASSWORD })),
      badRole.map((role) => ({ email: 'new@ops.example.test', role, password: PASSWORD })),
      weakPassword.map((password) => ({ email: 'new@ops.example.test', role: 'finance', password })),
      anyJson,
    )
    .map((body) => ({ method: 'POST', path: '/admin/admin-users', body, as: 'key' as const })),
  fc
    .tuple(
      fc.oneof(oddId, fc.constant('')),
      fc.oneof(
        badRole.map((role) => ({ role })),
        anyJson,
      ),
    )
    .map(([id, body]) => ({ method: 'PATCH', path: `/admin/admin-users/${encodeURIComponent(id || 'x')}`, body, as: 'key' as const })),
  fc
    .tuple(oddId, fc.constantFrom('operator', 'finance', 'compliance'))
    .map(([id, role]) => ({ method: 'PATCH', path: `/admin/admin-users/${encodeURIComponent(id)}`, body: { role }, as: 'key' as const })),
  oddId.map((id) => ({ method: 'DELETE', path: `/admin/admin-users/${encodeURIComponent(id)}`, as: 'key' as const })),
  fc
    .record({ from: oddQuery, to: oddQuery }, { requiredKeys: [] })
    .filter((q) => Object.keys(q).length > 0)
    .map((q) => ({ method: 'GET', path: `/admin/finance/journal?${new URLSearchParams(q)}`, as: 'key' as const })),
  oddQuery.map((g) => ({ method: 'GET', path: `/admin/finance/verification?grace_seconds=${encodeURIComponent(g)}`, as: 'key' as const })),
  fc.tuple(oddId, fc.option(fc.string({ maxLength: 20 }), { nil: undefined })).map(([id, purpose]) => ({
    method: 'GET',
    path: `/admin/compliance/exports/${encodeURIComponent(id)}${purpose === undefined ? '' : `?purpose=${encodeURIComponent(purpose)}`}`,
    as: 'key' as const,
  })),
);

const withoutKey: fc.Arbitrary<Hostile> = fc
  .tuple(
    fc.constantFrom(
      ['GET', '/admin/admin-users'],
      ['POST', '/admin/admin-users'],
      ['PATCH', '/admin/admin-users/usr_0123456789abcdef'],
      ['DELETE', '/admin/admin-users/usr_0123456789abcdef'],
      ['GET', '/admin/finance/journal'],
      ['GET', '/admin/finance/verification'],
      ['GET', '/admin/compliance/exports/acct_0123456789abcdef?purpose=audit'],
    ),
    fc.constantFrom('forged' as const, 'none' as const),
    fc.option(anyJson, { nil: undefined }),
  )
  .map(([[method, path], as, body]) => ({ method: method!, path: path!, as, ...(body !== undefined && method !== 'GET' && { body }) }));

async function eventCount(): Promise<number> {
  return Number((await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM events')).rows[0]!.n);
}

test('every hostile admin-user, finance or compliance request is refused in OpenAI shape and changes nothing', async () => {
  const rolesBefore = (await bootstrap('GET', '/admin/admin-users')).body.data;
  expect(rolesBefore).toEqual([expect.objectContaining({ user_id: operatorId, role: 'operator' })]);
  const statuses: Record<number, number> = {};
  await fc.assert(
    fc.asyncProperty(fc.oneof(withKey, withoutKey), async (h) => {
      const before = await eventCount();
      const headers: Record<string, string> =
        h.as === 'key' ? { authorization: `Bearer ${tg.adminKey}` } : h.as === 'forged' ? { cookie: `tollgate_session=tgs_${'A'.repeat(43)}` } : {};
      const answer = await bootstrap(h.method, h.path, h.body, headers);
      statuses[answer.status] = (statuses[answer.status] ?? 0) + 1;
      expect(answer.status).toBeGreaterThanOrEqual(400);
      expect(answer.status).toBeLessThan(500);
      expect(answer.body).toEqual({ error: expect.objectContaining({ message: expect.any(String), type: expect.any(String) }) });
      expect(await eventCount()).toBe(before);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  console.log(`admin-users hostile input: statuses ${JSON.stringify(statuses)}`);
  expect((await bootstrap('GET', '/admin/admin-users')).body.data).toEqual(rolesBefore);
  // Still serving: a real read answers, and is recorded as the report run it is.
  const before = await eventCount();
  const verification = await bootstrap('GET', '/admin/finance/verification');
  expect(verification.status).toBe(200);
  expect(verification.body.ok).toBe(true);
  expect(await eventCount()).toBe(before + 1);
}, 240_000);
