import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'pg';
import pino from 'pino';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { MasterKey, openPersonalDataVault } from '../../../adapters/postgres/personal-data-vault';
import { accountStreamId } from '../../../domain/account';
import { loadConfig } from '../../../src/config';
import { startGateway } from '../../../src/gateway';
import { standardRoutes } from '../../../src/routes';
import { createTestDatabase } from '../../support/database';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TEST_MASTER_KEY } from '../../support/master-key';
import { compiledEntryPoint, repoRoot, runToCompletion } from '../../support/processes';

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];
const testKey = () => new MasterKey(Buffer.from(TEST_MASTER_KEY, 'base64'));
const meta = () => ({
  now: new Date().toISOString(),
  correlationId: randomUUID(),
  causationId: randomUUID(),
  actor: { kind: 'admin' as const, adminId: 'ada' },
});
const cli = (args: string[], env: Record<string, string | undefined>) =>
  runToCompletion(resolve(repoRoot, 'bin/tollgate'), args, { LOG_LEVEL: 'warn', ...env }, 60_000);

/** Every row of the tables a wrong key must not touch, as text. */
async function snapshot(pool: Pool): Promise<string> {
  const parts: string[] = [];
  for (const sql of [
    'SELECT t::text AS r FROM personal_data_keys t ORDER BY account_id',
    'SELECT t::text AS r FROM personal_data_master_key t',
    'SELECT t::text AS r FROM events t ORDER BY 1',
    'SELECT t::text AS r FROM checkpoints t ORDER BY 1',
  ]) {
    const { rows } = await pool.query<{ r: string }>(sql);
    parts.push(rows.map((row) => row.r).join('\n'));
  }
  return parts.join('\n--\n');
}

// Child processes (gateway, CLI) on a shared 2-core machine: generous safety nets, no verdict by the clock.
jest.setTimeout(180_000);

