import fc from 'fast-check';
import { Pool } from 'pg';
import { DashboardClient } from '../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { until } from '../support/wait';

/**
 * Hostile input at every route of users, sessions and members: fast-check (fixed seed) generates bodies
 * of the wrong shape or type, malformed emails, weak passwords, forged and truncated tokens,
 * forged session cookies and odd path ids, sent with a forged cookie, no cookie or a real
 * signed-in one. Each must be refused with a 4xx in OpenAI's error shape (or, for the two routes
 * that never tell whether an address exists, the same 202 as always) and change nothing: no
 * event, no user, no session, no token, no mail. The gateway serves normally afterwards.
 */

const SEED = Number(process.env.TOLLGATE_HOSTILE_SEED ?? 20261201);
const RUNS = 400;
const PASSWORD = 'fuchsia lighthouse keeps watch';

let tg: TestGateway;
let pool: Pool;
let signedIn: DashboardClient;
/** the signed-in user's id: the only owner of their account */
let realUserId: string;

beforeAll(async () => {
  tg = await startTestGateway({
    models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    env: { TOLLGATE_BCRYPT_COST: '4', LOG_LEVEL: 'warn', TOLLGATE_SIGN_IN_FAILURES_PER_EMAIL: '100000', TOLLGATE_SIGN_IN_FAILURES_PER_ADDRESS: '1000000' },
  });
  pool = new Pool({ connectionString: tg.databaseUrl, max: 2 });
  signedIn = new DashboardClient(tg.url);
  expect(
    (await signedIn.post('/dashboard/api/sign-up', { email: 'real@example.test', name: 'Real', password: PASSWORD, organisation: 'Real Ltd' })).status,
  ).toBe(202);
  expect((await signedIn.post('/dashboard/api/sign-in', { email: 'real@example.test', password: PASSWORD })).status).toBe(200);
  realUserId = (await signedIn.get('/dashboard/api/session')).body.user_id;
}, 60_000);

afterAll(async () => {
  await pool?.end();
  await tg?.stop();
});

const anyJson = fc.oneof(
  fc.string({ maxLength: 30 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.string({ maxLength: 5 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 3 }),
);
const notString = anyJson.filter((v) => typeof v !== 'string');
const badEmail = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(s.trim())),
  fc.constantFrom('a@', '@b.test', 'a@b', 'a b@c.test', 'a@@b.test', `${'x'.repeat(300)}@example.test`, 'ünïcödé@exämple', '"a"@b.test', 'a@-b.test'),
);
const weakPassword = fc.oneof(
  fc.string({ maxLength: 11 }),
  fc.constantFrom('password1234', 'qwertyuiop123', 'aaaaaaaaaaaaaaaa', '123456789012', 'letmeinletmein', 'x'.repeat(100)),
);
const token = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.stringMatching(/^[A-Za-z0-9_-]{43}$/),
  fc.constantFrom('', ' ', '../../etc/passwd', "' OR 1=1 --", '%00', 'x'.repeat(500)),
);
const cookie = fc.oneof(
  fc.stringMatching(/^tgs_[A-Za-z0-9_-]{43}$/),
  fc.string({ maxLength: 60 }).map((s) => `tgs_${s}`),
  fc.constantFrom('', 'tgs_', 'null', 'tgs_' + 'A'.repeat(43)),
);
const extra = fc.dictionary(
  fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !['email', 'name', 'password', 'organisation', 'token', 'code'].includes(k)),
  anyJson,
  { minKeys: 1, maxKeys: 2 },
);
const good = { email: 'new@example.test', name: 'N', password: PASSWORD, organisation: 'O' };

interface Hostile {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
  /** undefined: none; 'real': the signed-in user's; else a forged value */
  readonly cookie?: string;
  /** answers 202 to any well-formed address (it never tells whether one is registered) */
  readonly mayAccept?: boolean;
}

const signUpBodies = fc.oneof(
  badEmail.map((email) => ({ ...good, email })),
  weakPassword.map((password) => ({ ...good, password })),
  notString.map((name) => ({ ...good, name })),
  notString.map((organisation) => ({ ...good, organisation })),
  extra.map((e) => ({ ...good, ...e })),
  anyJson,
  fc.constant({ ...good, name: '   ' }),
);

