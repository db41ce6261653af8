import type { Pool } from 'pg';

import type { Migration } from '../../src/ports/migration';

export type { Migration };

// Any constant works; it only has to be the same in every process that migrates this database.
const MIGRATION_LOCK = 7_160_425_001;

/**
 * Applies the migrations not yet recorded, in id order, each in its own transaction.
 * Safe to run twice and from several processes at once: a transaction-scoped advisory lock
 * serializes migrators, and each re-checks what is applied after taking it.
 */
export async function migrate(pool: Pool, migrations: readonly Migration[]): Promise<string[]> {
  const ordered = [...migrations].sort((a, b) => a.id.localeCompare(b.id));
  const applied: string[] = [];
  const client = await pool.connect();
  try {
    for (const migration of ordered) {
      await client.query('BEGIN');
      try {
        await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
        await client.query(
          `CREATE TABLE IF NOT EXISTS schema_migrations (
             id text PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now()
           )`,
        );
        const done = await client.query('SELECT 1 FROM schema_migrations WHERE id = $1', [migration.id]);
        if (done.rowCount === 0) {
          await client.query(migration.sql);
          await client.query('INSERT INTO schema_migrations (id) VALUES ($1)', [migration.id]);
          applied.push(migration.id);
        }
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${migration.id} failed: ${(error as Error).message}`, { cause: error });
      }
    }
  } finally {
    client.release();
  }
  return applied;
}