describe('personal-data keys under a master key', () => {
  let gw: TestGateway;
  let pool: Pool;
  const accounts = [0, 1, 2].map((i) => ({
    id: `acct_mk${i}_${randomUUID().slice(0, 6)}`,
    name: `Ottoline Vexley ${i}`,
    email: `ottoline.v${i}.7f3a@example.org`,
  }));

  beforeAll(async () => {
    gw = await startTestGateway({ models: MODELS });
    pool = new Pool({ connectionString: gw.databaseUrl, max: 2 });
    for (const account of accounts) {
      const result = await gw.gateway.ledger.accounts.handle(accountStreamId(account.id), {
        type: 'OpenAccount',
        data: {
          accountId: account.id,
          displayNameCiphertext: await gw.gateway.vault.encrypt(account.id, account.name),
          emailCiphertext: await gw.gateway.vault.encrypt(account.id, account.email),
        },
        metadata: meta(),
      });
      expect(result.ok).toBe(true);
    }
    // The running gateway's read models settle first, so a snapshot compares only what a wrong key could change.
    const head = await gw.gateway.store.latestPosition();
    for (const running of gw.gateway.projections.values()) await running.reached(head);
  });
  afterAll(async () => {
    await pool.end();
    await gw.stop();
  });

  const ciphertextsOf = async (accountId: string) => {
    const { events } = await gw.gateway.store.readStream(accountStreamId(accountId));
    const opened = events.find((e) => e.event.type === 'AccountOpened')!.event as { data: { displayNameCiphertext: string; emailCiphertext: string } };
    return opened.data;
  };

  test('the table holds no clear key: only keys wrapped under the master key, with its id', async () => {
    const { rows } = await pool.query<{ account_id: string; data_key: Buffer | null; wrapped_key: Buffer | null; master_key_id: string | null }>(
      'SELECT account_id, data_key, wrapped_key, master_key_id FROM personal_data_keys',
    );
    expect(rows.length).toBeGreaterThanOrEqual(accounts.length);
    const { rows: text } = await pool.query<{ r: string }>('SELECT t::text AS r FROM personal_data_keys t');
    const tableText = text.map((r) => r.r).join('\n');
    for (const row of rows) {
      expect(row.data_key).toBeNull();
      expect(row.master_key_id).toBe(testKey().id);
      const clear = testKey().unwrapAccountKey(row.account_id, row.wrapped_key!);
      expect(clear).toHaveLength(32);
      expect(tableText).not.toContain(clear.toString('hex'));
      expect(row.wrapped_key!.includes(clear)).toBe(false);
    }
    const { rows: recorded } = await pool.query('SELECT key_id FROM personal_data_master_key');
    expect(recorded).toEqual([{ key_id: testKey().id }]);
  });

  test('a wrong master key stops a gateway and the CLI with a clear line, and no row changes', async () => {
    const before = await snapshot(pool);
    const wrong = randomBytes(32).toString('base64');
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-mk-'));
    const config = loadConfig({
      DATABASE_URL: gw.databaseUrl,
      PORT: '0',
      TOLLGATE_DATA_DIR: dir,
      TOLLGATE_MASTER_KEY: wrong,
      TOLLGATE_MODELS_FILE: join(dir, 'none.json'),
    });
    await expect(startGateway(config, pino({ level: 'silent' }), standardRoutes)).rejects.toThrow(
      new RegExp(
        `^wrong master key: the database's personal-data keys are wrapped under master key ${testKey().id}, the configured one is [0-9a-f]{16}; nothing was changed$`,
      ),
    );
    const exported = await cli(['export', '--account', accounts[0]!.id], { DATABASE_URL: gw.databaseUrl, TOLLGATE_MASTER_KEY: wrong });
    expect(exported.code).toBe(1);
    expect(exported.stderr).toMatch(/^tollgate: wrong master key: .*nothing was changed\n$/);
    expect(exported.stdout).toBe('');
    const missing = await cli(['export', '--account', accounts[0]!.id], { DATABASE_URL: gw.databaseUrl, TOLLGATE_MASTER_KEY: undefined });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^tollgate: no master key: with DATABASE_URL set TOLLGATE_MASTER_KEY or TOLLGATE_MASTER_KEY_FILE/);
    const gatewayProcess = await runToCompletion(
      process.execPath,
      [compiledEntryPoint('src/main.ts')],
      {
        DATABASE_URL: gw.databaseUrl,
        PORT: '0',
        TOLLGATE_DATA_DIR: dir,
        TOLLGATE_MASTER_KEY: wrong,
        LOG_LEVEL: 'warn',
      },
      60_000,
    );
    expect(gatewayProcess.code).not.toBe(0);
    expect(gatewayProcess.stderr).toMatch(/tollgate: wrong master key: /);
    expect(await snapshot(pool)).toBe(before);
  });

  test('rotation (the real CLI) re-wraps every key under the new master key in one go; events untouched; data readable with the new key only', async () => {
    const { rows: eventsBefore } = await pool.query<{ r: string }>('SELECT t::text AS r FROM events t ORDER BY 1');
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-mk-'));
    const next = MasterKey.generate();
    const nextFile = join(dir, 'next-key');
    writeFileSync(nextFile, `${next.export()}\n`);

    // With a wrong current key: refused, non-zero, nothing changed.
    const before = await snapshot(pool);
    const refused = await cli(['keys', 'rotate-master', '--new-key-file', nextFile, '--no-progress'], {
      DATABASE_URL: gw.databaseUrl,
      TOLLGATE_MASTER_KEY: randomBytes(32).toString('hex'),
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^tollgate: wrong master key/);
    expect(await snapshot(pool)).toBe(before);

    const rotated = await cli(['keys', 'rotate-master', '--new-key-file', nextFile, '--no-progress'], { DATABASE_URL: gw.databaseUrl });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    const { rows: count } = await pool.query<{ n: string }>('SELECT count(*) AS n FROM personal_data_keys WHERE wrapped_key IS NOT NULL');
    expect(rotated.stdout).toBe(
      `re-wrapped ${count[0]!.n} account key(s) from master key ${testKey().id} to ${next.id}; restart every gateway with the new key\n`,
    );

    const { rows } = await pool.query<{ master_key_id: string | null }>('SELECT DISTINCT master_key_id FROM personal_data_keys WHERE wrapped_key IS NOT NULL');
    expect(rows).toEqual([{ master_key_id: next.id }]);
    const { rows: eventsAfter } = await pool.query<{ r: string }>('SELECT t::text AS r FROM events t ORDER BY 1');
    expect(eventsAfter).toEqual(eventsBefore);

    const { vault } = await openPersonalDataVault(pool, next);
    for (const account of accounts) {
      const c = await ciphertextsOf(account.id);
      expect(await vault.decrypt(account.id, c.displayNameCiphertext)).toBe(account.name);
      expect(await vault.decrypt(account.id, c.emailCiphertext)).toBe(account.email);
    }
    // The old key now stops start-up (and the instance still on it cannot open keys).
    await expect(openPersonalDataVault(pool, testKey())).rejects.toThrow(/^wrong master key/);
    await expect(gw.gateway.vault.decrypt(accounts[0]!.id, (await ciphertextsOf(accounts[0]!.id)).emailCiphertext)).rejects.toThrow(
      /restart it with the current master key/,
    );
    await expect(gw.gateway.vault.encrypt(`acct_new_${randomUUID().slice(0, 6)}`, 'x')).rejects.toThrow(/no longer the database's master key/);
  });
});

describe("an earlier version's clear keys", () => {
  test('are wrapped on the first start with a master key; the data stays readable and no clear key is left', async () => {
    const pool = new Pool({ connectionString: await createTestDatabase('mk'), max: 2 });
    try {
      await migrate(pool, migrations);
      const accountId = `acct_${randomUUID().slice(0, 8)}`;
      const clearKey = randomBytes(32);
      await pool.query('INSERT INTO personal_data_keys (account_id, data_key) VALUES ($1, $2)', [accountId, clearKey]);
      // A ciphertext as the earlier version wrote it, with that clear key.
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', clearKey, iv);
      cipher.setAAD(Buffer.from(accountId));
      const body = Buffer.concat([cipher.update('Wilhelmina Osterkamp', 'utf8'), cipher.final()]);
      const ciphertext = ['pd1', iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');

      const master = MasterKey.generate();
      const opened = await openPersonalDataVault(pool, master);
      expect(opened).toMatchObject({ wrapped: 1, firstUse: true });
      expect(await opened.vault.decrypt(accountId, ciphertext)).toBe('Wilhelmina Osterkamp');
      const { rows } = await pool.query('SELECT data_key, master_key_id FROM personal_data_keys');
      expect(rows).toEqual([{ data_key: null, master_key_id: master.id }]);
      const { rows: text } = await pool.query<{ r: string }>('SELECT t::text AS r FROM personal_data_keys t');
      expect(text[0]!.r).not.toContain(clearKey.toString('hex'));
      // A second start wraps nothing more.
      expect(await openPersonalDataVault(pool, master)).toMatchObject({ wrapped: 0, firstUse: false });
    } finally {
      await pool.end();
    }
  });
});