const hostile: fc.Arbitrary<Hostile> = fc.oneof(
  signUpBodies.map((body) => ({ method: 'POST', path: '/dashboard/api/sign-up', body })),
  fc
    .oneof(
      token.map((t) => ({ token: t })),
      anyJson,
    )
    .map((body) => ({ method: 'POST', path: '/dashboard/api/verify-email', body })),
  fc
    .oneof(
      fc.record({ email: badEmail, password: fc.string({ maxLength: 30 }) }),
      fc.record({ email: fc.constant('real@example.test'), password: fc.string({ maxLength: 30 }).filter((p) => p !== PASSWORD) }),
      anyJson,
    )
    .map((body) => ({ method: 'POST', path: '/dashboard/api/sign-in', body })),
  fc
    .record({ code: fc.oneof(fc.string({ maxLength: 12 }), fc.stringMatching(/^\d{6}$/)) })
    .chain((body) =>
      fc
        .option(cookie, { nil: undefined })
        .map((c) => ({ method: 'POST', path: '/dashboard/api/sign-in/two-factor', body, ...(c !== undefined && { cookie: c }) })),
    ),
  fc
    .oneof(
      badEmail.map((email) => ({ email })),
      anyJson,
    )
    .map((body) => ({ method: 'POST', path: '/dashboard/api/forgot-password', body })),
  fc
    .stringMatching(/^[a-z]{3,10}$/)
    .map((local) => ({ method: 'POST', path: '/dashboard/api/forgot-password', body: { email: `${local}@nobody.test` }, mayAccept: true })),
  fc
    .oneof(fc.record({ token, password: fc.oneof(weakPassword, fc.constant(PASSWORD)) }), anyJson)
    .map((body) => ({ method: 'POST', path: '/dashboard/api/reset-password', body })),
  // Signed-in routes with a forged cookie or none: 401, whatever the body.
  fc
    .tuple(
      fc.constantFrom(
        ['GET', '/dashboard/api/me'],
        ['PATCH', '/dashboard/api/me'],
        ['POST', '/dashboard/api/me/password'],
        ['POST', '/dashboard/api/me/resend-verification'],
        ['GET', '/dashboard/api/me/sessions'],
        ['DELETE', '/dashboard/api/me/sessions/ses_0123456789abcdef'],
        ['POST', '/dashboard/api/me/account'],
        ['POST', '/dashboard/api/me/two-factor'],
        ['POST', '/dashboard/api/me/two-factor/confirm'],
        ['DELETE', '/dashboard/api/me/two-factor'],
      ),
      fc.option(cookie, { nil: undefined }),
      anyJson,
    )
    .map(([[method, path], c, body]) => ({ method: method!, path: path!, body, ...(c !== undefined && { cookie: c }) })),
  // With the real session: bodies of the wrong shape change nothing.
  fc
    .oneof(
      fc
        .oneof(
          notString.map((name) => ({ name })),
          badEmail.map((email) => ({ email })),
          extra,
        )
        .map((body) => ({ method: 'PATCH', path: '/dashboard/api/me', body })),
      fc
        .oneof(
          fc.record({
            current_password: fc.string({ minLength: 1, maxLength: 20 }).filter((p) => p !== PASSWORD),
            new_password: fc.constant('another fine passphrase here'),
          }),
          fc.record({ current_password: fc.constant(PASSWORD), new_password: weakPassword }),
          anyJson,
        )
        .map((body) => ({ method: 'POST', path: '/dashboard/api/me/password', body })),
      fc.string({ maxLength: 40 }).map((id) => ({ method: 'DELETE', path: `/dashboard/api/me/sessions/${encodeURIComponent(id || 'x')}` })),
      fc.oneof(fc.record({ account_id: fc.string({ maxLength: 40 }) }), anyJson).map((body) => ({ method: 'POST', path: '/dashboard/api/me/account', body })),
      fc
        .oneof(fc.record({ code: fc.string({ maxLength: 12 }) }), anyJson)
        .map((body) => ({ method: 'POST', path: '/dashboard/api/me/two-factor/confirm', body })),
      fc.oneof(fc.record({ password: fc.string({ maxLength: 20 }), code: fc.string({ minLength: 1, maxLength: 10 }) }), anyJson).map((body) => ({
        method: 'DELETE',
        path: '/dashboard/api/me/two-factor',
        body,
      })),
    )
    .map((h) => ({ ...h, cookie: 'real' })),
  // Members (issue 14): without a real session, 401 whatever the body.
  fc
    .tuple(
      fc.constantFrom(
        ['GET', '/dashboard/api/members'],
        ['POST', '/dashboard/api/members/invitations'],
        ['DELETE', '/dashboard/api/members/invitations/inv_0123456789abcdef'],
        ['PATCH', '/dashboard/api/members/usr_0123456789abcdef'],
        ['DELETE', '/dashboard/api/members/usr_0123456789abcdef'],
      ),
      fc.option(cookie, { nil: undefined }),
      anyJson,
    )
    .map(([[method, path], c, body]) => ({ method: method!, path: path!, body, ...(c !== undefined && { cookie: c }) })),
  // Accepting with forged, truncated or malformed tokens, and every shape of name and password.
  fc
    .oneof(
      fc.record({ token }),
      fc.record({ token, name: fc.oneof(fc.string({ maxLength: 20 }), fc.constant('Nobody')), password: fc.oneof(weakPassword, fc.constant(PASSWORD)) }),
      fc.record({ token, name: notString }),
      anyJson,
    )
    .map((body) => ({ method: 'POST', path: '/dashboard/api/invitations/accept', body })),
  // With the real session (the account's only owner): bad invitations, odd ids, the last owner.
  fc
    .oneof(
      fc
        .oneof(
          badEmail.map((email) => ({ email, role: 'viewer' })),
          fc.string({ maxLength: 12 }).map((role) => ({ email: 'invitee@example.test', role })),
          notString.map((role) => ({ email: 'invitee@example.test', role })),
          fc
            .dictionary(
              fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !['email', 'role'].includes(k)),
              anyJson,
              { minKeys: 1, maxKeys: 2 },
            )
            .map((e) => ({ email: 'invitee@example.test', role: 'viewer', ...e })),
          anyJson,
        )
        .filter(
          (b) =>
            !(
              b &&
              typeof b === 'object' &&
              ['owner', 'admin', 'developer', 'billing', 'viewer'].includes((b as { role?: unknown }).role as string) &&
              Object.keys(b).length === 2 &&
              typeof (b as { email?: unknown }).email === 'string' &&
              /^[^@\s]+@[^@\s]+\.[a-z]+$/.test((b as { email: string }).email)
            ),
        )
        .map((body) => ({ method: 'POST', path: '/dashboard/api/members/invitations', body })),
      fc
        .tuple(fc.string({ maxLength: 30 }), fc.oneof(fc.constantFrom('owner', 'admin', 'developer', 'billing', 'viewer'), anyJson))
        .map(([id, role]) => ({ method: 'PATCH', path: `/dashboard/api/members/usr_${encodeURIComponent(id)}`, body: { role } })),
      fc
        .oneof(
          fc.constantFrom('admin', 'developer', 'billing', 'viewer').map((role) => ({ role })),
          anyJson,
        )
        .map((body) => ({ method: 'PATCH', path: `/dashboard/api/members/${realUserId}`, body })),
      fc.constant({ method: 'DELETE', path: '/dashboard/api/members/self' }),
      fc.string({ maxLength: 30 }).map((id) => ({ method: 'DELETE', path: `/dashboard/api/members/usr_${encodeURIComponent(id)}` })),
      fc.string({ maxLength: 30 }).map((id) => ({ method: 'DELETE', path: `/dashboard/api/members/invitations/inv_${encodeURIComponent(id)}` })),
    )
    .map((h) => ({ ...h, path: h.path === '/dashboard/api/members/self' ? `/dashboard/api/members/${realUserId}` : h.path, cookie: 'real' })),
);

