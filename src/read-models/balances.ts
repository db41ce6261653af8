import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { applyBalanceChange, balanceChange, type BalanceRow } from '../../projections/balances/balances';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

interface Touched {
  row: BalanceRow;
  tx: bigint;
  seq: bigint;
  updatedAt: string;
}

/** Balances in PostgreSQL: a batch's changes are summed per account and written in one upsert. */
export const balancesProjection: SqlProjection<DomainEvent> = {
  name: 'balances',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const touched = new Map<string, Touched>();
    for (const recorded of events) {
      const change = balanceChange(recorded.streamId, recorded.event);
      if (!change) continue;
      const seen = touched.get(change.accountId);
      touched.set(change.accountId, {
        row: applyBalanceChange(seen?.row, change),
        tx: recorded.position.tx,
        seq: recorded.position.seq,
        updatedAt: recorded.event.metadata.occurredAt,
      });
    }
    if (touched.size === 0) return;
    const rows = [...touched.values()];
    await db.query({
      name: 'tollgate_balances_apply',
      text: `INSERT INTO balances (account_id, purchased, promo, reserved, last_tx, last_seq, updated_at)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::timestamptz[])
       ON CONFLICT (account_id) DO UPDATE SET
         purchased = balances.purchased + excluded.purchased,
         promo = balances.promo + excluded.promo,
         reserved = balances.reserved + excluded.reserved,
         last_tx = excluded.last_tx,
         last_seq = excluded.last_seq,
         updated_at = excluded.updated_at`,
      values: [
        rows.map((t) => t.row.accountId),
        rows.map((t) => t.row.purchased.toString()),
        rows.map((t) => t.row.promo.toString()),
        rows.map((t) => t.row.reserved.toString()),
        rows.map((t) => t.tx.toString()),
        rows.map((t) => t.seq.toString()),
        rows.map((t) => t.updatedAt),
      ],
    });
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE balances');
  },
};
