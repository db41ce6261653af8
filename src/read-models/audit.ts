import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { AUDIT_ENTRY_FIELDS, auditFactOf, chainBatch, GENESIS_HASH, type ChainedAuditEntry, type ChainHead } from '../../projections/audit/audit';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

/**
 * The audit log in PostgreSQL. The chain's head is read and locked inside the runner's
 * transaction, so entries are numbered and hashed in log order with no gap, and a retention
 * purge (which locks the same row) never interleaves with a batch.
 */
export const auditProjection: SqlProjection<DomainEvent> = {
  name: 'audit',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    // Most batches are reservations and settlements, which are not audited: they neither read
    // nor lock the chain (one statement fewer per batch, and no wait on a retention purge).
    if (!events.some(({ streamId, event }) => auditFactOf(streamId, event) !== null || event.type === 'RetentionRunCompleted')) return;
    const { rows } = await db.query<{ head_entry_no: string; head_hash: string }>(
      'SELECT head_entry_no::text AS head_entry_no, head_hash FROM audit_chain FOR UPDATE',
    );
    const current = rows[0];
    if (!current) throw new Error('audit_chain has no row: migration 0020_audit_log was not applied');
    const { entries, head } = chainBatch({ entryNo: BigInt(current.head_entry_no), hash: current.head_hash }, events);
    await insertEntries(db, entries, head);
    // A retention run's purge is history too: applied again here, a rebuild ends with the same
    // entries and the same anchor as the live log had (the run itself purged them at once).
    let anchor: { entryNo: bigint; hash: string } | null = null;
    for (const { event } of events) {
      if (event.type !== 'RetentionRunCompleted' || event.data.auditAnchor === null) continue;
      if (!anchor || event.data.auditAnchor.entryNo > anchor.entryNo) anchor = event.data.auditAnchor;
    }
    if (anchor) {
      await db.query('DELETE FROM audit_log WHERE entry_no <= $1', [anchor.entryNo.toString()]);
      await db.query('UPDATE audit_chain SET anchor_entry_no = $1, anchor_hash = $2 WHERE anchor_entry_no < $1', [anchor.entryNo.toString(), anchor.hash]);
    }
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE audit_log');
    await db.query('UPDATE audit_chain SET anchor_entry_no = 0, anchor_hash = $1, head_entry_no = 0, head_hash = $1', [GENESIS_HASH]);
  },
};

async function insertEntries(db: PoolClient, entries: readonly ChainedAuditEntry[], head: ChainHead): Promise<void> {
  if (entries.length === 0) return;
  const stored = [
    ...AUDIT_ENTRY_FIELDS,
    { field: 'prevHash', column: 'prev_hash', sqlType: 'text' },
    { field: 'hash', column: 'hash', sqlType: 'text' },
  ] as const;
  await db.query(
    `INSERT INTO audit_log (${stored.map((f) => f.column).join(', ')})
     SELECT * FROM unnest(${stored.map((f, i) => `$${i + 1}::${f.sqlType}[]`).join(', ')})`,
    stored.map(({ field, sqlType }) => entries.map((e) => (sqlType === 'jsonb' ? JSON.stringify(e[field]) : e[field]))),
  );
  await db.query('UPDATE audit_chain SET head_entry_no = $1, head_hash = $2', [head.entryNo.toString(), head.hash]);
}
