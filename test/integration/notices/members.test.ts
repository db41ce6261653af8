import pg from 'pg';
import { systemMetadata } from '../../../src/command-metadata';
import { DashboardClient } from '../../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TestSmtpServer, linkTokenIn } from '../../support/smtp';
import { until } from '../../support/wait';
import { apiClient } from '../admin/http';

/**
 * Notices reach people: each is mailed to the account's contact and to every member with a
 * verified address (one email per address), over real SMTP. A member who turned a non-essential
 * kind off in their own session gets no email and no banner of it, while another member of the
 * same account does; essential kinds reach every member; an unverified member gets nothing.
 * A notice read in one member's session is read for that person only: the others still see it.
 */

const PASSWORD = 'violet kettle drums at noon';
const DAY = 86_400_000;
const smtp = new TestSmtpServer();
let gw: TestGateway;
let pool: pg.Pool;
let call: ReturnType<typeof apiClient>;

beforeAll(async () => {
  await smtp.start();
  gw = await startTestGateway({
    models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    env: {
      SMTP_URL: smtp.url,
      TOLLGATE_BCRYPT_COST: '4',
      TOLLGATE_NOTICES_INTERVAL_S: '0.2',
      TOLLGATE_MAIL_POLL_INTERVAL_S: '0.1',
      TOLLGATE_MAIL_RETRY_BASE_S: '0.1',
    },
  });
  pool = new pg.Pool({ connectionString: gw.databaseUrl, max: 2 });
  call = apiClient(gw.url);
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await gw?.stop();
  await smtp.stop();
});

/** Signs up (following the emailed link unless `verify` is false) and signs in. */
async function person(address: string, verify = true): Promise<{ client: DashboardClient; userId: string; accountId: string }> {
  const client = new DashboardClient(gw.url);
  const signUp = await client.post('/dashboard/api/sign-up', { email: address, name: 'Ada', password: PASSWORD, organisation: 'Analytical Engines' });
  expect(signUp.status).toBe(202);
  const mail = await smtp.waitFor(address);
  if (verify) expect((await client.post('/dashboard/api/verify-email', { token: linkTokenIn(mail) })).status).toBe(200);
  expect((await client.post('/dashboard/api/sign-in', { email: address, password: PASSWORD })).status).toBe(200);
  const session = (await client.get('/dashboard/api/session')).body;
  return { client, userId: session.user_id, accountId: session.account_id };
}

async function join(accountId: string, who: { client: DashboardClient; userId: string }, role: 'viewer' | 'developer'): Promise<void> {
  await gw.gateway.identity.addMember(accountId, who.userId, role, systemMetadata('test'));
  expect((await who.client.post('/dashboard/api/me/account', { account_id: accountId })).status).toBe(200);
}

/** Waits until the mailer has handled `noticeId` for `accountId` and the outbox has sent what it requested. */
async function handled(noticeId: string, accountId: string): Promise<void> {
  await until(
    async () => {
      const { rows } = await pool.query(
        `SELECT 1 FROM notice_mailings m WHERE m.notice_id = $1 AND m.account_id = $2
            AND NOT EXISTS (SELECT 1 FROM mail_outbox o WHERE o.email_id LIKE 'notice-' || $1 || '%' AND o.status <> 'sent')`,
        [noticeId, accountId],
      );
      return rows.length === 1 ? true : undefined;
    },
    { what: `notice ${noticeId} mailed for ${accountId}` },
  );
}

const emailIdsFor = async (noticeId: string, accountId: string): Promise<string[]> =>
  (
    await pool.query<{ email_id: string }>('SELECT email_id FROM mail_outbox WHERE email_id LIKE $1 ORDER BY email_id', [`notice-${noticeId}-${accountId}%`])
  ).rows
    .map((r) => r.email_id)
    .sort();

const subjectsTo = (address: string) => smtp.to(address).map((m) => m.subject);

