import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { expiryChange, type ExpiryChange } from '../../projections/expiries/expiries';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

/** The expiries read model in PostgreSQL: one row per reservation or promo grant still to end. */
export const expiriesProjection: SqlProjection<DomainEvent> = {
  name: 'expiries',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    // Changes are applied in log order; a row added and removed in one batch never lands.
    const due = new Map<string, ExpiryChange & { op: 'due' }>();
    const done: (ExpiryChange & { op: 'done' })[] = [];
    for (const recorded of events) {
      const change = expiryChange(recorded.streamId, recorded.event);
      if (!change) continue;
      if (change.op === 'due') {
        due.set(keyOf(change.row.kind, change.row.streamId, change.row.itemId), change);
      } else if (!due.delete(keyOf(change.kind, change.streamId, change.itemId))) {
        done.push(change);
      }
    }
    if (due.size > 0) {
      const rows = [...due.values()].map((c) => c.row);
      await db.query({
        name: 'tollgate_expiries_due',
        text: `INSERT INTO expiries (kind, stream_id, item_id, expires_at, instance_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[])
         ON CONFLICT DO NOTHING`,
        values: [rows.map((r) => r.kind), rows.map((r) => r.streamId), rows.map((r) => r.itemId), rows.map((r) => r.expiresAt), rows.map((r) => r.instanceId)],
      });
    }
    if (done.length > 0) {
      // Left unnamed on purpose: this statement reads a table whose size its plan depends on. A named
      // statement may switch to a generic plan built once per connection (a seq scan + hash join when the
      // table was empty: bench/plan-cache.ts); unnamed, it is planned per call with the table's size.
      await db.query(
        `DELETE FROM expiries e USING unnest($1::text[], $2::text[], $3::text[]) AS d(kind, stream_id, item_id)
          WHERE e.kind = d.kind AND e.stream_id = d.stream_id AND e.item_id = d.item_id`,
        [done.map((d) => d.kind), done.map((d) => d.streamId), done.map((d) => d.itemId)],
      );
    }
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE expiries');
  },
};

function keyOf(kind: string, streamId: string, itemId: string): string {
  return `${kind}\u0000${streamId}\u0000${itemId}`;
}
