import { resolve } from 'node:path';
import { repoRoot, runToCompletion } from '../../support/processes';
import { Pool } from 'pg';
import { START } from '../../../src/ports/event-store';
import { adminRolesProjection } from '../../../src/read-models/admin-roles';
import { DashboardClient } from '../../support/dashboard-client';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { until } from '../../support/wait';

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const PASSWORD = 'violet kettle drums at noon';

/**
 * Operators as people (issue 14): admin users with roles, granted, changed and removed as events
 * in the admin-roles stream, the admin_roles table their projection, every /admin call judged by
 * the caller's role, and the finance and compliance reads that were CLI-only over HTTP.
 */
describe('admin users', () => {
  let gw: TestGateway;
  let pool: Pool;

  beforeAll(async () => {
    gw = await startTestGateway({ models: MODELS, env: { TOLLGATE_BCRYPT_COST: '4' } });
    pool = new Pool({ connectionString: gw.databaseUrl, max: 2 });
  });

  afterAll(async () => {
    await pool?.end();
    await gw?.stop();
  });

  const bootstrap = (method: string, path: string, body?: unknown) =>
    new DashboardClient(gw.url).call(method, path, body, { authorization: `Bearer ${gw.adminKey}` });

  async function signIn(email: string): Promise<DashboardClient> {
    const client = new DashboardClient(gw.url);
    const signed = await client.post('/dashboard/api/sign-in', { email, password: PASSWORD });
    expect(signed.status).toBe(200);
    return client;
  }

  const audited = (action: string, target: string, actor: string) =>
    until(
      async () =>
        (
          await pool.query('SELECT 1 FROM audit_log WHERE action = $1 AND target_id = $2 AND actor_kind = $3 AND actor_id = $4', [
            action,
            target,
            'admin',
            actor,
          ])
        ).rowCount! >= 1 || undefined,
      { what: `${action} on ${target} audited with ${actor} as actor` },
    );

  let operatorId = '';
  let staffId = '';

  it('operators add, list, re-role and remove admin users over HTTP; each act is audited with the person as actor; the last operator stays', async () => {
    const first = await bootstrap('POST', '/admin/admin-users', { email: 'op@ops.example.test', role: 'operator', password: PASSWORD });
    expect(first.status).toBe(201);
    operatorId = first.body.user_id;
    const op = await signIn('op@ops.example.test');

    // Bad input changes nothing.
    expect((await op.post('/admin/admin-users', { email: 'staff@ops.example.test', role: 'root', password: PASSWORD })).status).toBe(400);
    const weak = await op.post('/admin/admin-users', { email: 'staff@ops.example.test', role: 'finance', password: 'short' });
    expect([weak.status, weak.body.error.code]).toEqual([400, 'weak_password']);
    const noPassword = await op.post('/admin/admin-users', { email: 'staff@ops.example.test', role: 'finance' });
    expect([noPassword.status, noPassword.body.error.code]).toEqual([400, 'missing_required_parameter']);

    const added = await op.post('/admin/admin-users', { email: 'staff@ops.example.test', role: 'finance', password: PASSWORD });
    expect(added.status).toBe(201);
    staffId = added.body.user_id;
    await audited('admin_role.granted', staffId, operatorId);

    const listed = await op.get('/admin/admin-users');
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((a: { email: string; role: string }) => [a.email, a.role])).toEqual([
      ['op@ops.example.test', 'operator'],
      ['staff@ops.example.test', 'finance'],
    ]);

    const staff = await signIn('staff@ops.example.test');
    const forbidden = await staff.get('/admin/admin-users');
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toEqual({
      error: { message: expect.stringContaining('finance'), type: 'invalid_request_error', param: null, code: 'insufficient_role' },
    });

    // A change of role holds at the next call of the same session.
    expect((await staff.get('/admin/finance/journal')).status).toBe(200);
    const changed = await op.patch(`/admin/admin-users/${staffId}`, { role: 'compliance' });
    expect(changed.body).toEqual({ object: 'admin_user', user_id: staffId, role: 'compliance' });
    expect((await staff.get('/admin/finance/journal')).body.error.code).toBe('insufficient_role');
    await audited('admin_role.changed', staffId, operatorId);
    expect((await op.patch('/admin/admin-users/usr_nobody', { role: 'finance' })).body.error.code).toBe('admin_not_found');

    // The last operator can neither leave nor step down; nothing is recorded.
    const eventsBefore = (await pool.query('SELECT count(*)::int AS n FROM events')).rows[0].n;
    const self = await op.delete(`/admin/admin-users/${operatorId}`);
    expect([self.status, self.body.error.code]).toEqual([409, 'last_operator']);
    expect((await op.patch(`/admin/admin-users/${operatorId}`, { role: 'finance' })).body.error.code).toBe('last_operator');
    expect((await pool.query('SELECT count(*)::int AS n FROM events')).rows[0].n).toBe(eventsBefore);

    // Removal takes the role away at once and ends the person's sessions.
    const removed = await op.delete(`/admin/admin-users/${staffId}`);
    expect(removed.body).toEqual({ object: 'admin_user', user_id: staffId, removed: true });
    expect((await staff.get('/admin/audit')).status).toBe(401);
    expect((await op.delete(`/admin/admin-users/${staffId}`)).body.error.code).toBe('admin_not_found');
    await audited('admin_role.revoked', staffId, operatorId);
    expect((await op.get('/admin/admin-users')).body.data.map((a: { user_id: string }) => a.user_id)).toEqual([operatorId]);
  });

  it('finance gets the journal and the verification (audited as finance.report_run), compliance the export (audited as a view of personal data); neither reaches the other', async () => {
    const opened = await bootstrap('POST', '/admin/accounts', { display_name: 'Export Ltd', email: 'data@export.example.test' });
    const accountId = opened.body.account_id;
    expect((await bootstrap('POST', `/admin/accounts/${accountId}/top-ups`, { amount_usd: '12.00', reference: 'r-1', reason: 'test' })).status).toBe(201);
    const finUser = await bootstrap('POST', '/admin/admin-users', { email: 'fin@ops.example.test', role: 'finance', password: PASSWORD });
    const comp = await bootstrap('POST', '/admin/admin-users', { email: 'comp@ops.example.test', role: 'compliance', password: PASSWORD });
    const fin = await signIn('fin@ops.example.test');
    const com = await signIn('comp@ops.example.test');

    const journal = await fin.get('/admin/finance/journal');
    expect(journal.status).toBe(200);
    const lines = journal.body.data.filter((l: { customer_account: string }) => l.customer_account === accountId);
    expect(lines.map((l: { debit_usd: string | null; credit_usd: string | null }) => l.debit_usd ?? l.credit_usd).sort()).toEqual(['12.000000', '12.000000']);
    const csv = await fin.call('GET', '/admin/finance/journal', undefined, { accept: 'text/csv' });
    expect(csv.headers.get('content-type')).toMatch(/text\/csv/);
    expect(String(csv.body).split('\n')[0]).toMatch(/^log_tx,log_seq,line,occurred_at,event_type,customer_account,ledger_account,debit_usd,credit_usd\s*$/);
    const verified = await fin.get('/admin/finance/verification');
    expect(verified.body).toMatchObject({ object: 'finance_verification', ok: true, differences: [] });
    expect((await fin.get('/admin/finance/verification?grace_seconds=0')).status).toBe(400);
    expect((await fin.get(`/admin/compliance/exports/${accountId}`)).body.error.code).toBe('insufficient_role');
    await audited('finance.report_run', 'journal', finUser.body.user_id);
    await until(
      async () =>
        (
          await pool.query(
            `SELECT 1 FROM audit_log WHERE action = 'finance.report_run' AND target_id = 'verification' AND actor_id = $1 AND details->>'ok' = 'yes'`,
            [finUser.body.user_id],
          )
        ).rowCount === 1 || undefined,
      { what: 'the verification audited with the finance person as actor' },
    );

    const exported = await com.get(`/admin/compliance/exports/${accountId}?purpose=${encodeURIComponent('request #7')}`);
    expect(exported.status).toBe(200);
    expect(exported.body.personal_data).toMatchObject({ display_name: 'Export Ltd', email: 'data@export.example.test' });
    expect((await com.get('/admin/compliance/exports/acct_nobody')).body.error.code).toBe('account_not_found');
    expect((await com.get('/admin/finance/journal')).body.error.code).toBe('insufficient_role');
    expect((await com.get('/admin/finance/verification')).body.error.code).toBe('insufficient_role');
    await until(
      async () =>
        (
          await pool.query(`SELECT 1 FROM audit_log WHERE action = 'personal_data.viewed' AND target_id = $1 AND actor_id = $2 AND reason = 'request #7'`, [
            accountId,
            comp.body.user_id,
          ])
        ).rowCount === 1 || undefined,
      { what: 'the export audited with the compliance person as actor' },
    );
  });

  it('`tollgate admins` (the real CLI): --help explains; list, role and remove act with their exit codes; the last operator stays', async () => {
    const run = (args: string[], input = '') =>
      runToCompletion(
        resolve(repoRoot, 'bin/tollgate'),
        args,
        { DATABASE_URL: gw.databaseUrl, LOG_LEVEL: 'warn', TOLLGATE_BCRYPT_COST: '4' },
        undefined,
        input,
      );
    const help = await run(['admins', '--help']);
    expect(help.code).toBe(0);
    for (const word of ['add', 'list', 'role', 'remove', 'insufficient_role', 'last one cannot be removed', 'TOLLGATE_ADMIN_KEY'])
      expect(help.stdout).toContain(word);

    const added = await run(['admins', 'add', '--email', 'cli@ops.example.test', '--role', 'finance', '--admin', 'founder'], `${PASSWORD}\n`);
    expect(added.code).toBe(0);
    const cliUser = JSON.parse(added.stdout).user_id as string;
    const listed = await run(['admins', 'list', '--json']);
    expect(listed.code).toBe(0);
    const rows = JSON.parse(listed.stdout) as { user_id: string; email: string; role: string }[];
    expect(rows.find((r) => r.user_id === cliUser)).toMatchObject({ email: 'cli@ops.example.test', role: 'finance' });
    expect((await run(['admins', 'list'])).stdout).toMatch(/cli@ops\.example\.test\tfinance/);

    const role = await run(['admins', 'role', '--email', 'cli@ops.example.test', '--role', 'compliance', '--admin', 'founder']);
    expect(role.code).toBe(0);
    expect(await gw.gateway.identity.adminRole(cliUser)).toBe('compliance');
    const neither = await run(['admins', 'remove']);
    expect([neither.code, neither.stderr]).toEqual([1, expect.stringContaining('exactly one of --user <id> or --email <address>')]);
    const unknown = await run(['admins', 'remove', '--email', 'nobody@ops.example.test']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).not.toContain('nobody@ops.example.test');
    const last = await run(['admins', 'remove', '--user', operatorId, '--admin', 'founder']);
    expect([last.code, last.stderr]).toEqual([1, expect.stringContaining('last admin user with the operator role')]);
    const removed = await run(['admins', 'remove', '--user', cliUser, '--admin', 'founder']);
    expect(removed.code).toBe(0);
    expect(await gw.gateway.identity.adminRole(cliUser)).toBeNull();
    await until(
      async () =>
        (await pool.query(`SELECT 1 FROM audit_log WHERE action = 'admin_role.revoked' AND target_id = $1 AND actor_id = 'founder'`, [cliUser])).rowCount ===
          1 || undefined,
      { what: 'the CLI removal audited with the named admin' },
    );
  }, 300_000);

  it('the admin_roles table is a projection: rebuilt from the log it holds the same rows', async () => {
    await gw.gateway.projections.get('admin-roles')!.reached(await gw.gateway.store.latestPosition());
    const rowsOf = async (db: { query: Pool['query'] }) =>
      (await db.query<{ user_id: string; role: string; granted_at: Date }>('SELECT user_id, role, granted_at FROM admin_roles ORDER BY user_id')).rows;
    const live = await rowsOf(pool);
    expect(live.map((r) => [r.user_id === operatorId, r.role])).toContainEqual([true, 'operator']);
    expect(live.length).toBeGreaterThan(1);
    // Rebuilt inside a transaction that is rolled back, beside the running gateway.
    const db = await pool.connect();
    let rebuilt: Awaited<ReturnType<typeof rowsOf>>;
    try {
      await db.query('BEGIN');
      await adminRolesProjection.reset(db);
      let position = START;
      for (;;) {
        const batch = await gw.gateway.store.readAll(position, { maxCount: 500 });
        if (batch.length === 0) break;
        await adminRolesProjection.apply(db, batch);
        position = batch[batch.length - 1]!.position;
      }
      rebuilt = await rowsOf(db);
    } finally {
      await db.query('ROLLBACK');
      db.release();
    }
    expect(rebuilt).toEqual(live);
    expect(await rowsOf(pool)).toEqual(live);
  });
});
