import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { personalDataChange } from '../../projections/retention/retention';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

interface Pending {
  openedAt: string | null;
  closedAt: string | null;
  closureReason: string | null;
  eraseDueAt: string | null;
  erasedAt: string | null;
}

/** The personal-data schedule in PostgreSQL: per account, when its data must be erased and whether it was. */
export const retentionProjection: SqlProjection<DomainEvent> = {
  name: 'retention',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    // One upsert per batch: changes to the same account merge in log order first.
    const pending = new Map<string, Pending>();
    for (const recorded of events) {
      const change = personalDataChange(recorded.streamId, recorded.event);
      if (!change) continue;
      const row = pending.get(change.accountId) ?? { openedAt: null, closedAt: null, closureReason: null, eraseDueAt: null, erasedAt: null };
      if (change.op === 'opened') row.openedAt = change.openedAt;
      else if (change.op === 'closed') Object.assign(row, { closedAt: change.closedAt, closureReason: change.reason, eraseDueAt: change.eraseDueAt });
      else row.erasedAt = change.erasedAt;
      pending.set(change.accountId, row);
    }
    if (pending.size === 0) return;
    const ids = [...pending.keys()];
    const rows = [...pending.values()];
    await db.query(
      `INSERT INTO personal_data_retention AS t (account_id, opened_at, closed_at, closure_reason, erase_due_at, erased_at)
       SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[], $5::timestamptz[], $6::timestamptz[])
       ON CONFLICT (account_id) DO UPDATE SET
         opened_at = COALESCE(excluded.opened_at, t.opened_at),
         closed_at = COALESCE(excluded.closed_at, t.closed_at),
         closure_reason = COALESCE(excluded.closure_reason, t.closure_reason),
         erase_due_at = COALESCE(excluded.erase_due_at, t.erase_due_at),
         erased_at = COALESCE(excluded.erased_at, t.erased_at)`,
      [
        ids,
        rows.map((r) => r.openedAt),
        rows.map((r) => r.closedAt),
        rows.map((r) => r.closureReason),
        rows.map((r) => r.eraseDueAt),
        rows.map((r) => r.erasedAt),
      ],
    );
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE personal_data_retention');
  },
};
