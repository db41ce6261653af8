import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { mountComplianceRoutes } from '../../../adapters/http/routes/compliance';
import { accountStreamId } from '../../../domain/account';
import { apiKeyStreamId } from '../../../domain/api-key';
import { usd } from '../../../domain/money';
import { PRICE_BOOK_STREAM_ID } from '../../../domain/price-book';
import { adminMetadata } from '../../../src/command-metadata';
import { verifyAuditChain } from '../../../src/compliance/audit-log';
import { runRetention } from '../../../src/compliance/retention';
import { lastRetentionRun } from '../../../src/compliance/retention-schedule';
import { standardRoutes } from '../../../src/routes';
import { compiledEntryPoint } from '../../support/processes';
import { until } from '../../support/wait';
import { startTestGateway, type TestGateway } from '../../support/gateway';

const exec = promisify(execFile);

/** The compliance CLI as an operator runs it: a separate process on the same database. */
async function cli(databaseUrl: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [compiledEntryPoint('src/cli/compliance/main.ts'), ...args], {
      cwd: process.cwd(),
      env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn' },
      timeout: 60_000, // a safety net for a hung child on a loaded machine, not a verdict
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout: string; stderr: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout, stderr: e.stderr };
  }
}
const cliVerifyChain = (databaseUrl: string) => cli(databaseUrl, ['audit', 'verify-chain']);

