import type { Pool, PoolClient } from 'pg';

export interface TransactionOptions {
  /**
   * Commit without waiting for the WAL flush (synchronous_commit off, this transaction only):
   * for work a crash may lose because it is done again (projections re-applied from the log).
   * Set in the same round trip as BEGIN.
   */
  readonly asynchronousCommit?: boolean;
}

/** Runs `work` in one transaction on a pooled client: committed if it resolves, rolled back if it throws. */
export async function inTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(options.asynchronousCommit ? 'BEGIN; SET LOCAL synchronous_commit = off' : 'BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
