import { Command } from 'commander';
import { Pool } from 'pg';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { DEFAULT_ACCOUNT_POLICY } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import { registerFinanceCommands } from '../../../src/cli/finance';
import { replayProjections } from '../../../src/finance/replay';
import { verifyFinance } from '../../../src/finance/verify';
import { createLedger } from '../../../src/ledger';
import { balancesProjection } from '../../../src/read-models/balances';
import { expiriesProjection } from '../../../src/read-models/expiries';
import { journalProjection } from '../../../src/read-models/journal';
import { runProjection } from '../../../src/read-models/runner';
import { usageProjection } from '../../../src/read-models/usage';
import { createTestDatabase } from '../../support/database';
import { writeSampleHistories } from './history';

/** Every table of the rebuilt projections, with the order that makes a snapshot comparable. */
const TABLES: Record<string, string> = {
  balances: 'account_id',
  usage_daily: 'account_id, day, key_id, model, operation',
  usage_open_reservations: 'account_id, request_id',
  journal_postings: 'tx, seq, line',
  expiries: 'kind, stream_id, item_id',
};
const PROJECTIONS = [balancesProjection, usageProjection, journalProjection, expiriesProjection];

// A safety net, not the verdict: writing and replaying 100,000 events takes about 90-110 s of a
// 2-core machine on its own, and more beside the rest of the suite.
jest.setTimeout(600_000);

describe('finance projections: live, rebuilt, verified', () => {
  let pool: Pool;
  let databaseUrl: string;
  const store = () => createPostgresEventStore<DomainEvent>(pool, domainEventCodec, { pageSize: 5_000 });
  let written = 0;

  async function snapshot(): Promise<Record<string, unknown[]>> {
    const out: Record<string, unknown[]> = {};
    for (const [table, order] of Object.entries(TABLES)) {
      out[table] = (await pool.query(`SELECT * FROM ${table} ORDER BY ${order}`)).rows;
    }
    return out;
  }

  beforeAll(async () => {
    databaseUrl = await createTestDatabase('fin');
    pool = new Pool({ connectionString: databaseUrl, max: 12 });
    await migrate(pool, migrations);
  });
  afterAll(() => pool.end());

  test('a 100,000-event log over 1,000 accounts: projections run live, then a replay reaches exactly the same rows', async () => {
    const s = store();
    const running = PROJECTIONS.map((p) => runProjection(pool, s, p, { batchSize: 5_000, onError: (e) => console.error(p.name, e) }));
    const ledger = createLedger(s, DEFAULT_ACCOUNT_POLICY);
    written = await writeSampleHistories(ledger, DEFAULT_ACCOUNT_POLICY, { accounts: 1_000, steps: 100, prefix: 'acct-' });
    expect(written).toBeGreaterThanOrEqual(100_000);

    // The last event written, not headPosition(): that stops below any transaction still open,
    // and the projections' own transactions are open much of the time.
    const { rows } = await pool.query<{ tx: string; seq: string }>(
      'SELECT transaction_id::text AS tx, global_seq::text AS seq FROM events ORDER BY transaction_id DESC, global_seq DESC LIMIT 1',
    );
    const last = { tx: BigInt(rows[0]!.tx), seq: BigInt(rows[0]!.seq) };
    await Promise.all(running.map((r) => r.reached(last, 60_000)));
    await Promise.all(running.map((r) => r.stop()));
    const live = await snapshot();
    expect(live['balances']).toHaveLength(1_000);
    expect(live['journal_postings']!.length).toBeGreaterThan(50_000);
    expect(live['usage_daily']!.length).toBeGreaterThan(1_000);

    const result = await replayProjections(pool, s, PROJECTIONS, { pageSize: 5_000 });
    expect(result.events).toBe(written);
    const rebuilt = await snapshot();
    for (const table of Object.keys(TABLES)) {
      expect({ table, rows: rebuilt[table] }).toEqual({ table, rows: live[table] });
    }
    await s.close();
  });

  test('verify passes on that log; after one balances row and one journal posting are tampered with, the CLI exits 1 naming both', async () => {
    const s = store();
    const clean = await verifyFinance(pool, s);
    expect(clean.differences).toEqual([]);
    expect(clean).toMatchObject({ ok: true, accounts: 1_000, events: written });
    await s.close();

    await pool.query(`UPDATE balances SET purchased = purchased + 1 WHERE account_id = 'acct-00042'`);
    await pool.query(
      `UPDATE journal_postings SET amount = amount - 5
        WHERE (tx, seq, line) = (SELECT tx, seq, line FROM journal_postings WHERE account_id = 'acct-00007' AND ledger_account = 'customer_purchased_credit' ORDER BY tx, seq, line LIMIT 1)`,
    );
    const out: string[] = [];
    const stdout = jest.spyOn(process.stdout, 'write').mockImplementation((chunk) => (out.push(String(chunk)), true));
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const previous = { url: process.env['DATABASE_URL'], exitCode: process.exitCode };
    process.env['DATABASE_URL'] = databaseUrl;
    let exitCode: typeof process.exitCode;
    try {
      const program = new Command('tollgate').exitOverride();
      registerFinanceCommands(program);
      await program.parseAsync(['node', 'tollgate', 'verify']);
      exitCode = process.exitCode;
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
      process.env['DATABASE_URL'] = previous.url;
      process.exitCode = previous.exitCode;
    }
    expect(exitCode).toBe(1);
    const lines = out
      .join('')
      .trim()
      .split('\n')
      .map((l) => l.split('\t').slice(0, 2).join(' '))
      .sort();
    expect(lines).toEqual(['balance acct-00042', 'journal_customer_balance acct-00007', 'trial_balance -', 'unbalanced_event acct-00007']);
  });
});
