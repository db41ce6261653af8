import { resolve } from 'node:path';
import { repoRoot, runToCompletion } from '../../support/processes';
import * as OTPAuth from 'otpauth';
import { Pool } from 'pg';
import { systemMetadata } from '../../../src/command-metadata';
import { DashboardClient } from '../../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TestSmtpServer, linkTokenIn } from '../../support/smtp';
import { until } from '../../support/wait';
import { runRetention } from '../../../src/compliance/retention';

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'violet kettle drums at noon';
const ENV = {
  TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05',
  TOLLGATE_MAIL_RETRY_BASE_S: '0.05',
  TOLLGATE_BCRYPT_COST: '4',
  TOLLGATE_SIGNUP_PROMO_USD: '2.50',
  TOLLGATE_SIGN_IN_FAILURES_PER_EMAIL: '3',
};

describe('users: sign-up, verification, sign-in, sessions, passwords, profile, two-factor', () => {
  const smtp = new TestSmtpServer();
  let gw: TestGateway;
  let pool: Pool;

  beforeAll(async () => {
    await smtp.start();
    gw = await startTestGateway({ models: MODELS, env: { ...ENV, SMTP_URL: smtp.url, TOLLGATE_PUBLIC_URL: 'https://gw.example.test' } });
    pool = new Pool({ connectionString: gw.databaseUrl, max: 2 });
  });

  afterAll(async () => {
    await pool?.end();
    await gw?.stop();
    await smtp.stop();
  });

  /** Signs up, follows the emailed link, and signs in; returns the signed-in client. */
  async function newUser(address: string, verify = true): Promise<DashboardClient> {
    const client = new DashboardClient(gw.url);
    const before = smtp.to(address).length;
    const signUp = await client.post('/dashboard/api/sign-up', { email: address, name: 'Ada', password: PASSWORD, organisation: 'Analytical Engines' });
    expect(signUp.status).toBe(202);
    const mail = await smtp.waitFor(address, before + 1);
    if (verify) expect((await client.post('/dashboard/api/verify-email', { token: linkTokenIn(mail) })).status).toBe(200);
    expect((await client.post('/dashboard/api/sign-in', { email: address, password: PASSWORD })).status).toBe(200);
    return client;
  }

  const counts = async () =>
    (
      await pool.query<{ n: string }>(
        `SELECT (SELECT count(*) FROM events) + (SELECT count(*) FROM user_credentials) + (SELECT count(*) FROM user_sessions) AS n`,
      )
    ).rows[0]!.n;

  it('sign-up creates the user and an account they own; the verification link works once; keys wait for it; promo credit comes with it', async () => {
    const client = new DashboardClient(gw.url);
    const signUp = await client.post('/dashboard/api/sign-up', {
      email: 'Ada@Example.test',
      name: 'Ada',
      password: PASSWORD,
      organisation: 'Analytical Engines',
    });
    expect(signUp.status).toBe(202);
    const mail = await smtp.waitFor('ada@example.test');
    expect(mail.subject).toBe('Confirm your email address for Tollgate');
    const token = linkTokenIn(mail);
    expect(mail.text).toContain(`https://gw.example.test/dashboard/#/verify?token=${token}`);

    expect((await client.post('/dashboard/api/sign-in', { email: 'ada@example.test', password: PASSWORD })).status).toBe(200);
    const session = (await client.get('/dashboard/api/session')).body;
    expect(session).toMatchObject({ signed_in: true, kind: 'user', member_role: 'owner', email_verified: false });
    // Not verified yet: no key, no credit bought.
    const early = await client.post('/v1/account/keys', { name: 'k' });
    expect(early.status).toBe(403);
    expect(early.body.error.code).toBe('email_not_verified');
    expect((await client.post('/v1/billing/top-ups', { amount_usd: '10.00' })).body.error.code).toBe('email_not_verified');

    expect((await client.post('/dashboard/api/verify-email', { token })).status).toBe(200);
    const reused = await client.post('/dashboard/api/verify-email', { token });
    expect(reused.status).toBe(400);
    expect(reused.body.error).toMatchObject({ code: 'invalid_token', param: 'token' });
    const forged = await client.post('/dashboard/api/verify-email', { token: `${token.slice(0, -2)}xx` });
    expect(forged.body.error.code).toBe('invalid_token');

    const key = await client.post('/v1/account/keys', { name: 'first key' });
    expect(key.status).toBe(201);
    const account = await client.get('/v1/account');
    expect(account.status).toBe(200);
    expect(account.body.account_id).toBe(session.account_id);
    expect(account.body.promo_usd).toBe('2.500000');
    // The events record the user acting, never a credential.
    const { rows } = await pool.query<{ doc: string }>(`SELECT type, data::text || metadata::text AS doc FROM events`);
    const log = rows.map((r) => r.doc).join('\n');
    expect(log).toContain(`"actor": {"kind": "user", "userId": "${session.user_id}"}`);
    for (const secret of [PASSWORD, token, 'ada@example.test']) expect(log).not.toContain(secret);
    expect(gw.logLines.join('\n')).not.toContain(token);
  });

  it('sign-up with a registered address answers the same and changes no account; the owner of the address is told', async () => {
    await newUser('grace@example.test');
    const before = await counts();
    const again = await new DashboardClient(gw.url).post('/dashboard/api/sign-up', {
      email: 'GRACE@example.test',
      name: 'Mallory',
      password: 'another fine long passphrase',
      organisation: 'Evil Corp',
    });
    expect(again.status).toBe(202);
    expect(again.body).toEqual({ object: 'sign_up', status: 'check_your_email', message: 'If this address can be used, a confirmation link is on its way.' });
    const notice = await smtp.waitFor('grace@example.test', 2);
    expect(notice.subject).toBe('Someone tried to sign up to Tollgate with your address');
    // Only the notice's own request event was added: no user, no account.
    const { rows } = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM user_credentials`);
    expect(Number(rows[0]!.n)).toBeGreaterThan(0);
    expect(BigInt(await counts()) - BigInt(before)).toBeLessThanOrEqual(2n);
    expect((await pool.query(`SELECT 1 FROM events WHERE type = 'UserRegistered' AND data::text LIKE '%Evil%'`)).rowCount).toBe(0);
  });

  it('refuses bad sign-up input clearly and changes nothing', async () => {
    const client = new DashboardClient(gw.url);
    // The test before ends once its email reached the SMTP server; the outbox records EmailSent a
    // moment later. Counted before that, the record would land during this test (CI saw 22 -> 23).
    await until(
      async () => {
        const { rows } = await pool.query<{ quiet: boolean }>(
          `SELECT NOT EXISTS (SELECT 1 FROM mail_outbox WHERE status = 'pending')
              AND (SELECT count(*) FROM mail_outbox) = (SELECT count(*) FROM events WHERE type IN ('EmailSent', 'EmailAbandoned')) AS quiet`,
        );
        return rows[0]!.quiet ? true : undefined;
      },
      { what: 'every email of the tests before to be sent and recorded' },
    );
    const before = await counts();
    const cases: [object, string, string][] = [
      [{ email: 'not-an-email', name: 'A', password: PASSWORD, organisation: 'O' }, 'invalid_email', 'email'],
      [{ email: 'a@b.test', name: 'A', password: 'short', organisation: 'O' }, 'weak_password', 'password'],
      [{ email: 'a@b.test', name: 'A', password: 'password1234', organisation: 'O' }, 'weak_password', 'password'],
      [{ email: 'a@b.test', name: 'A', password: 'qwertyuiopasdf', organisation: 'O' }, 'weak_password', 'password'],
      [{ email: 'a@b.test', name: '', password: PASSWORD, organisation: 'O' }, 'invalid_value', 'name'],
      [{ email: 'a@b.test', name: 'A', password: PASSWORD }, 'missing_required_parameter', 'organisation'],
    ];
    for (const [body, code, param] of cases) {
      const answer = await client.post('/dashboard/api/sign-up', body);
      expect({ body, status: answer.status, code: answer.body.error?.code, param: answer.body.error?.param }).toEqual({ body, status: 400, code, param });
      expect(answer.body.error.message.length).toBeGreaterThan(10);
    }
    expect(await counts()).toBe(before);
    // Without the dashboard header: refused (CSRF defence).
    const plain = await fetch(`${gw.url}/dashboard/api/sign-up`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(plain.status).toBe(403);
  });

  it('unknown email and wrong password get the same answer; failures are limited per email', async () => {
    await newUser('limit@example.test');
    const client = new DashboardClient(gw.url);
    const unknown = await client.post('/dashboard/api/sign-in', { email: 'nobody@example.test', password: PASSWORD });
    const wrong = await client.post('/dashboard/api/sign-in', { email: 'limit@example.test', password: 'not the password at all' });
    expect(unknown.status).toBe(401);
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
    await client.post('/dashboard/api/sign-in', { email: 'limit@example.test', password: 'wrong again, twice now' });
    await client.post('/dashboard/api/sign-in', { email: 'limit@example.test', password: 'and a third wrong one' });
    // Past the limit even the right password waits (an attacker cannot tell either).
    const blocked = await client.post('/dashboard/api/sign-in', { email: 'limit@example.test', password: PASSWORD });
    expect(blocked.status).toBe(429);
    expect(blocked.body.error.code).toBe('too_many_attempts');
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(client.cookie).toBeNull();
    // Another address is not affected.
    expect((await client.post('/dashboard/api/sign-in', { email: 'grace@example.test', password: PASSWORD })).status).toBe(200);
  });

  it('sessions are listed and revocable; a cookie replayed after sign-out or revocation is refused', async () => {
    const first = await newUser('sessions@example.test');
    const second = new DashboardClient(gw.url);
    expect((await second.post('/dashboard/api/sign-in', { email: 'sessions@example.test', password: PASSWORD })).status).toBe(200);
    const list = await first.get('/dashboard/api/me/sessions');
    expect(list.body.data).toHaveLength(2);
    expect(list.body.data.filter((s: { current: boolean }) => s.current)).toHaveLength(1);
    const other = list.body.data.find((s: { current: boolean }) => !s.current);
    expect((await first.call('DELETE', `/dashboard/api/me/sessions/${other.id}`)).status).toBe(200);
    expect((await second.get('/dashboard/api/me')).status).toBe(401);
    expect((await second.get('/v1/account')).status).toBe(401);
    expect((await first.call('DELETE', '/dashboard/api/me/sessions/ses_nosuchsession')).status).toBe(404);

    const replayed = first.cookie!;
    expect((await first.call('DELETE', '/dashboard/api/session')).status).toBe(200);
    const replay = new DashboardClient(gw.url);
    replay.cookie = replayed;
    expect((await replay.get('/dashboard/api/me')).status).toBe(401);
    expect((await replay.get('/v1/account')).status).toBe(401);
    expect((await replay.get('/dashboard/api/session')).body.signed_in).toBe(false);
  });

  it('a session past its idle or absolute expiry is refused', async () => {
    const client = await newUser('expiry@example.test');
    expect((await client.get('/dashboard/api/me')).status).toBe(200);
    const { rows } = await pool.query<{ user_id: string }>(`SELECT user_id FROM user_sessions WHERE ended_at IS NULL ORDER BY created_at DESC LIMIT 1`);
    await pool.query(`UPDATE user_sessions SET idle_expires_at = now() - interval '1 second' WHERE user_id = $1`, [rows[0]!.user_id]);
    expect((await client.get('/dashboard/api/me')).status).toBe(401);
    expect((await client.post('/dashboard/api/sign-in', { email: 'expiry@example.test', password: PASSWORD })).status).toBe(200);
    await pool.query(`UPDATE user_sessions SET absolute_expires_at = now() - interval '1 second' WHERE user_id = $1`, [rows[0]!.user_id]);
    expect((await client.get('/dashboard/api/me')).status).toBe(401);
  });

  it('password reset by emailed link: same answer for unknown addresses, single use, ends every session', async () => {
    const client = await newUser('reset@example.test');
    const anon = new DashboardClient(gw.url);
    const unknown = await anon.post('/dashboard/api/forgot-password', { email: 'nobody-here@example.test' });
    const known = await anon.post('/dashboard/api/forgot-password', { email: 'reset@example.test' });
    expect(unknown.status).toBe(202);
    expect(known.body).toEqual(unknown.body);
    const mail = await smtp.waitFor('reset@example.test', 2);
    expect(mail.subject).toBe('Reset your Tollgate password');
    const token = linkTokenIn(mail);
    const weak = await anon.post('/dashboard/api/reset-password', { token, password: 'password1234' });
    expect(weak.body.error.code).toBe('weak_password');
    const newPassword = 'brass lantern over quiet harbour';
    expect((await anon.post('/dashboard/api/reset-password', { token, password: newPassword })).status).toBe(200);
    expect((await anon.post('/dashboard/api/reset-password', { token, password: 'yet another long passphrase' })).body.error.code).toBe('invalid_token');
    expect((await client.get('/dashboard/api/me')).status).toBe(401);
    expect((await anon.post('/dashboard/api/sign-in', { email: 'reset@example.test', password: PASSWORD })).status).toBe(401);
    expect((await anon.post('/dashboard/api/sign-in', { email: 'reset@example.test', password: newPassword })).status).toBe(200);
    expect((await pool.query(`SELECT 1 FROM events WHERE type = 'UserPasswordChanged' AND data->>'how' = 'reset'`)).rowCount).toBe(1);
  });

  it('changing the password needs the current one and ends the other sessions, not this one', async () => {
    const client = await newUser('change@example.test');
    const other = new DashboardClient(gw.url);
    await other.post('/dashboard/api/sign-in', { email: 'change@example.test', password: PASSWORD });
    const wrong = await client.post('/dashboard/api/me/password', { current_password: 'not it at all!!', new_password: 'granite owls sing in winter' });
    expect(wrong.status).toBe(401);
    expect((await other.get('/dashboard/api/me')).status).toBe(200);
    expect((await client.post('/dashboard/api/me/password', { current_password: PASSWORD, new_password: 'granite owls sing in winter' })).status).toBe(200);
    expect((await client.get('/dashboard/api/me')).status).toBe(200);
    expect((await other.get('/dashboard/api/me')).status).toBe(401);
  });

  it('profile: the name is corrected at once; a new email applies only once its link is followed', async () => {
    const client = await newUser('profile@example.test');
    const renamed = await client.call('PATCH', '/dashboard/api/me', { name: 'Ada King' });
    expect(renamed.body).toMatchObject({ name: 'Ada King', email: 'profile@example.test', email_verified: true });
    const moved = await client.call('PATCH', '/dashboard/api/me', { email: 'new-profile@example.test' });
    expect(moved.body).toMatchObject({ email: 'profile@example.test', pending_email: 'new-profile@example.test', email_change_pending: true });
    const bad = await client.call('PATCH', '/dashboard/api/me', { email: 'nope' });
    expect(bad.body.error.code).toBe('invalid_email');
    const mail = await smtp.waitFor('new-profile@example.test');
    expect((await client.post('/dashboard/api/verify-email', { token: linkTokenIn(mail) })).status).toBe(200);
    expect((await client.get('/dashboard/api/me')).body).toMatchObject({ email: 'new-profile@example.test', pending_email: null, email_verified: true });
    expect((await new DashboardClient(gw.url).post('/dashboard/api/sign-in', { email: 'new-profile@example.test', password: PASSWORD })).status).toBe(200);
  });

  it('roles are enforced on the account routes a session reaches: a viewer reads but cannot create a key', async () => {
    const owner = await newUser('owner-r@example.test');
    const viewer = await newUser('viewer-r@example.test');
    const ownerSession = (await owner.get('/dashboard/api/session')).body;
    const viewerSession = (await viewer.get('/dashboard/api/session')).body;
    await gw.gateway.identity.addMember(ownerSession.account_id, viewerSession.user_id, 'viewer', systemMetadata('test'));
    expect((await viewer.post('/dashboard/api/me/account', { account_id: ownerSession.account_id })).body).toMatchObject({
      member_role: 'viewer',
      permissions: [],
    });
    expect((await viewer.get('/v1/account')).body.account_id).toBe(ownerSession.account_id);
    const refused = await viewer.post('/v1/account/keys', { name: 'nope' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_role');
    expect((await viewer.post('/dashboard/api/me/account', { account_id: 'acct_not_mine' })).body.error.code).toBe('not_a_member');
    // Sessions never reach the admin API.
    expect((await owner.get('/admin/accounts')).status).toBe(401);
  });

  it('two-factor: enrol with a TOTP code, then sign-in needs a code; a recovery code works once; a used code is refused', async () => {
    const client = await newUser('totp@example.test');
    const begun = await client.post('/dashboard/api/me/two-factor');
    expect(begun.body.otpauth_uri).toMatch(/^otpauth:\/\/totp\/Tollgate:/);
    const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(begun.body.secret) });
    expect((await client.post('/dashboard/api/me/two-factor/confirm', { code: '000000' === totp.generate() ? '111111' : '000000' })).body.error.code).toBe(
      'invalid_code',
    );
    const confirmed = await client.post('/dashboard/api/me/two-factor/confirm', { code: totp.generate() });
    expect(confirmed.body.recovery_codes).toHaveLength(10);
    const { rows } = await pool.query<{ doc: string }>(`SELECT data::text AS doc FROM events`);
    expect(rows.map((r) => r.doc).join('\n')).not.toContain(begun.body.secret);
    expect((await pool.query(`SELECT 1 FROM user_credentials WHERE totp_secret_ciphertext LIKE $1`, [`%${begun.body.secret}%`])).rowCount).toBe(0);

    const next = new DashboardClient(gw.url);
    const half = await next.post('/dashboard/api/sign-in', { email: 'totp@example.test', password: PASSWORD });
    expect(half.body).toMatchObject({ signed_in: false, two_factor_required: true });
    expect((await next.get('/dashboard/api/me')).status).toBe(401);
    expect((await next.get('/v1/account')).status).toBe(401);
    // The code confirmed at enrolment cannot be replayed.
    expect((await next.post('/dashboard/api/sign-in/two-factor', { code: totp.generate() })).body.error.code).toBe('invalid_code');
    const recovery = confirmed.body.recovery_codes[0];
    const done = await next.post('/dashboard/api/sign-in/two-factor', { code: recovery });
    expect(done.body).toMatchObject({ signed_in: true });
    expect((await next.get('/dashboard/api/me')).body.two_factor_enabled).toBe(true);
    const again = new DashboardClient(gw.url);
    await again.post('/dashboard/api/sign-in', { email: 'totp@example.test', password: PASSWORD });
    expect((await again.post('/dashboard/api/sign-in/two-factor', { code: recovery })).body.error.code).toBe('invalid_code');
    expect((await pool.query(`SELECT 1 FROM user_recovery_codes WHERE code_hash = $1 OR code_hash LIKE $2`, [recovery, `%${recovery}%`])).rowCount).toBe(0);
  });

  it("erasing a closed account's personal data erases its only-member users' credentials and personal data", async () => {
    const client = await newUser('erase@example.test');
    const session = (await client.get('/dashboard/api/session')).body;
    const closed = await client.post('/v1/account/close', {});
    expect(closed.status).toBe(200);
    const later = new Date(Date.now() + 40 * 86_400_000).toISOString();
    const { pool: gwPool } = gw.gateway.database;
    await until(
      async () => {
        const report = await runRetention({ pool: gwPool, ledger: gw.gateway.ledger, vault: gw.gateway.vault }, { now: later });
        return report.personalDataErased.includes(session.account_id) ? true : undefined;
      },
      { what: 'the account erased by retention' },
    );
    expect((await pool.query('SELECT 1 FROM user_credentials WHERE user_id = $1', [session.user_id])).rowCount).toBe(0);
    expect((await pool.query('SELECT 1 FROM user_sessions WHERE user_id = $1', [session.user_id])).rowCount).toBe(0);
    expect((await pool.query('SELECT 1 FROM identity_tokens WHERE user_id = $1', [session.user_id])).rowCount).toBe(0);
    expect(await gw.gateway.identity.nameOf(session.user_id)).toBeNull();
    expect((await client.get('/dashboard/api/me')).status).toBe(401);
    const again = await new DashboardClient(gw.url).post('/dashboard/api/sign-in', { email: 'erase@example.test', password: PASSWORD });
    expect(again.status).toBe(401);
  });

  it("export: a person downloads what is held about them; an owner also gets the account's, audited with them as the actor", async () => {
    const owner = await newUser('export-owner@example.test');
    const ownerSession = (await owner.get('/dashboard/api/session')).body;
    expect((await owner.post('/v1/account/keys', { name: 'exported key' })).status).toBe(201);
    const download = await owner.get('/dashboard/api/me/export');
    expect(download.status).toBe(200);
    expect(download.headers.get('content-disposition')).toMatch(/^attachment; filename="tollgate-export-\d{4}-\d{2}-\d{2}\.json"$/);
    expect(download.body).toMatchObject({
      object: 'data_export',
      user: { profile: { user_id: ownerSession.user_id, name: 'Ada', email: 'export-owner@example.test', email_verified: true } },
      account: { account_id: ownerSession.account_id, personal_data: { display_name: 'Analytical Engines' } },
    });
    expect(download.body.user.events.map((e: { type: string }) => e.type)).toEqual(expect.arrayContaining(['UserRegistered', 'UserEmailVerified']));
    expect(download.body.user.sessions.some((s: { current: boolean }) => s.current)).toBe(true);
    expect(download.body.account.keys.map((k: { name: string }) => k.name)).toContain('exported key');
    // Credentials and ciphertexts are never in it.
    const text = JSON.stringify(download.body);
    const { rows } = await pool.query<{ password_hash: string; email_ciphertext: string }>(
      'SELECT password_hash, email_ciphertext FROM user_credentials WHERE user_id = $1',
      [ownerSession.user_id],
    );
    expect(text).not.toContain(rows[0]!.password_hash);
    expect(text).not.toContain(rows[0]!.email_ciphertext);
    expect(text).not.toContain('Ciphertext');
    await until(
      async () =>
        (
          await pool.query(
            `SELECT 1 FROM audit_log WHERE action = 'personal_data.viewed' AND target_id = $1 AND actor_kind = 'user' AND actor_id = $2 AND details->>'what' = 'export'`,
            [ownerSession.account_id, ownerSession.user_id],
          )
        ).rowCount === 1 || undefined,
      { what: 'the export audited with the person as actor' },
    );

    // A viewer of that account gets their own data only.
    const viewer = await newUser('export-viewer@example.test');
    const viewerSession = (await viewer.get('/dashboard/api/session')).body;
    await gw.gateway.identity.addMember(ownerSession.account_id, viewerSession.user_id, 'viewer', systemMetadata('test'));
    await viewer.post('/dashboard/api/me/account', { account_id: ownerSession.account_id });
    const own = await viewer.get('/dashboard/api/me/export');
    expect(own.body.user.profile.email).toBe('export-viewer@example.test');
    expect(own.body.account).toBeNull();
    expect((await new DashboardClient(gw.url).get('/dashboard/api/me/export')).status).toBe(401);
  });

  it('a person deletes themselves: refused while the only owner of an open account; then memberships removed, sessions ended, data shredded, audited', async () => {
    const owner = await newUser('delete-owner@example.test');
    const ownerSession = (await owner.get('/dashboard/api/session')).body;
    const soleOwner = await owner.call('DELETE', '/dashboard/api/me', { password: PASSWORD });
    expect(soleOwner.status).toBe(409);
    expect(soleOwner.body.error.code).toBe('last_owner');
    expect((await owner.get('/dashboard/api/me')).status).toBe(200);

    const leaver = await newUser('delete-me@example.test');
    const leaverSession = (await leaver.get('/dashboard/api/session')).body;
    await gw.gateway.identity.addMember(ownerSession.account_id, leaverSession.user_id, 'developer', systemMetadata('test'));
    const second = new DashboardClient(gw.url);
    expect((await second.post('/dashboard/api/sign-in', { email: 'delete-me@example.test', password: PASSWORD })).status).toBe(200);
    // Still the only owner of the account they opened at sign-up, until they close it.
    expect((await leaver.call('DELETE', '/dashboard/api/me', { password: PASSWORD })).body.error.code).toBe('last_owner');
    const wrong = await leaver.call('DELETE', '/dashboard/api/me', { password: 'not the password at all' });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_credentials');
    expect((await leaver.call('DELETE', '/dashboard/api/me', {})).status).toBe(400);
    const closed = await leaver.post('/v1/account/close', {});
    expect(closed.status).toBe(200);
    expect(Date.parse(closed.body.personal_data_erase_due_at) - Date.now()).toBeGreaterThan(29 * 86_400_000);

    const deleted = await leaver.call('DELETE', '/dashboard/api/me', { password: PASSWORD });
    expect(deleted.status).toBe(200);
    expect(deleted.body).toEqual({ object: 'user', id: leaverSession.user_id, deleted: true });
    expect((await leaver.get('/dashboard/api/me')).status).toBe(401);
    expect((await second.get('/dashboard/api/me')).status).toBe(401);
    expect((await new DashboardClient(gw.url).post('/dashboard/api/sign-in', { email: 'delete-me@example.test', password: PASSWORD })).status).toBe(401);
    expect((await pool.query('SELECT 1 FROM memberships WHERE user_id = $1', [leaverSession.user_id])).rowCount).toBe(0);
    expect((await pool.query('SELECT 1 FROM user_credentials WHERE user_id = $1', [leaverSession.user_id])).rowCount).toBe(0);
    expect(await gw.gateway.identity.nameOf(leaverSession.user_id)).toBeNull();
    await until(
      async () =>
        (
          await pool.query(`SELECT 1 FROM audit_log WHERE action = 'user.deleted' AND target_id = $1 AND actor_kind = 'user' AND actor_id = $1`, [
            leaverSession.user_id,
          ])
        ).rowCount === 1 &&
        (
          await pool.query(`SELECT 1 FROM audit_log WHERE action = 'member.removed' AND target_id = $1 AND actor_id = $2`, [
            ownerSession.account_id,
            leaverSession.user_id,
          ])
        ).rowCount === 1
          ? true
          : undefined,
      { what: 'the deletion audited with the person as actor' },
    );
  });

  it('an admin user signs in with a password and reaches only the /admin routes of their role; the audit log names them', async () => {
    const customer = await newUser('admin-target@example.test');
    const target = (await customer.get('/dashboard/api/session')).body.account_id;
    const metadata = { ...systemMetadata('test'), actor: { kind: 'admin' as const, adminId: 'cli' } };
    const finance = await gw.gateway.identity.addAdminUser({ email: 'finance@ops.example.test', password: PASSWORD, role: 'finance' }, metadata);
    const operator = await gw.gateway.identity.addAdminUser({ email: 'operator@ops.example.test', password: PASSWORD, role: 'operator' }, metadata);
    if (!finance.ok || !operator.ok) throw new Error('admin users not created');
    expect(finance.value.created).toBe(true);
    expect((await gw.gateway.identity.addAdminUser({ email: 'x@ops.example.test', password: 'short', role: 'finance' }, metadata)).ok).toBe(false);

    const fin = new DashboardClient(gw.url);
    expect((await fin.post('/dashboard/api/sign-in', { email: 'finance@ops.example.test', password: PASSWORD })).status).toBe(200);
    expect((await fin.get(`/admin/accounts/${target}/balance`)).status).toBe(200);
    expect((await fin.get(`/admin/accounts/${target}/statement?period=2026-01`)).status).not.toBe(403);
    const refused = await fin.post(`/admin/accounts/${target}/suspend`, { reason: 'finance may not' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_role');
    expect((await fin.get('/admin/audit')).status).toBe(403);
    expect((await customer.get(`/admin/accounts/${target}/balance`)).status).toBe(401);

    const op = new DashboardClient(gw.url);
    expect((await op.post('/dashboard/api/sign-in', { email: 'operator@ops.example.test', password: PASSWORD })).status).toBe(200);
    expect((await op.post(`/admin/accounts/${target}/suspend`, { reason: 'terms_violation' })).status).toBe(200);
    expect((await op.get('/admin/audit')).status).toBe(403);
    await until(
      async () =>
        (
          await pool.query(`SELECT 1 FROM audit_log WHERE action = 'account.suspended' AND target_id = $1 AND actor_kind = 'admin' AND actor_id = $2`, [
            target,
            operator.value.userId,
          ])
        ).rowCount === 1 || undefined,
      { what: 'the suspension audited with the operator as actor' },
    );
    expect(
      (await pool.query(`SELECT 1 FROM audit_log WHERE action = 'admin_role.granted' AND target_id = $1 AND actor_id = 'cli'`, [finance.value.userId]))
        .rowCount,
    ).toBe(1);
  });

  it('`tollgate admins add` (the real CLI) creates an admin user from a password on stdin; a bad role or weak password exits 1', async () => {
    const run = (args: string[], input = '') =>
      runToCompletion(
        resolve(repoRoot, 'bin/tollgate'),
        args,
        { DATABASE_URL: gw.databaseUrl, LOG_LEVEL: 'warn', TOLLGATE_BCRYPT_COST: '4' },
        undefined,
        input,
      );
    const added = await run(['admins', 'add', '--email', 'compliance@ops.example.test', '--role', 'compliance', '--admin', 'founder'], `${PASSWORD}\n`);
    expect(added.code).toBe(0);
    expect(added.stdout).not.toContain(PASSWORD);
    const { user_id: userId } = JSON.parse(added.stdout);
    expect(await gw.gateway.identity.adminRole(userId)).toBe('compliance');
    const client = new DashboardClient(gw.url);
    expect((await client.post('/dashboard/api/sign-in', { email: 'compliance@ops.example.test', password: PASSWORD })).status).toBe(200);
    expect((await client.get('/admin/audit')).status).toBe(200);
    expect((await client.post('/admin/accounts', { display_name: 'x', email: 'x@example.test' })).status).toBe(403);
    const badRole = await run(['admins', 'add', '--email', 'r@ops.example.test', '--role', 'root'], `${PASSWORD}\n`);
    expect(badRole.code).not.toBe(0);
    expect(badRole.stderr).toMatch(/operator, finance, compliance/);
    const weak = await run(['admins', 'add', '--email', 'w@ops.example.test', '--role', 'finance'], 'short\n');
    expect(weak.code).toBe(1);
    expect(weak.stderr).not.toContain('short\n');
  }, 120_000);

  it('a session survives a gateway restart and is shared by another instance', async () => {
    const client = await newUser('restart@example.test');
    const other = await startTestGateway({ models: MODELS, databaseUrl: gw.databaseUrl, env: { ...ENV, SMTP_URL: smtp.url } });
    try {
      const there = new DashboardClient(other.url);
      there.cookie = client.cookie;
      expect((await there.get('/dashboard/api/me')).body.email).toBe('restart@example.test');
    } finally {
      await other.stop();
    }
  });
});