async function state(): Promise<string> {
  const { rows } = await pool.query<{ s: string }>(
    `SELECT concat_ws('|',
       (SELECT count(*) FROM events WHERE type NOT IN ('RetentionRunCompleted')),
       (SELECT count(*) FROM user_credentials),
       (SELECT string_agg(password_hash || coalesce(totp_secret_ciphertext, '-') || email_lookup, ',' ORDER BY user_id) FROM user_credentials),
       (SELECT count(*) FROM user_sessions WHERE ended_at IS NULL),
       (SELECT string_agg(coalesce(account_id, '-'), ',' ORDER BY public_id) FROM user_sessions),
       (SELECT count(*) FROM identity_tokens),
       (SELECT count(*) FROM identity_tokens WHERE used_at IS NOT NULL),
       (SELECT string_agg(account_id || user_id || role, ',' ORDER BY account_id, user_id) FROM memberships),
       (SELECT count(*) FROM account_invitations),
       (SELECT count(*) FROM mail_outbox)) AS s`,
  );
  return rows[0]!.s;
}

test(`${RUNS} hostile requests to the users, sessions and members routes are refused clearly and change nothing`, async () => {
  // The sign-up's verification email is sent (and EmailSent recorded) before the count starts.
  await until(async () => ((await pool.query(`SELECT 1 FROM events WHERE type = 'EmailSent'`)).rowCount === 1 ? true : undefined), {
    what: 'the verification email sent',
  });
  const before = await state();
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(hostile, async (h) => {
      const client = new DashboardClient(tg.url);
      if (h.cookie === 'real') client.cookie = signedIn.cookie;
      else if (h.cookie !== undefined) client.cookie = `tollgate_session=${h.cookie}`;
      const answer = await client.call(h.method, h.path, h.method === 'GET' ? undefined : h.body);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      if (h.mayAccept && answer.status === 202) {
        expect(answer.body).toEqual({
          object: 'password_reset',
          status: 'check_your_email',
          message: 'If this address has an account, a reset link is on its way.',
        });
        return;
      }
      expect({ h, status: answer.status >= 400 && answer.status < 500 }).toEqual({ h, status: true });
      expect(answer.body).toEqual({
        error: { message: expect.any(String), type: 'invalid_request_error', param: answer.body.error?.param ?? null, code: expect.any(String) },
      });
      expect(answer.body.error.message.length).toBeGreaterThan(5);
      // A hostile answer never sets a session.
      if (h.cookie !== 'real') expect(client.cookie === null || client.cookie === `tollgate_session=${h.cookie}` || client.cookie === undefined).toBe(true);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  process.stdout.write(`identity hostile input: statuses ${JSON.stringify(Object.fromEntries(statuses))}\n`);
  expect(await state()).toBe(before);
  // Still serving: the real user is signed in and can sign in again.
  expect((await signedIn.get('/dashboard/api/me')).status).toBe(200);
  expect((await new DashboardClient(tg.url).post('/dashboard/api/sign-in', { email: 'real@example.test', password: PASSWORD })).status).toBe(200);
}, 600_000);
