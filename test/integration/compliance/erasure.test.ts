import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { PersonalDataVault } from '../../../src/ports/personal-data-vault';
import { accountStreamId, balanceOf } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { addMs } from '../../../domain/time';
import { adminMetadata } from '../../../src/command-metadata';
import { exportAccount } from '../../../src/compliance/export';
import { correctPersonalData, currentPersonalDataCiphertexts } from '../../../src/compliance/personal-data';
import { retentionPlan, runRetention } from '../../../src/compliance/retention';
import { verifyFinance } from '../../../src/finance/verify';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { compiledEntryPoint } from '../../support/processes';

const exec = promisify(execFile);
const DAY = 86_400_000;

describe('erasure: crypto-shredding of a closed account by the retention run', () => {
  let gw: TestGateway;
  let vault: PersonalDataVault;
  const accountId = `acct_${randomUUID().slice(0, 8)}`;
  const stream = accountStreamId(accountId);
  // Unusual strings, so a match anywhere can only be this person's data.
  const NAME = 'Philippa Quarrington-Zell';
  const EMAIL = 'philippa.qz.4b1e@example.org';
  const NEW_EMAIL = 'p.quarrington.9d7c@example.net';
  const readable = [NAME, EMAIL, NEW_EMAIL, 'Quarrington', 'philippa.qz', 'p.quarrington'];

  const caughtUp = async () => {
    const head = await gw.gateway.store.latestPosition();
    for (const p of gw.gateway.projections.values()) await p.reached(head);
  };

  beforeAll(async () => {
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    });
    vault = gw.gateway.vault;
    const { ledger } = gw.gateway;
    const handle = async (command: Parameters<typeof ledger.accounts.handle>[1]) => {
      const result = await ledger.accounts.handle(stream, command);
      if (!result.ok) throw new Error(`refused: ${result.error.error}`);
      return result;
    };
    await handle({
      type: 'OpenAccount',
      data: { accountId, displayNameCiphertext: await vault.encrypt(accountId, NAME), emailCiphertext: await vault.encrypt(accountId, EMAIL) },
      metadata: adminMetadata('ada'),
    });
    await handle({ type: 'CompleteTopUp', data: { paymentReference: 'pi_1', amount: usd('20') }, metadata: adminMetadata('stripe') });
    await handle({
      type: 'PlaceReservation',
      data: { requestId: 'req_1', keyId: 'k', model: 'm', operation: 'chat', amount: usd('1'), priceVersion: 1 },
      metadata: adminMetadata('gw'),
    });
    await handle({
      type: 'SettleReservation',
      data: {
        requestId: 'req_1',
        usage: { inputTokens: 1_000n, outputTokens: 2_000n, estimated: false },
        price: { version: 1, inputPerMillion: usd('1'), outputPerMillion: usd('2') },
        outcome: 'completed',
      },
      metadata: adminMetadata('gw'),
    });
    await caughtUp();
  });
  afterAll(() => gw.stop());

  it('a correction records new ciphertexts, audited with the admin who made it', async () => {
    const result = await correctPersonalData({ ledger: gw.gateway.ledger, vault }, { accountId, email: NEW_EMAIL, metadata: adminMetadata('dpo-1') });
    expect(result.ok).toBe(true);
    const { events } = await gw.gateway.store.readStream(stream);
    const current = currentPersonalDataCiphertexts(events.map((e) => e.event))!;
    expect(await vault.decrypt(accountId, current.emailCiphertext)).toBe(NEW_EMAIL);
    expect(await vault.decrypt(accountId, current.displayNameCiphertext)).toBe(NAME);
    await caughtUp();
    const { rows } = await gw.gateway.database.pool.query(
      `SELECT actor_kind, actor_id, details FROM audit_log WHERE action = 'personal_data.corrected' AND target_id = $1`,
      [accountId],
    );
    expect(rows).toEqual([{ actor_kind: 'admin', actor_id: 'dpo-1', details: { fields: ['email'] } }]);
  });

  it('export: everything held, decrypted while the key exists, no key hashes', async () => {
    const issued = await gw.gateway.keys.issue({ accountId, name: 'laptop', scopes: ['inference'], metadata: adminMetadata('ada') });
    expect(issued.ok).toBe(true);
    await caughtUp();
    const exported = await exportAccount({ pool: gw.gateway.database.pool, store: gw.gateway.store, vault }, accountId, { metadata: adminMetadata('dpo-1') });
    expect(exported).toMatchObject({ account_id: accountId, status: 'open', personal_data: { display_name: NAME, email: NEW_EMAIL, erased: false } });
    expect(exported!.keys).toEqual([expect.objectContaining({ name: 'laptop', scopes: ['inference'], status: 'active' })]);
    expect(exported!.ledger_events.map((e) => e.type)).toEqual([
      'AccountOpened',
      'TopUpCompleted',
      'ReservationPlaced',
      'ReservationSettled',
      'PersonalDataCorrected',
    ]);
    expect(exported!.usage.length).toBeGreaterThan(0);
    const text = JSON.stringify(exported);
    expect(text).not.toContain('$2b$');
    expect(text).not.toContain('pd1.');
  });

  it('the export command prints the same as JSON', async () => {
    const { stdout } = await exec(process.execPath, [compiledEntryPoint('src/cli/compliance/main.ts'), 'export', '--account', accountId], {
      env: { ...process.env, DATABASE_URL: gw.databaseUrl, LOG_LEVEL: 'warn' },
      timeout: 60_000, // a safety net for a hung child on a loaded machine, not a verdict
    });
    expect(JSON.parse(stdout)).toMatchObject({ account_id: accountId, personal_data: { email: NEW_EMAIL } });
  }, 90_000);

  it('after closure and a retention run past 30 days, the name and email are nowhere readable, and the money is intact', async () => {
    const { ledger, database } = gw.gateway;
    const pool = database.pool;
    const closed = await ledger.accounts.handle(stream, { type: 'CloseAccount', data: { reason: 'customer_request' }, metadata: adminMetadata('ada') });
    expect(closed.ok).toBe(true);
    const closedAt = (await ledger.store.readStream(stream)).events.at(-1)!.event.metadata.occurredAt;
    const balanceBefore = balanceOf((await ledger.accounts.load(stream)).state);
    const { rows: balanceRowBefore } = await pool.query('SELECT purchased, promo, reserved FROM balances WHERE account_id = $1', [accountId]);
    const { rows: journalBefore } = await pool.query('SELECT * FROM journal_postings WHERE account_id = $1 ORDER BY tx, seq, line', [accountId]);
    await caughtUp();

    // Ten days after closure: in the plan with its date, not due, and a run erases nothing.
    const tenDays = addMs(closedAt, 10 * DAY);
    expect(await retentionPlan(pool, { now: tenDays })).toContainEqual({
      category: 'personal_data',
      subject: `account ${accountId}`,
      count: 1,
      expiresAt: addMs(closedAt, 30 * DAY),
      due: false,
      action: 'erase_personal_data',
    });
    expect((await runRetention({ pool, ledger, vault }, { now: tenDays })).personalDataErased).toEqual([]);
    expect(
      await vault.decrypt(accountId, currentPersonalDataCiphertexts((await ledger.store.readStream(stream)).events.map((e) => e.event))!.emailCiphertext),
    ).toBe(NEW_EMAIL);

    const report = await runRetention({ pool, ledger, vault }, { now: addMs(closedAt, 31 * DAY) });
    expect(report.personalDataErased).toEqual([accountId]);
    await caughtUp();

    // Not in any table's text.
    const { rows: tables } = await pool.query<{ name: string }>(
      `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS name FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`,
    );
    expect(tables.length).toBeGreaterThan(5);
    for (const { name } of tables) {
      const { rows } = await pool.query<{ row: string }>(`SELECT t::text AS row FROM ${name} t`);
      const text = rows
        .map((r) => r.row)
        .join('\n')
        .toLowerCase();
      for (const needle of readable) expect({ table: name, found: text.includes(needle.toLowerCase()) }).toEqual({ table: name, found: false });
    }
    // Not in the gateway's log either.
    for (const needle of readable) expect(gw.logLines.join('\n')).not.toContain(needle);
    // Not decryptable: the key is gone, every ciphertext the log holds is noise.
    const { rows: keys } = await pool.query('SELECT data_key, wrapped_key, master_key_id, destroyed_at FROM personal_data_keys WHERE account_id = $1', [
      accountId,
    ]);
    expect(keys).toEqual([{ data_key: null, wrapped_key: null, master_key_id: null, destroyed_at: expect.any(Date) }]);
    const { events } = await ledger.store.readStream(stream);
    const ciphertexts = events.flatMap((e) =>
      e.event.type === 'AccountOpened'
        ? [e.event.data.displayNameCiphertext, e.event.data.emailCiphertext]
        : e.event.type === 'PersonalDataCorrected'
          ? [e.event.data.emailCiphertext!]
          : [],
    );
    expect(ciphertexts).toHaveLength(3);
    for (const c of ciphertexts) expect(await vault.decrypt(accountId, c)).toBeNull();
    await expect(vault.encrypt(accountId, 'anything')).rejects.toThrow(/erased/);
    const exported = await exportAccount({ pool, store: ledger.store, vault }, accountId, { metadata: adminMetadata('dpo-1') });
    expect(exported!.personal_data).toEqual({ display_name: null, email: null, erased: true });

    // The erasure is history, by the retention process; the run recorded it.
    expect(events.at(-1)!.event).toMatchObject({ type: 'PersonalDataErased', metadata: { actor: { kind: 'system', process: 'retention' } } });
    const { events: runs } = await ledger.store.readStream('retention');
    expect(runs.at(-1)!.event).toMatchObject({ type: 'RetentionRunCompleted', data: { personalDataErased: [accountId] } });

    // The money is untouched: balance, projection row and journal as before, and verify passes.
    expect(balanceOf((await ledger.accounts.load(stream)).state)).toBe(balanceBefore);
    expect(balanceBefore).toBe(usd('20') - usd('0.005'));
    expect((await pool.query('SELECT purchased, promo, reserved FROM balances WHERE account_id = $1', [accountId])).rows).toEqual(balanceRowBefore);
    expect((await pool.query('SELECT * FROM journal_postings WHERE account_id = $1 ORDER BY tx, seq, line', [accountId])).rows).toEqual(journalBefore);
    const verified = await verifyFinance(pool, ledger.store);
    expect(verified.differences).toEqual([]);

    // A second run finds nothing more to erase.
    expect((await runRetention({ pool, ledger, vault }, { now: addMs(closedAt, 32 * DAY) })).personalDataErased).toEqual([]);
  });
});
