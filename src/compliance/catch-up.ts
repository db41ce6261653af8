import type { Pool } from 'pg';
import { readCheckpoint, saveCheckpoint } from '../read-models/checkpoints';
import { comparePositions, type EventStore } from '../ports/event-store';
import type { SqlProjection } from '../read-models/runner';
import { inTransaction } from '../read-models/transaction';

/**
 * Brings a projection up to the head of the log before a command-line tool reads it. When a
 * gateway is running the projection (it holds the projection's lock), waits for it to get
 * there instead; otherwise applies what is missing itself, in batches, each with its checkpoint.
 */
export async function catchUpProjection<E>(
  pool: Pool,
  store: EventStore<E>,
  projection: SqlProjection<E>,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  // Everything committed so far, including what an open transaction still hides from readers:
  // a command that just wrote must find its write in the projection.
  const target = await store.latestPosition();
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  const lockClient = await pool.connect();
  try {
    const { rows } = await lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [`projection:${projection.name}`]);
    if (!rows[0]!.locked) {
      // A gateway runs it: wait for it to get there.
      while (comparePositions(await readCheckpoint(pool, projection.name), target) < 0) {
        if (Date.now() > deadline) throw new Error(`projection ${projection.name} did not reach the head of the log in time`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      return;
    }
    try {
      let position = await readCheckpoint(pool, projection.name);
      while (comparePositions(position, target) < 0) {
        const batch = await store.readAll(position, { maxCount: 2_000 });
        if (batch.length === 0) {
          // Not visible yet: an older transaction (perhaps another database's) is still open.
          if (Date.now() > deadline) throw new Error(`projection ${projection.name} could not catch up with the log in time`);
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        const last = batch[batch.length - 1]!.position;
        await inTransaction(pool, async (client) => {
          await projection.apply(client, batch);
          await saveCheckpoint(client, projection.name, last);
        });
        position = last;
      }
    } finally {
      await lockClient.query('SELECT pg_advisory_unlock(hashtext($1))', [`projection:${projection.name}`]);
    }
  } finally {
    lockClient.release();
  }
}
