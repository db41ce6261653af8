import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { accountStreamId } from '../../../domain/account';
import { systemMetadata } from '../../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { repoRoot, runToCompletion } from '../../support/processes';

/**
 * bin/tollgate as a user runs it: a child process against a running gateway's admin API. It runs
 * the compiled CLI (dist/, built by the test run's global setup when stale), so a broken build
 * fails here.
 */

let tg: TestGateway;

function tollgate(args: string[], env: Record<string, string | undefined> = {}) {
  return runToCompletion(resolve(repoRoot, 'bin/tollgate'), args, { TOLLGATE_URL: tg.url, TOLLGATE_ADMIN_KEY: tg.adminKey, ...env });
}

beforeAll(async () => {
  // No upstream is needed: the CLI only talks to the admin API.
  tg = await startTestGateway({
    models: [{ id: 'cli-model', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 64, operations: ['chat'] }],
  });
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

  const granted = await tollgate([
    'credit',
    'grant',
    accountId,
    '--usd',
    '2.50',
    '--expires',
    new Date(Date.now() + 86_400_000).toISOString(),
    '--reason',
    'welcome',
  ]);
  expect(granted.code).toBe(0);
  expect(granted.stdout).toContain('promo_usd: 2.500000\n');

  const { body: shown } = await fetch(`${tg.url}/admin/accounts/${accountId}`, { headers: { authorization: `Bearer ${tg.adminKey}` } }).then(async (r) => ({
    body: await r.json(),
  }));
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

test('prices set takes per-second and per-character prices for speech models', async () => {
  expect((await tollgate(['models', 'add', 'cli-whisper', '--operations', 'transcription,translation', '--max-output-tokens', '448'])).code).toBe(0);
  const perSecond = await tollgate(['prices', 'set', 'cli-whisper', '--operation', 'transcription', '--usd-per-audio-second', '0.0001', '--json']);
  expect(perSecond.code).toBe(0);
  expect(JSON.parse(perSecond.stdout)).toMatchObject({
    operation: 'transcription',
    input_usd_per_million: '0.000000',
    output_usd_per_million: '0.000000',
    usd_per_audio_second: '0.000100',
  });
  expect((await tollgate(['models', 'add', 'cli-tts', '--operations', 'speech', '--max-output-tokens', '1'])).code).toBe(0);
  const perCharacter = await tollgate(['prices', 'set', 'cli-tts', '--operation', 'speech', '--usd-per-million-characters', '15', '--json']);
  expect(JSON.parse(perCharacter.stdout)).toMatchObject({ operation: 'speech', usd_per_million_characters: '15.000000' });
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
  expect(refused.stderr).toMatch(
    /^tollgate: unexpected DatabaseUnreachableError: cannot reach PostgreSQL at postgres:\/\/finance:\*\*\*@127\.0\.0\.1:1\/tollgate: .*ECONNREFUSED/,
  );
  expect(refused.stderr).not.toContain('hunter2');
});

test('--version prints the version in package.json', async () => {
  const { version } = JSON.parse(readFileSync(resolve(repoRoot, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const answer = await tollgate([flag], { TOLLGATE_ADMIN_KEY: undefined });
    expect(answer).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
  }
});

test('accounts list: a table, JSON with --json, pages with --limit and --starting-after, every page with --all, search with --search', async () => {
  const marker = `list${Date.now()}`;
  const ids: string[] = [];
  for (const name of ['Ada', 'Barbara', 'Charles']) {
    const created = await tollgate(['accounts', 'create', '--name', `${name} ${marker}`, '--email', `${name.toLowerCase()}@${marker}.example.org`, '--json']);
    expect(created.code).toBe(0);
    ids.push(JSON.parse(created.stdout).account_id as string);
  }
  const newestFirst = [...ids].reverse();

  // The reads are independent: run them side by side.
  const [table, first, firstTable, second, all, none] = await Promise.all([
    tollgate(['accounts', 'list', '--search', marker]),
    tollgate(['accounts', 'list', '--search', marker, '--limit', '2', '--json']),
    tollgate(['accounts', 'list', '--search', marker, '--limit', '2']),
    tollgate(['accounts', 'list', '--search', marker, '--limit', '2', '--starting-after', newestFirst[1]!, '--json']),
    tollgate(['accounts', 'list', '--search', marker, '--limit', '1', '--all', '--json']),
    tollgate(['accounts', 'list', '--search', `${marker}-nobody`]),
  ]);

  expect(table).toMatchObject({ code: 0, stderr: '' });
  const lines = table.stdout.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^ACCOUNT\s+STATUS\s+NAME\s+EMAIL\s+BALANCE_USD\s+AVAILABLE_USD$/);
  expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(newestFirst);
  expect(lines[1]).toMatch(new RegExp(`^${ids[2]}\\s+open\\s+Charles ${marker}\\s+charles@${marker}\\.example\\.org\\s+0\\.000000\\s+0\\.000000$`));

  expect(first.code).toBe(0);
  const firstPage = JSON.parse(first.stdout) as { data: { account_id: string; email: string }[]; has_more: boolean };
  expect(firstPage.data.map((a) => a.account_id)).toEqual(newestFirst.slice(0, 2));
  expect(firstPage.has_more).toBe(true);

  // The table says on stderr how to get the next page; stdout stays the table.
  expect(firstTable.stderr).toBe(`more accounts follow: tollgate accounts list --starting-after ${newestFirst[1]}\n`);

  const secondPage = JSON.parse(second.stdout) as { data: { account_id: string }[]; has_more: boolean };
  expect(secondPage).toMatchObject({ has_more: false });
  expect(secondPage.data.map((a) => a.account_id)).toEqual(newestFirst.slice(2));

  const allPages = JSON.parse(all.stdout) as { data: { account_id: string }[]; has_more: boolean };
  expect(allPages.data.map((a) => a.account_id)).toEqual(newestFirst);
  expect(allPages.has_more).toBe(false);

  expect(none.stdout.trimEnd().split('\n')).toHaveLength(1);
}, 120_000); // a safety net: ten CLI processes on a busy machine

test('accounts list: a bad --limit, a missing admin key or an unreachable gateway exit 1 with one line', async () => {
  const badLimit = await tollgate(['accounts', 'list', '--limit', '500']);
  expect(badLimit.code).toBe(1);
  expect(badLimit.stderr).toContain('expected an integer from 1 to 200');

  const noKey = await tollgate(['accounts', 'list'], { TOLLGATE_ADMIN_KEY: undefined });
  expect(noKey).toMatchObject({ code: 1, stdout: '', stderr: 'tollgate: no admin key: set TOLLGATE_ADMIN_KEY or pass --admin-key\n' });

  const unreachable = await tollgate(['accounts', 'list', '--url', 'http://127.0.0.1:9']);
  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toMatch(/^tollgate: cannot reach the gateway at http:\/\/127\.0\.0\.1:9 \(\w+\)\n$/);
}, 60_000);

test("accounts claim-refund and forfeit-unclaimed: a closed account's credit is claimed for its customer; forfeiting it is refused within 360 days", async () => {
  const created = await tollgate(['accounts', 'create', '--name', 'Claire', '--email', 'claire@example.org', '--json']);
  const accountId = JSON.parse(created.stdout).account_id as string;
  expect((await tollgate(['credit', 'top-up', accountId, '--usd', '30', '--reference', 'SEPA-claire', '--reason', 'bank transfer'])).code).toBe(0);
  const closed = await tg.gateway.ledger.accounts.handle(accountStreamId(accountId), {
    type: 'CloseAccount',
    data: { reason: 'customer_request' },
    metadata: systemMetadata('test'),
  });
  expect(closed.ok).toBe(true);

  const claimed = await tollgate(['accounts', 'claim-refund', accountId, '--reason', 'asked by email', '--amount-usd', '12', '--json']);
  expect(claimed.code).toBe(0);
  // No Stripe on this gateway: all of it is outstanding, for a payout.
  expect(JSON.parse(claimed.stdout)).toMatchObject({ claimed_usd: '12.000000', refund: null, outstanding_usd: '12.000000' });
  const early = await tollgate(['accounts', 'forfeit-unclaimed', accountId, '--reason', 'tidy up']);
  expect(early.code).not.toBe(0);
  expect(early.stderr).toContain('claim_period_not_over');
  const missing = await tollgate(['accounts', 'forfeit-unclaimed', accountId]);
  expect(missing.code).not.toBe(0);
  expect(missing.stderr).toContain('--reason');
});
