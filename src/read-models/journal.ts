import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { postingsOf } from '../../projections/journal/journal';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

/** The journal in PostgreSQL: every posting of a batch in one multi-row insert, keyed by log position and line. */
export const journalProjection: SqlProjection<DomainEvent> = {
  name: 'journal',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const tx: string[] = [];
    const seq: string[] = [];
    const line: number[] = [];
    const accountId: string[] = [];
    const ledgerAccount: string[] = [];
    const amount: string[] = [];
    const eventType: string[] = [];
    const occurredAt: string[] = [];
    for (const recorded of events) {
      const postings = postingsOf(recorded.streamId, recorded.event);
      for (let i = 0; i < postings.length; i++) {
        const p = postings[i]!;
        tx.push(recorded.position.tx.toString());
        seq.push(recorded.position.seq.toString());
        line.push(i + 1);
        accountId.push(p.accountId);
        ledgerAccount.push(p.ledgerAccount);
        amount.push(p.amount.toString());
        eventType.push(recorded.event.type);
        occurredAt.push(recorded.event.metadata.occurredAt);
      }
    }
    if (tx.length === 0) return;
    await db.query({
      name: 'tollgate_journal_postings',
      text: `INSERT INTO journal_postings (tx, seq, line, account_id, ledger_account, amount, event_type, occurred_at)
       SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::timestamptz[])`,
      values: [tx, seq, line, accountId, ledgerAccount, amount, eventType, occurredAt],
    });
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE journal_postings');
  },
};