describe('audit log: actors, hash chain, tampering, purge', () => {
  let gw: TestGateway;
  const accountId = `acct_${randomUUID().slice(0, 8)}`;
  let entryOfSuspension = '';

  beforeAll(async () => {
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
      routes: [...standardRoutes, mountComplianceRoutes],
    });
    // The gateway's start-up retention run is an entry of its own: let it land before counting.
    await until(async () => (await lastRetentionRun(gw.gateway.ledger)) ?? undefined, { what: 'the start-up retention run' });
    const { ledger } = gw.gateway;
    const vault = gw.gateway.vault;
    const stream = accountStreamId(accountId);
    const ok = <T extends { ok: boolean }>(r: T) => expect(r.ok).toBe(true);
    ok(
      await ledger.accounts.handle(stream, {
        type: 'OpenAccount',
        data: {
          accountId,
          displayNameCiphertext: await vault.encrypt(accountId, 'Audit Person'),
          emailCiphertext: await vault.encrypt(accountId, 'audit@example.org'),
        },
        metadata: adminMetadata('ada'),
      }),
    );
    ok(
      await ledger.accounts.handle(stream, {
        type: 'CompleteTopUp',
        data: { paymentReference: 'manual:goodwill-1', amount: usd('25') },
        metadata: adminMetadata('ada', 'reason: outage credit'),
      }),
    );
    ok(
      await ledger.accounts.handle(stream, {
        type: 'CompleteTopUp',
        data: { paymentReference: 'pi_paid_1', amount: usd('10') },
        metadata: adminMetadata('stripe'),
      }),
    );
    ok(
      await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
        type: 'AddModel',
        data: { modelId: 'audited', operations: ['chat'], maxOutputTokens: 10n },
        metadata: adminMetadata('bob'),
      }),
    );
    ok(await ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, { type: 'RetireModel', data: { modelId: 'audited' }, metadata: adminMetadata('bob') }));
    // One act through the admin API: the acting admin key becomes the actor.
    const suspended = await fetch(`${gw.url}/admin/accounts/${accountId}/suspend`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ reason: 'payment_dispute' }),
    });
    expect(suspended.status).toBe(200);
    const issued = await gw.gateway.keys.issue({ accountId, name: 'ci key', scopes: ['inference'], metadata: adminMetadata('ada') });
    if (!issued.ok) throw new Error('key not issued');
    ok(await gw.gateway.keys.revoke(issued.key.keyId, 'rotated', adminMetadata('carol')));
    await gw.gateway.projections.get('audit')!.reached(await ledger.store.latestPosition());
    expect(await ledger.store.readStream(apiKeyStreamId(issued.key.keyId))).toMatchObject({ revision: 1n });
  });
  afterAll(() => gw.stop());

  const audit = async (query: string) => {
    const res = await fetch(`${gw.url}/admin/audit${query}`, { headers: { authorization: `Bearer ${gw.adminKey}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as { data: any[]; chain: any };
  };

  it('GET /admin/audit: each administrative act once, with its admin actor, target, reason and correlation id; paid top-ups are not there', async () => {
    const { data, chain } = await audit(`?target=${accountId}`);
    expect(data.map((e) => [e.action, e.actor])).toEqual([
      ['account.opened', { kind: 'admin', id: 'ada' }],
      ['credit.manual_top_up', { kind: 'admin', id: 'ada' }],
      ['account.suspended', { kind: 'admin', id: 'admin' }],
    ]);
    expect(data[1]).toMatchObject({ reason: 'outage credit', details: { amountUsd: '25.000000', paymentReference: 'manual:goodwill-1' } });
    expect(data[2]).toMatchObject({ target: { kind: 'account', id: accountId }, reason: 'payment_dispute' });
    expect(data[2].correlation_id).toEqual(expect.any(String));
    entryOfSuspension = data[2].entry_no;
    expect(chain).toMatchObject({ verified: true });
  });

  it('filters by actor and action; rejects a malformed filter with a 400', async () => {
    expect((await audit('?actor=admin:carol')).data.map((e) => e.action)).toEqual(['api_key.revoked']);
    expect((await audit('?action=model.retired')).data).toEqual([
      expect.objectContaining({ actor: { kind: 'admin', id: 'bob' }, target: { kind: 'model', id: 'audited' } }),
    ]);
    const bad = await fetch(`${gw.url}/admin/audit?from=yesterday`, { headers: { authorization: `Bearer ${gw.adminKey}` } });
    expect(bad.status).toBe(400);
  });

  it('the CLI: audit filtered, as JSON lines', async () => {
    const { code, stdout } = await cli(gw.databaseUrl, ['audit', '--actor', 'admin:carol', '--json']);
    expect(code).toBe(0);
    const lines = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual([expect.objectContaining({ action: 'api_key.revoked', actorId: 'carol', reason: 'rotated', targetKind: 'api_key' })]);
  }, 90_000);

  it('a customer key may not read the audit log', async () => {
    const issued = await gw.gateway.keys.issue({ accountId, name: 'reader', scopes: ['inference', 'account_read'], metadata: adminMetadata('ada') });
    if (!issued.ok) throw new Error('key not issued');
    const res = await fetch(`${gw.url}/admin/audit`, { headers: { authorization: `Bearer ${issued.key.secret}` } });
    expect(res.status).toBe(403);
  });

  it('tamper test: one audit row altered in SQL is named by verifyAuditChain, the CLI and the HTTP answer', async () => {
    const pool = gw.gateway.database.pool;
    await gw.gateway.projections.get('audit')!.reached(await gw.gateway.store.latestPosition());
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: true });
    expect((await cliVerifyChain(gw.databaseUrl)).code).toBe(0);

    await pool.query(`UPDATE audit_log SET reason = 'customer_request' WHERE entry_no = $1`, [entryOfSuspension]);
    const result = await verifyAuditChain(pool);
    expect(result).toMatchObject({ ok: false, broken: { entryNo: entryOfSuspension, problem: 'hash_mismatch' } });

    const cli = await cliVerifyChain(gw.databaseUrl);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`audit entry ${entryOfSuspension} `);
    expect(cli.stderr).toContain('was altered');

    expect((await audit('')).chain).toMatchObject({ verified: false, first_broken_entry_no: entryOfSuspension, problem: 'hash_mismatch' });

    await pool.query(`UPDATE audit_log SET reason = 'payment_dispute' WHERE entry_no = $1`, [entryOfSuspension]);
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: true });
  }, 60_000);

  it('an entry deleted from the end is found too (the recorded head no longer matches)', async () => {
    const pool = gw.gateway.database.pool;
    const { rows } = await pool.query(`SELECT * FROM audit_log ORDER BY entry_no DESC LIMIT 1`);
    await pool.query('DELETE FROM audit_log WHERE entry_no = $1', [rows[0].entry_no]);
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: false, broken: { entryNo: String(rows[0].entry_no), problem: 'head_mismatch' } });
    const columns = Object.keys(rows[0]);
    await pool.query(
      `INSERT INTO audit_log (${columns.join(', ')}) VALUES (${columns.map((_c, i) => `$${i + 1}`).join(', ')})`,
      columns.map((c) => rows[0][c]),
    );
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: true });
  });

  it('retention purges entries past 90 days; the chain stays verifiable from its anchor, and the run is itself audited', async () => {
    const { pool } = gw.gateway.database;
    const { rows: before } = await pool.query<{ n: number; last: string; hash: string }>(
      'SELECT count(*)::int AS n, max(entry_no)::text AS last, (SELECT hash FROM audit_log ORDER BY entry_no DESC LIMIT 1) AS hash FROM audit_log',
    );
    const report = await runRetention(
      { pool, ledger: gw.gateway.ledger, vault: gw.gateway.vault },
      { now: new Date(Date.now() + 91 * 86_400_000).toISOString() },
    );
    expect(report).toMatchObject({ auditEntriesPurged: before[0]!.n, auditAnchor: { entryNo: before[0]!.last, hash: before[0]!.hash } });
    await gw.gateway.projections.get('audit')!.reached(await gw.gateway.store.latestPosition());

    const { data, chain } = await audit('');
    expect(data.map((e) => [e.action, e.actor])).toEqual([['retention.run', { kind: 'system', id: 'retention' }]]);
    expect(data[0].details).toMatchObject({ auditEntriesPurged: String(before[0]!.n) });
    expect(chain).toMatchObject({ verified: true, entries: 1, anchor_entry_no: before[0]!.last });
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: true, entries: 1 });
    // The operator's check, the real CLI: the chain verifies from the anchor the run recorded.
    const verified = await cliVerifyChain(gw.databaseUrl);
    expect(verified).toMatchObject({ code: 0, stderr: '' });
    expect(verified.stdout).toContain(`audit chain intact: 1 entries from anchor ${before[0]!.last} to entry`);
  });

  it('entries cut from the head with the anchor moved along in SQL are found: the chain must start at an anchor a retention run recorded', async () => {
    const { pool } = gw.gateway.database;
    const { rows: more } = await pool.query<{ entry_no: string }>('SELECT entry_no::text AS entry_no FROM audit_log ORDER BY entry_no');
    // One more act, so that there is an entry after the one cut.
    const added = await gw.gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
      type: 'AddModel',
      data: { modelId: 'audited-later', operations: ['chat'], maxOutputTokens: 10n },
      metadata: adminMetadata('bob'),
    });
    expect(added.ok).toBe(true);
    await gw.gateway.projections.get('audit')!.reached(await gw.gateway.store.latestPosition());
    expect((await cliVerifyChain(gw.databaseUrl)).code).toBe(0);

    const head = more[0]!.entry_no;
    const { rows: cut } = await pool.query<{ hash: string }>('SELECT hash FROM audit_log WHERE entry_no = $1', [head]);
    await pool.query('DELETE FROM audit_log WHERE entry_no = $1', [head]);
    await pool.query('UPDATE audit_chain SET anchor_entry_no = $1, anchor_hash = $2', [head, cut[0]!.hash]);
    // Links alone still hold from the moved anchor...
    expect(await verifyAuditChain(pool)).toMatchObject({ ok: true });
    // ...but no retention run recorded that anchor: the CLI and the HTTP answer say so.
    const cli = await cliVerifyChain(gw.databaseUrl);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`the audit chain starts after entry ${head}, an anchor no retention run recorded`);
    expect((await audit('')).chain).toMatchObject({ verified: false, problem: 'anchor_not_recorded' });
  }, 60_000);
});

describe('audit log past ten entries', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    });
    // The gateway's start-up retention run is an entry of its own: let it land first.
    await until(async () => (await lastRetentionRun(gw.gateway.ledger)) ?? undefined, { what: 'the start-up retention run' });
    for (let i = 1; i <= 11; i++) {
      const added = await gw.gateway.ledger.priceBook.handle(PRICE_BOOK_STREAM_ID, {
        type: 'AddModel',
        data: { modelId: `model-${i}`, operations: ['chat'], maxOutputTokens: 10n },
        metadata: adminMetadata('ada'),
      });
      expect(added.ok).toBe(true);
    }
    await gw.gateway.projections.get('audit')!.reached(await gw.gateway.ledger.store.latestPosition());
  });
  afterAll(() => gw.stop());

  // entry_no is selected as text: ordering by the bare name sorted "10" before "2" and broke the chain.
  it('entries are ordered by number, so the chain verifies and the log reads in order', async () => {
    const verified = await verifyAuditChain(gw.gateway.database.pool);
    expect(verified).toMatchObject({ ok: true, entries: 13 });
    const res = await fetch(`${gw.url}/admin/audit`, { headers: { authorization: `Bearer ${gw.adminKey}` } });
    const { data } = (await res.json()) as { data: { entry_no: string }[] };
    expect(data.map((e) => e.entry_no)).toEqual(Array.from({ length: 13 }, (_, i) => String(i + 1)));
  });
});
