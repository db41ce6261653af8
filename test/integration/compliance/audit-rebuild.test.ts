import { randomUUID } from 'node:crypto';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { createPool } from '../../../adapters/postgres/pool';
import { accountStreamId, DEFAULT_ACCOUNT_POLICY } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import { usd } from '../../../domain/money';
import { adminMetadata } from '../../../src/command-metadata';
import { verifyAuditChain } from '../../../src/compliance/audit-log';
import { catchUpProjection } from '../../../src/compliance/catch-up';
import { runRetention } from '../../../src/compliance/retention';
import { createLedger } from '../../../src/ledger';
import { auditProjection } from '../../../src/read-models/audit';
import { retentionProjection } from '../../../src/read-models/retention';
import { createTestDatabase } from '../../support/database';
import { testVault } from '../../support/master-key';

describe('audit and retention projections: a rebuild reaches the rows the live log had, purges included', () => {
  it('drop, replay, compare', async () => {
    const pool = createPool({ connectionString: await createTestDatabase('audit'), max: 4, connectTimeoutMs: 5_000 });
    const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec, { notify: false });
    try {
      await migrate(pool, migrations);
      const ledger = createLedger(store, DEFAULT_ACCOUNT_POLICY);
      const vault = await testVault(pool);
      const catchUp = async () => {
        await catchUpProjection(pool, store, auditProjection);
        await catchUpProjection(pool, store, retentionProjection);
      };
      for (let i = 0; i < 3; i++) {
        const id = `acct_${randomUUID().slice(0, 8)}`;
        await ledger.accounts.handle(accountStreamId(id), {
          type: 'OpenAccount',
          data: { accountId: id, displayNameCiphertext: 'x', emailCiphertext: 'x' },
          metadata: adminMetadata('ada'),
        });
        await ledger.accounts.handle(accountStreamId(id), {
          type: 'CompleteTopUp',
          data: { paymentReference: `manual:${i}`, amount: usd('10') },
          metadata: adminMetadata('ada'),
        });
        await ledger.accounts.handle(accountStreamId(id), { type: 'CloseAccount', data: { reason: 'erasure_request' }, metadata: adminMetadata('ada') });
      }
      await catchUp();
      // Everything so far is purged and erased; then a few more acts after the anchor.
      const report = await runRetention({ pool, ledger, vault }, { now: new Date(Date.now() + 100 * 86_400_000).toISOString() });
      expect(report.auditEntriesPurged).toBe(9); // opened, manual top-up, closed: three each
      expect(report.personalDataErased).toHaveLength(3);
      await catchUp();
      const later = `acct_${randomUUID().slice(0, 8)}`;
      await ledger.accounts.handle(accountStreamId(later), {
        type: 'OpenAccount',
        data: { accountId: later, displayNameCiphertext: 'x', emailCiphertext: 'x' },
        metadata: adminMetadata('bob'),
      });
      await catchUp();

      const snapshot = async () => ({
        audit: (await pool.query('SELECT * FROM audit_log ORDER BY entry_no')).rows,
        chain: (await pool.query('SELECT * FROM audit_chain')).rows,
        retention: (await pool.query('SELECT * FROM personal_data_retention ORDER BY account_id')).rows,
      });
      const live = await snapshot();
      expect(live.audit.map((r) => r.action)).toEqual([
        'personal_data.erased',
        'personal_data.erased',
        'personal_data.erased',
        'retention.run',
        'account.opened',
      ]);
      expect(await verifyAuditChain(pool)).toMatchObject({ ok: true, entries: 5 });

      const client = await pool.connect();
      try {
        await auditProjection.reset(client);
        await retentionProjection.reset(client);
        await client.query(`DELETE FROM checkpoints WHERE name IN ('audit', 'retention')`);
      } finally {
        client.release();
      }
      expect((await snapshot()).audit).toEqual([]);
      await catchUp();
      expect(await snapshot()).toEqual(live);
      expect(await verifyAuditChain(pool)).toMatchObject({ ok: true, entries: 5 });
    } finally {
      await store.close();
      await pool.end();
    }
  });
});
