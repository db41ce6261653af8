import type { Pool, PoolClient } from 'pg';
import { bufferTime, filter, type Subscription } from 'rxjs';
import { readCheckpoint, saveCheckpoint } from '../../adapters/eventstore/postgres/checkpoints';
import { comparePositions, START, type EventStore, type LogPosition, type RecordedEvent } from '../ports/event-store';

/**
 * A read model kept in PostgreSQL. `apply` writes a batch's rows in the transaction the runner
 * opens, and the runner saves the checkpoint in the same transaction: a crash or a replay never
 * applies an event twice or skips one. `reset` empties the tables for a rebuild.
 */
export interface SqlProjection<E> {
  readonly name: string;
  apply(db: PoolClient, events: readonly RecordedEvent<E>[]): Promise<void>;
  reset(db: PoolClient): Promise<void>;
}

export interface RunningProjection {
  /** Resolves once the projection has applied every event up to `position`. */
  reached(position: LogPosition, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Runs a projection as a subscriber of the global log. Only one process runs a given projection
 * at a time (a session advisory lock on a dedicated connection); the others wait for the lock
 * and take over if the holder dies, from the checkpoint it committed.
 */
export function runProjection<E>(
  pool: Pool,
  store: EventStore<E>,
  projection: SqlProjection<E>,
  options: { batchMs?: number; batchSize?: number; onError?: (error: unknown) => void } = {},
): RunningProjection {
  let stopped = false;
  let subscription: Subscription | undefined;
  let lockClient: PoolClient | undefined;
  let position: LogPosition = START;
  const waiters: { position: LogPosition; resolve: () => void }[] = [];
  let chain = Promise.resolve();

  const release = () => {
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (comparePositions(waiters[i]!.position, position) <= 0) waiters.splice(i, 1)[0]!.resolve();
    }
  };

  let generation = 0;
  // A failed batch must not be skipped: drop the subscription, and resume from the committed
  // checkpoint after a pause (the failed batch and everything after it are read again).
  const fail = (error: unknown) => {
    if (stopped) return;
    options.onError?.(error);
    generation += 1;
    subscription?.unsubscribe();
    subscription = undefined;
    setTimeout(() => void follow().catch(fail), 1_000).unref();
  };

  const follow = async () => {
    if (stopped) return;
    const mine = generation;
    position = await readCheckpoint(pool, projection.name);
    release();
    subscription = store
      .subscribe(position)
      .pipe(
        bufferTime(options.batchMs ?? 20, null, options.batchSize ?? 2_000),
        filter((batch) => batch.length > 0),
      )
      .subscribe({
        next: (batch) => {
          chain = chain.then(() => (mine === generation ? applyBatch(batch) : undefined)).catch(fail);
        },
        error: fail,
      });
  };

  const start = async () => {
    lockClient = await pool.connect();
    // Wait until this process may run the projection (another may hold it).
    while (!stopped) {
      const { rows } = await lockClient.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [`projection:${projection.name}`]);
      if (rows[0]!.locked) break;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await follow();
  };

  const applyBatch = async (batch: RecordedEvent<E>[]) => {
    if (stopped) return;
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await projection.apply(client, batch);
      const last = batch[batch.length - 1]!.position;
      await saveCheckpoint(client, projection.name, last);
      await client.query('COMMIT');
      position = last;
      release();
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  };

  void start().catch(fail);

  return {
    reached(target, timeoutMs = 5_000) {
      if (comparePositions(target, position) <= 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const waiter = { position: target, resolve };
        waiters.push(waiter);
        setTimeout(() => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error(`projection ${projection.name} did not reach the position within ${timeoutMs} ms`));
          }
        }, timeoutMs).unref();
      });
    },
    async stop() {
      stopped = true;
      subscription?.unsubscribe();
      await chain;
      if (lockClient) {
        await lockClient.query('SELECT pg_advisory_unlock_all()').catch(() => {});
        lockClient.release();
      }
    },
  };
}
