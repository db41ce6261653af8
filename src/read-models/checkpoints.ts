import { START, type LogPosition } from '../ports/event-store';
import type { ClientBase } from 'pg';

/** A client or pool: the checkpoint is written on whatever runs the subscriber's transaction. */
type Queryable = Pick<ClientBase, 'query'>;

/**
 * A subscriber's checkpoint, kept in the `checkpoints` table. Call both inside the transaction
 * that does the subscriber's work, so the work and the checkpoint commit (or vanish) together:
 * a crash or a replay then never applies an event twice.
 */
export async function readCheckpoint(db: Queryable, name: string): Promise<LogPosition> {
  const result = await db.query<{ tx: string; seq: string }>('SELECT tx::text AS tx, seq::text AS seq FROM checkpoints WHERE name = $1', [name]);
  const row = result.rows[0];
  return row ? { tx: BigInt(row.tx), seq: BigInt(row.seq) } : START;
}

export async function saveCheckpoint(db: Queryable, name: string, position: LogPosition): Promise<void> {
  await db.query(
    `INSERT INTO checkpoints (name, tx, seq) VALUES ($1, $2::numeric, $3::numeric)
     ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, updated_at = now()`,
    [name, position.tx.toString(), position.seq.toString()],
  );
}

/** Several subscribers' checkpoints moved to one position in one statement (one batch applied to all). */
export async function saveCheckpoints(db: Queryable, names: readonly string[], position: LogPosition): Promise<void> {
  if (names.length === 0) return;
  // Named (parsed once per connection, then a generic plan) like every per-batch statement whose
  // plan cannot depend on a table's size: an INSERT from arrays (pg_stat_statements: bench/plan-cache.ts).
  await db.query({
    name: 'tollgate_save_checkpoints',
    text: `INSERT INTO checkpoints (name, tx, seq) SELECT n, $2::numeric, $3::numeric FROM unnest($1::text[]) AS n
     ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, seq = excluded.seq, updated_at = now()`,
    values: [names, position.tx.toString(), position.seq.toString()],
  });
}