test('an opted-out member gets no non-essential mail while another member of the same account does; essential notices reach both', async () => {
  const owner = await person('owner.members@example.test');
  const quiet = await person('quiet.members@example.test');
  const keen = await person('keen.members@example.test');
  const unverified = await person('unverified.members@example.test', false);
  await join(owner.accountId, quiet, 'viewer');
  await join(owner.accountId, keen, 'developer');
  await join(owner.accountId, unverified, 'viewer');

  // A viewer sets their own preferences (no owner's permission needed); essential kinds stay on.
  const essential = await quiet.client.call('PUT', '/v1/account/notice-preferences', { kinds: { terms_change: false } });
  expect({ status: essential.status, code: essential.body.error?.code }).toEqual({ status: 409, code: 'notice_kind_essential' });
  const off = await quiet.client.call('PUT', '/v1/account/notice-preferences', { kinds: { incident: false } });
  expect(off.status).toBe(200);
  expect(off.body.data).toContainEqual({ kind: 'incident', essential: false, enabled: false });
  // Theirs, not the account's: the other members' (and the account's) stay on.
  expect((await keen.client.get('/v1/account/notice-preferences')).body.data).toContainEqual({ kind: 'incident', essential: false, enabled: true });
  expect((await owner.client.get('/v1/account/notice-preferences')).body.data).toContainEqual({ kind: 'incident', essential: false, enabled: true });

  const incident = await call('POST', '/admin/notices', gw.adminKey, { kind: 'incident', subject: 'Errors on m', body: 'We are looking into it.' });
  expect(incident.status).toBe(201);
  await handled(incident.body.id, owner.accountId);
  await smtp.waitFor('keen.members@example.test', 2);
  // Each address's notice is its own outbox row, sent on its own: wait for the owner's too.
  await smtp.waitFor('owner.members@example.test', 2);
  expect(subjectsTo('keen.members@example.test')).toContain('Errors on m');
  // The owner is the account's contact too: one email, not two.
  expect(subjectsTo('owner.members@example.test').filter((s) => s === 'Errors on m')).toHaveLength(1);
  expect(subjectsTo('quiet.members@example.test')).not.toContain('Errors on m');
  // Exactly two emails for this account: the owner (also its contact: one person, one email) and
  // the keen member; none for the opted-out member or the unverified one (who hears only as the
  // contact of their own account).
  expect(await emailIdsFor(incident.body.id, owner.accountId)).toEqual(
    [`notice-${incident.body.id}-${owner.accountId}-${owner.userId}`, `notice-${incident.body.id}-${owner.accountId}-${keen.userId}`].sort(),
  );
  // The opted-out member's banner leaves it out; another member's shows it.
  const bannerIds = async (client: DashboardClient) => ((await client.get('/v1/account/notices?unread=true')).body.data as { id: string }[]).map((n) => n.id);
  expect(await bannerIds(quiet.client)).not.toContain(incident.body.id);
  expect(await bannerIds(keen.client)).toContain(incident.body.id);

  const terms = await call('POST', '/admin/notices', gw.adminKey, {
    kind: 'terms_change',
    subject: 'New terms',
    body: 'See the site.',
    effective_at: new Date(Date.now() + 15 * DAY).toISOString(),
  });
  expect(terms.status).toBe(201);
  await handled(terms.body.id, owner.accountId);
  for (const address of ['owner.members@example.test', 'quiet.members@example.test', 'keen.members@example.test']) {
    await until(() => (subjectsTo(address).includes('New terms') ? true : undefined), { what: `the terms change mailed to ${address}` });
  }
  expect(await emailIdsFor(terms.body.id, owner.accountId)).toEqual(
    [
      `notice-${terms.body.id}-${owner.accountId}-${owner.userId}`,
      `notice-${terms.body.id}-${owner.accountId}-${quiet.userId}`,
      `notice-${terms.body.id}-${owner.accountId}-${keen.userId}`,
    ].sort(),
  );
}, 180_000);

test("a notice dismissed by one member stays in the other members' banners and the account's (an API key's)", async () => {
  const owner = await person('owner.reads@example.test');
  const viewer = await person('viewer.reads@example.test');
  await join(owner.accountId, viewer, 'viewer');
  const key = (await call('POST', `/admin/accounts/${owner.accountId}/keys`, gw.adminKey, { name: 'reader' })).body.key as string;
  const banner = async (get: () => Promise<{ body: { data: { id: string; read: boolean }[] } }>) => (await get()).body.data.map((n) => n.id);
  const ownerBanner = () => banner(() => owner.client.get('/v1/account/notices?unread=true'));
  const viewerBanner = () => banner(() => viewer.client.get('/v1/account/notices?unread=true'));
  const keyBanner = () => banner(() => call('GET', '/v1/account/notices?unread=true', key));

  const terms = await call('POST', '/admin/notices', gw.adminKey, {
    kind: 'terms_change',
    subject: 'Newer terms',
    body: 'See the site.',
    effective_at: new Date(Date.now() + 15 * DAY).toISOString(),
  });
  expect(terms.status).toBe(201);
  const id = terms.body.id as string;
  await until(async () => ((await viewerBanner()).includes(id) ? true : undefined), { what: 'the notice in the banners' });
  expect(await ownerBanner()).toContain(id);
  expect(await keyBanner()).toContain(id);

  // The viewer dismisses it (a viewer may: it is their own banner): gone for them only.
  const dismissed = await viewer.client.post(`/v1/account/notices/${id}/read`);
  expect([dismissed.status, dismissed.body]).toEqual([200, { id, read: true }]);
  expect(await viewerBanner()).not.toContain(id);
  expect((await viewer.client.get('/v1/account/notices')).body.data).toContainEqual(expect.objectContaining({ id, read: true }));
  expect(await ownerBanner()).toContain(id);
  expect((await owner.client.get('/v1/account/notices')).body.data).toContainEqual(expect.objectContaining({ id, read: false }));
  expect(await keyBanner()).toContain(id);

  // Read with the API key: for the account's key readers, not for its people.
  expect((await call('POST', `/v1/account/notices/${id}/read`, key)).status).toBe(200);
  expect(await keyBanner()).not.toContain(id);
  expect(await ownerBanner()).toContain(id);
  // A key without account_write cannot mark it; an unknown notice is 404 for a person too.
  const readOnly = (await call('POST', `/admin/accounts/${owner.accountId}/keys`, gw.adminKey, { name: 'ro', scopes: ['account_read'] })).body.key as string;
  const refused = await call('POST', `/v1/account/notices/${id}/read`, readOnly);
  expect([refused.status, refused.body.error.code]).toEqual([403, 'insufficient_permissions']);
  const unknown = await owner.client.post('/v1/account/notices/nope/read');
  expect([unknown.status, unknown.body.error.code]).toEqual([404, 'notice_not_found']);
  expect((await owner.client.post(`/v1/account/notices/${id}/read`)).status).toBe(200);
  expect(await ownerBanner()).not.toContain(id);
}, 120_000);
