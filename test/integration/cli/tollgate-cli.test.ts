import { resolve } from 'node:path';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { repoRoot, runToCompletion } from '../../support/processes';

/** bin/tollgate as a user runs it: a child process against a running gateway's admin API. */

let tg: TestGateway;

function tollgate(args: string[], env: Record<string, string | undefined> = {}) {
  return runToCompletion(resolve(repoRoot, 'bin/tollgate'), args, { TOLLGATE_URL: tg.url, TOLLGATE_ADMIN_KEY: tg.adminKey, ...env });
}

beforeAll(async () => {
  // No upstream is needed: the CLI only talks to the admin API.
  tg = await startTestGateway({ models: [{ id: 'cli-model', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 64, operations: ['chat'] }] });
});

afterAll(async () => {
  await tg?.stop();
});

test('accounts create, keys issue, credit grant', async () => {
  const created = await tollgate(['accounts', 'create', '--name', 'Grace Hopper', '--email', 'grace@example.org', '--json']);
  expect(created).toMatchObject({ code: 0, stderr: '' });
  const accountId = JSON.parse(created.stdout).account_id as string;
  expect(accountId).toMatch(/^acct_/);

  const issued = await tollgate(['keys', 'issue', accountId, '--name', 'ci', '--scopes', 'inference,account_read']);
  expect(issued.code).toBe(0);
  expect(issued.stdout).toMatch(/^key: tg_[A-Za-z0-9]{16}_\S{43}$/m);
  expect(issued.stdout).toContain('shown only this once');
  expect(issued.stdout).toMatch(/- account_read/);

  const granted = await tollgate(['credit', 'grant', accountId, '--usd', '2.50', '--expires', new Date(Date.now() + 86_400_000).toISOString(), '--reason', 'welcome']);
  expect(granted.code).toBe(0);
  expect(granted.stdout).toContain('promo_usd: 2.500000\n');

  const { body: shown } = await fetch(`${tg.url}/admin/accounts/${accountId}`, { headers: { authorization: `Bearer ${tg.adminKey}` } }).then(async (r) => ({ body: await r.json() }));
  expect(shown).toMatchObject({ account_id: accountId, display_name: 'Grace Hopper', email: 'grace@example.org', balance_usd: '2.500000' });
});

test('an API refusal prints one line with the API message and exits non-zero', async () => {
  const missing = await tollgate(['accounts', 'show', 'acct_nope']);
  expect(missing.code).toBe(1);
  expect(missing.stdout).toBe('');
  expect(missing.stderr).toBe('tollgate: No such account. (account_not_found)\n');

  const wrongKey = await tollgate(['models', 'list'], { TOLLGATE_ADMIN_KEY: 'not-the-admin-key-but-long-enough-0000000' });
  expect(wrongKey.code).toBe(1);
  expect(wrongKey.stderr.trim().split('\n')).toHaveLength(1);
  expect(wrongKey.stderr).toContain('(invalid_api_key)');
  expect(wrongKey.stderr).not.toContain('not-the-admin-key');
});

test('--help explains each command', async () => {
  const top = await tollgate(['--help']);
  expect(top.code).toBe(0);
  for (const group of ['accounts', 'keys', 'credit', 'models', 'prices']) expect(top.stdout).toContain(group);
  const grant = await tollgate(['credit', 'grant', '--help']);
  expect(grant.code).toBe(0);
  expect(grant.stdout).toContain('--expires <instant>');
  expect(grant.stdout).toContain('never refundable');
});

test('an unexpected failure prints its message (not only its class name), without the password, and exits non-zero', async () => {
  const refused = await runToCompletion(resolve(repoRoot, 'bin/tollgate'), ['verify'], {
    DATABASE_URL: 'postgres://finance:hunter2-secret@127.0.0.1:1/tollgate',
    TOLLGATE_DB_CONNECT_TIMEOUT_S: '2',
  });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/^tollgate: unexpected DatabaseUnreachableError: cannot reach PostgreSQL at postgres:\/\/finance:\*\*\*@127\.0\.0\.1:1\/tollgate: .*ECONNREFUSED/);
  expect(refused.stderr).not.toContain('hunter2');
});
