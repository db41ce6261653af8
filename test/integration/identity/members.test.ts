import { Pool } from 'pg';
import { DashboardClient } from '../../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TestSmtpServer, linkTokenIn } from '../../support/smtp';

/**
 * Members of an account (issue 14), through HTTP with real SMTP and PostgreSQL: invitation by a
 * single-use expiring link, acceptance (creating the login when new), role changes, removal
 * ending the member's sessions, and every refusal changing nothing.
 */

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'violet kettle drums at noon';
const ENV = { TOLLGATE_MAIL_POLL_INTERVAL_S: '0.05', TOLLGATE_MAIL_RETRY_BASE_S: '0.05', TOLLGATE_BCRYPT_COST: '4' };

describe('members: invite, accept, change a role, remove', () => {
  const smtp = new TestSmtpServer();
  let gw: TestGateway;
  let pool: Pool;
  let ada: DashboardClient;
  let accountId: string;
  let adaId: string;

  beforeAll(async () => {
    await smtp.start();
    gw = await startTestGateway({ models: MODELS, env: { ...ENV, SMTP_URL: smtp.url, TOLLGATE_PUBLIC_URL: 'https://gw.example.test' } });
    pool = new Pool({ connectionString: gw.databaseUrl, max: 2 });
    ada = await newUser('ada@example.test', 'Ada', 'Analytical Engines');
    const session = (await ada.get('/dashboard/api/session')).body;
    accountId = session.account_id;
    adaId = session.user_id;
  });

  afterAll(async () => {
    await pool?.end();
    await gw?.stop();
    await smtp.stop();
  });

  async function newUser(address: string, name: string, organisation: string): Promise<DashboardClient> {
    const client = new DashboardClient(gw.url);
    const before = smtp.to(address).length;
    expect((await client.post('/dashboard/api/sign-up', { email: address, name, password: PASSWORD, organisation })).status).toBe(202);
    const mail = await smtp.waitFor(address, before + 1);
    expect((await client.post('/dashboard/api/verify-email', { token: linkTokenIn(mail) })).status).toBe(200);
    expect((await client.post('/dashboard/api/sign-in', { email: address, password: PASSWORD })).status).toBe(200);
    return client;
  }

  /** Invites `address` as `role` by `by`; answers the emailed link's token. */
  async function invite(by: DashboardClient, address: string, role: string): Promise<string> {
    const before = smtp.to(address).length;
    const answer = await by.post('/dashboard/api/members/invitations', { email: address, role });
    expect(answer.status).toBe(201);
    const mail = await smtp.waitFor(address, before + 1);
    return linkTokenIn(mail);
  }

  async function signIn(address: string, password = PASSWORD): Promise<DashboardClient> {
    const client = new DashboardClient(gw.url);
    const answer = await client.post('/dashboard/api/sign-in', { email: address, password });
    expect(answer.status).toBe(200);
    return client;
  }

  /**
   * Everything a member change could touch: a refusal must leave it as it was. The mail sender's
   * own records (EmailSent, after delivery) arrive on their own schedule and are left out.
   */
  const state = async () =>
    (
      await pool.query<{ doc: string }>(
        `SELECT (SELECT count(*) FROM events WHERE type NOT IN ('EmailSent', 'EmailAbandoned')) || '|' || (SELECT string_agg(account_id || user_id || role, ',' ORDER BY account_id, user_id) FROM memberships)
             || '|' || (SELECT count(*) FROM account_invitations WHERE used_at IS NULL AND revoked_at IS NULL)
             || '|' || (SELECT count(*) FROM user_credentials) || '|' || (SELECT count(*) FROM user_sessions WHERE ended_at IS NULL) AS doc`,
      )
    ).rows[0]!.doc;

  async function refusedUnchanged(call: () => Promise<{ status: number; body: any }>, status: number, code: string): Promise<void> {
    const before = await state();
    const answer = await call();
    expect({ status: answer.status, code: answer.body.error?.code }).toEqual({ status, code });
    expect(answer.body.error.message).toEqual(expect.any(String));
    expect(await state()).toBe(before);
  }

  it('an invited new address receives a single-use link, creates its login with the sign-up password rules, and signs in with its role', async () => {
    const before = smtp.to('bob@example.test').length;
    const invited = await ada.post('/dashboard/api/members/invitations', { email: 'Bob@Example.test', role: 'developer' });
    expect(invited.status).toBe(201);
    expect(invited.body).toMatchObject({ object: 'invitation', email: 'bob@example.test', role: 'developer', invited_by: adaId });
    expect(Date.parse(invited.body.expires_at) - Date.parse(invited.body.created_at)).toBe(7 * 24 * 3_600_000);
    const mail = await smtp.waitFor('bob@example.test', before + 1);
    expect(mail.subject).toBe('You are invited to Analytical Engines on Tollgate');
    expect(mail.text).toContain('Ada invited you to join Analytical Engines on Tollgate as developer.');
    const token = linkTokenIn(mail);
    expect(mail.text).toContain(`https://gw.example.test/dashboard/#/accept-invitation?token=${token}`);
    expect((await ada.get('/dashboard/api/members')).body.invitations).toEqual([expect.objectContaining({ id: invited.body.id, email: 'bob@example.test' })]);

    // A new login needs a name and a good password; each refusal leaves the invitation usable.
    const bob = new DashboardClient(gw.url);
    await refusedUnchanged(() => bob.post('/dashboard/api/invitations/accept', { token }), 400, 'missing_required_parameter');
    await refusedUnchanged(() => bob.post('/dashboard/api/invitations/accept', { token, name: 'Bob' }), 400, 'missing_required_parameter');
    await refusedUnchanged(() => bob.post('/dashboard/api/invitations/accept', { token, name: 'Bob', password: 'short' }), 400, 'weak_password');
    await refusedUnchanged(() => bob.post('/dashboard/api/invitations/accept', { token, name: 'Bob', password: 'password1234' }), 400, 'weak_password');
    await refusedUnchanged(
      () => bob.post('/dashboard/api/invitations/accept', { token: `${token.slice(0, -2)}xx`, name: 'Bob', password: PASSWORD }),
      400,
      'invalid_token',
    );

    const accepted = await bob.post('/dashboard/api/invitations/accept', { token, name: 'Bob', password: PASSWORD });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ object: 'invitation_acceptance', account_id: accountId, role: 'developer', new_user: true });
    // Used twice: the second time fails and changes nothing.
    await refusedUnchanged(
      () => new DashboardClient(gw.url).post('/dashboard/api/invitations/accept', { token, name: 'Eve', password: 'another long passphrase' }),
      400,
      'invalid_token',
    );

    const signedIn = await signIn('bob@example.test');
    const session = (await signedIn.get('/dashboard/api/session')).body;
    expect(session).toMatchObject({ account_id: accountId, member_role: 'developer', email_verified: true, permissions: ['keys'] });
    expect((await signedIn.post('/v1/account/keys', { name: 'bob key' })).status).toBe(201);
    const members = (await ada.get('/dashboard/api/members')).body;
    expect(members.data).toEqual([
      expect.objectContaining({ user_id: adaId, name: 'Ada', email: 'ada@example.test', role: 'owner', you: true }),
      expect.objectContaining({ user_id: accepted.body.user_id, name: 'Bob', email: 'bob@example.test', role: 'developer', you: false }),
    ]);
    expect(members.invitations).toEqual([]);

    // Only the token's hash is kept; no token, address or password in the log or a log line.
    const { rows } = await pool.query<{ token_hash: string }>('SELECT token_hash FROM account_invitations WHERE invitation_id = $1', [invited.body.id]);
    expect(rows[0]!.token_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(rows[0]!.token_hash).not.toBe(token);
    const log = (await pool.query<{ doc: string }>('SELECT data::text || metadata::text AS doc FROM events')).rows.map((r) => r.doc).join('\n');
    for (const secret of [token, PASSWORD, 'bob@example.test']) expect(log).not.toContain(secret);
    expect(gw.logLines.join('\n')).not.toContain(token);
    const memberEvents = await pool.query<{ type: string }>(`SELECT type FROM events WHERE stream_id = $1 ORDER BY stream_revision`, [
      `account-members-${accountId}`,
    ]);
    expect(memberEvents.rows.map((r) => r.type)).toEqual(['MemberAdded', 'MemberAdded']);
  });

  it('an existing user accepts with the link alone and works in both accounts', async () => {
    const carol = await newUser('carol@example.test', 'Carol', 'Carol Co');
    const token = await invite(ada, 'carol@example.test', 'admin');
    const accepted = await new DashboardClient(gw.url).post('/dashboard/api/invitations/accept', { token, name: 'Ignored', password: 'x' });
    expect(accepted.status).toBe(200);
    expect(accepted.body).toMatchObject({ account_id: accountId, role: 'admin', new_user: false });
    const profile = (await carol.get('/dashboard/api/me')).body;
    expect(profile.name).toBe('Carol');
    expect(profile.memberships.map((m: { role: string }) => m.role).sort()).toEqual(['admin', 'owner']);
    expect((await carol.post('/dashboard/api/me/account', { account_id: accountId })).body).toMatchObject({ account_id: accountId, member_role: 'admin' });
    // An address that is already a member cannot be invited again.
    await refusedUnchanged(() => ada.post('/dashboard/api/members/invitations', { email: 'CAROL@example.test', role: 'viewer' }), 409, 'already_a_member');
  });

  it('only owners and admins manage members; an admin never makes, demotes or removes an owner', async () => {
    const bob = await signIn('bob@example.test');
    const carol = await signIn('carol@example.test');
    expect((await carol.post('/dashboard/api/me/account', { account_id: accountId })).status).toBe(200);
    const bobId = (await bob.get('/dashboard/api/session')).body.user_id;
    const carolId = (await carol.get('/dashboard/api/session')).body.user_id;

    // A developer changes no role, invites nobody, removes nobody.
    await refusedUnchanged(() => bob.patch(`/dashboard/api/members/${adaId}`, { role: 'viewer' }), 403, 'insufficient_role');
    await refusedUnchanged(() => bob.patch(`/dashboard/api/members/${bobId}`, { role: 'admin' }), 403, 'insufficient_role');
    await refusedUnchanged(() => bob.post('/dashboard/api/members/invitations', { email: 'x@example.test', role: 'viewer' }), 403, 'insufficient_role');
    await refusedUnchanged(() => bob.delete(`/dashboard/api/members/${carolId}`), 403, 'insufficient_role');
    // An admin cannot touch ownership.
    await refusedUnchanged(() => carol.patch(`/dashboard/api/members/${bobId}`, { role: 'owner' }), 403, 'insufficient_role');
    await refusedUnchanged(() => carol.patch(`/dashboard/api/members/${adaId}`, { role: 'admin' }), 403, 'insufficient_role');
    await refusedUnchanged(() => carol.delete(`/dashboard/api/members/${adaId}`), 403, 'insufficient_role');
    await refusedUnchanged(() => carol.post('/dashboard/api/members/invitations', { email: 'o@example.test', role: 'owner' }), 403, 'insufficient_role');
    // Bad input and unknown members: clear, and nothing changes.
    await refusedUnchanged(() => carol.patch(`/dashboard/api/members/${bobId}`, { role: 'emperor' }), 400, 'invalid_value');
    await refusedUnchanged(() => carol.patch('/dashboard/api/members/usr_nobody', { role: 'viewer' }), 404, 'member_not_found');
    await refusedUnchanged(() => carol.post('/dashboard/api/members/invitations', { email: 'not an address', role: 'viewer' }), 400, 'invalid_email');

    // An admin re-roles a non-owner: the change is in force for the member's next call.
    const changed = await carol.patch(`/dashboard/api/members/${bobId}`, { role: 'viewer' });
    expect(changed.status).toBe(200);
    expect(changed.body).toEqual({ object: 'member', user_id: bobId, role: 'viewer' });
    const refused = await bob.post('/v1/account/keys', { name: 'no longer' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_role');
    const last = await pool.query<{ type: string; data: any; metadata: any }>(
      `SELECT type, data, metadata FROM events WHERE stream_id = $1 ORDER BY stream_revision DESC LIMIT 1`,
      [`account-members-${accountId}`],
    );
    expect(last.rows[0]).toMatchObject({
      type: 'MemberRoleChanged',
      data: { userId: bobId, role: 'viewer' },
      metadata: { actor: { kind: 'user', userId: carolId } },
    });
  });

  it('the last owner can neither be demoted nor leave; with a second owner they can', async () => {
    await refusedUnchanged(() => ada.patch(`/dashboard/api/members/${adaId}`, { role: 'admin' }), 409, 'last_owner');
    await refusedUnchanged(() => ada.delete(`/dashboard/api/members/${adaId}`), 409, 'last_owner');
    const carolId = (await pool.query<{ user_id: string }>(`SELECT user_id FROM memberships WHERE account_id = $1 AND role = 'admin'`, [accountId])).rows[0]!
      .user_id;
    expect((await ada.patch(`/dashboard/api/members/${carolId}`, { role: 'owner' })).status).toBe(200);
    // Two owners demoting each other at once: one stays.
    const carol = await signIn('carol@example.test');
    expect((await carol.post('/dashboard/api/me/account', { account_id: accountId })).status).toBe(200);
    const both = await Promise.all([
      ada.patch(`/dashboard/api/members/${carolId}`, { role: 'admin' }),
      carol.patch(`/dashboard/api/members/${adaId}`, { role: 'admin' }),
    ]);
    expect(both.map((a) => a.status).sort()).toEqual([200, 409]);
    const owners = await pool.query(`SELECT 1 FROM memberships WHERE account_id = $1 AND role = 'owner'`, [accountId]);
    expect(owners.rowCount).toBe(1);
    // Restore Ada as the owner for what follows.
    const owner = both[0]!.status === 200 ? ada : carol;
    if (owner === carol) expect((await carol.patch(`/dashboard/api/members/${adaId}`, { role: 'owner' })).status).toBe(200);
  });

  it('removing a member ends their sessions in that account at once; their keys stay with the account', async () => {
    const bob = await signIn('bob@example.test');
    const other = await signIn('bob@example.test');
    const bobId = (await bob.get('/dashboard/api/session')).body.user_id;
    expect((await bob.get('/v1/account')).status).toBe(200);
    const removed = await ada.delete(`/dashboard/api/members/${bobId}`);
    expect(removed.status).toBe(200);
    expect(removed.body).toMatchObject({ object: 'member', user_id: bobId, removed: true });
    expect(removed.body.sessions_ended).toBeGreaterThanOrEqual(2);
    for (const client of [bob, other]) {
      expect((await client.get('/dashboard/api/me')).status).toBe(401);
      expect((await client.get('/v1/account')).status).toBe(401);
    }
    // He may sign in (the user remains) but belongs to no account now.
    const again = await signIn('bob@example.test');
    expect((await again.get('/dashboard/api/session')).body).toMatchObject({ account_id: null, member_role: null });
    expect((await again.get('/dashboard/api/members')).body.error.code).toBe('not_a_member');
    const keys = (await ada.get('/v1/account/keys')).body.data as { name: string }[];
    expect(keys.map((k) => k.name)).toContain('bob key');
    expect((await ada.get('/dashboard/api/members')).body.data.map((m: { user_id: string }) => m.user_id)).not.toContain(bobId);
    await refusedUnchanged(() => ada.delete(`/dashboard/api/members/${bobId}`), 404, 'member_not_found');
  });

  it('any member may leave; an expired or withdrawn invitation fails and changes nothing', async () => {
    const token = await invite(ada, 'dave@example.test', 'viewer');
    const dave = new DashboardClient(gw.url);
    expect((await dave.post('/dashboard/api/invitations/accept', { token, name: 'Dave', password: PASSWORD })).status).toBe(200);
    const daveIn = await signIn('dave@example.test');
    const daveId = (await daveIn.get('/dashboard/api/session')).body.user_id;
    expect((await daveIn.delete(`/dashboard/api/members/${daveId}`)).status).toBe(200);
    expect((await daveIn.get('/dashboard/api/me')).status).toBe(401);

    const expiring = await invite(ada, 'erin@example.test', 'viewer');
    await pool.query(`UPDATE account_invitations SET expires_at = now() - interval '1 second' WHERE used_at IS NULL AND revoked_at IS NULL`);
    await refusedUnchanged(
      () => new DashboardClient(gw.url).post('/dashboard/api/invitations/accept', { token: expiring, name: 'Erin', password: PASSWORD }),
      400,
      'invalid_token',
    );
    expect((await ada.get('/dashboard/api/members')).body.invitations).toEqual([]);

    const withdrawn = await ada.post('/dashboard/api/members/invitations', { email: 'frank@example.test', role: 'viewer' });
    const mail = await smtp.waitFor('frank@example.test');
    expect((await ada.delete(`/dashboard/api/members/invitations/${withdrawn.body.id}`)).status).toBe(200);
    await refusedUnchanged(
      () => new DashboardClient(gw.url).post('/dashboard/api/invitations/accept', { token: linkTokenIn(mail), name: 'Frank', password: PASSWORD }),
      400,
      'invalid_token',
    );
    await refusedUnchanged(() => ada.delete(`/dashboard/api/members/invitations/${withdrawn.body.id}`), 404, 'invitation_not_found');
  });

  it('an address someone signed up with but never confirmed: the invitee proves the mailbox, sets the password, and the squatter is out', async () => {
    const squatter = new DashboardClient(gw.url);
    expect(
      (
        await squatter.post('/dashboard/api/sign-up', {
          email: 'hana@example.test',
          name: 'Squatter',
          password: 'squatters own passphrase',
          organisation: 'Squat',
        })
      ).status,
    ).toBe(202);
    await smtp.waitFor('hana@example.test');
    expect((await squatter.post('/dashboard/api/sign-in', { email: 'hana@example.test', password: 'squatters own passphrase' })).status).toBe(200);
    const token = await invite(ada, 'hana@example.test', 'developer');
    const hana = new DashboardClient(gw.url);
    await refusedUnchanged(() => hana.post('/dashboard/api/invitations/accept', { token }), 400, 'missing_required_parameter');
    const accepted = await hana.post('/dashboard/api/invitations/accept', { token, password: PASSWORD });
    expect(accepted.body).toMatchObject({ account_id: accountId, role: 'developer', new_user: false });
    expect((await squatter.get('/dashboard/api/me')).status).toBe(401);
    expect(
      (await new DashboardClient(gw.url).post('/dashboard/api/sign-in', { email: 'hana@example.test', password: 'squatters own passphrase' })).status,
    ).toBe(401);
    const hanaIn = new DashboardClient(gw.url);
    expect((await hanaIn.post('/dashboard/api/sign-in', { email: 'hana@example.test', password: PASSWORD })).status).toBe(200);
    expect((await hanaIn.get('/dashboard/api/session')).body).toMatchObject({ email_verified: true });
  });

  it('two acceptances of one invitation at once: exactly one joins', async () => {
    const token = await invite(ada, 'gina@example.test', 'billing');
    const answers = await Promise.all(
      [0, 1].map(() => new DashboardClient(gw.url).post('/dashboard/api/invitations/accept', { token, name: 'Gina', password: PASSWORD })),
    );
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400]);
    const rows = await pool.query(
      `SELECT 1 FROM events WHERE type = 'UserRegistered' AND stream_id IN (SELECT 'user-' || user_id FROM memberships WHERE role = 'billing')`,
    );
    expect(rows.rowCount).toBe(1);
  });
});
