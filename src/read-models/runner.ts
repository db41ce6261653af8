import type { Pool, PoolClient } from 'pg';
import { bufferTime, filter, type Subscription } from 'rxjs';
import { readCheckpoint, saveCheckpoints } from './checkpoints';
import { comparePositions, START, type EventStore, type LogPosition, type RecordedEvent } from '../ports/event-store';
import { inTransaction } from './transaction';

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
 * How long events gather before a batch is applied. Each batch costs a transaction and a
 * statement or more per projection whatever its size, so under load a wider window is most of
 * what projections cost the gateway (measured: 20 ms windows cost about 1 ms of gateway CPU per
 * request at a few hundred requests per second). Read-your-writes waits (`reached`) take this
 * much longer at most.
 */
export const DEFAULT_BATCH_MS = 100;

export interface RunOptions {
  batchMs?: number;
  batchSize?: number;
  onError?: (error: unknown) => void;
}

/** The advisory lock that says which process runs a projection (replay takes it too). */
export function projectionLockName(name: string): string {
  return `projection:${name}`;
}

/** Runs one projection; see runProjections. */
export function runProjection<E>(pool: Pool, store: EventStore<E>, projection: SqlProjection<E>, options: RunOptions = {}): RunningProjection {
  return runProjections(pool, store, [projection], options);
}

/**
 * Runs projections as one subscriber of the global log: each event is read and decoded once, and
 * each batch is applied to every projection in one transaction that also saves each one's
 * checkpoint (a projection skips what its own checkpoint already covers, so they may start from
 * different places after a rebuild).
 *
 * Only one process runs a projection at a time (session advisory locks, one per projection, on a
 * dedicated connection); the others wait and take over from the committed checkpoints if the
 * holder dies. Projection transactions commit asynchronously: the rows and the checkpoint are
 * lost or kept together, and whatever a crash loses is applied again from the log.
 */
export function runProjections<E>(pool: Pool, store: EventStore<E>, projections: readonly SqlProjection<E>[], options: RunOptions = {}): RunningProjection {
  let stopped = false;
  let subscription: Subscription | undefined;
  let lockClient: PoolClient | undefined;
  const checkpoints = new Map<string, LogPosition>();
  /** every projection has applied everything up to here */
  let position: LogPosition = START;
  let started = false;
  const waiters: { position: LogPosition; resolve: () => void }[] = [];
  let chain = Promise.resolve();
  let generation = 0;

  const release = () => {
    if (!started) return;
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (comparePositions(waiters[i]!.position, position) <= 0) waiters.splice(i, 1)[0]!.resolve();
    }
  };

  // A failed batch must not be skipped: drop the subscription, and resume from the committed
  // checkpoints after a pause (the failed batch and everything after it are read again). The
  // locks are taken again first: a database restart ends the session that held them (and the
  // wait of a process that did not hold them), and following without them would let two
  // processes apply the same events.
  let retrying = false;
  const fail = (error: unknown) => {
    if (stopped) return;
    options.onError?.(error);
    generation += 1;
    subscription?.unsubscribe();
    subscription = undefined;
    if (retrying) return;
    retrying = true;
    setTimeout(() => {
      retrying = false;
      void start().catch(fail);
    }, 1_000).unref();
  };

  const follow = async () => {
    if (stopped) return;
    const mine = generation;
    for (const projection of projections) checkpoints.set(projection.name, await readCheckpoint(pool, projection.name));
    position = [...checkpoints.values()].reduce((min, p) => (comparePositions(p, min) < 0 ? p : min));
    started = true;
    release();
    subscription = store
      .subscribe(position)
      .pipe(
        bufferTime(options.batchMs ?? DEFAULT_BATCH_MS, null, options.batchSize ?? 2_000),
        filter((batch) => batch.length > 0),
      )
      .subscribe({
        next: (batch) => {
          chain = chain.then(() => (mine === generation ? applyBatch(batch) : undefined)).catch(fail);
        },
        error: fail,
      });
  };

  const acquireLocks = async (client: PoolClient): Promise<boolean> => {
    const held: string[] = [];
    for (const projection of projections) {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [projectionLockName(projection.name)]);
      if (!rows[0]!.locked) {
        for (const name of held) await client.query('SELECT pg_advisory_unlock(hashtext($1))', [projectionLockName(name)]);
        return false;
      }
      held.push(projection.name);
    }
    return true;
  };

  const start = async () => {
    if (stopped) return;
    // Destroyed, not returned to the pool: its session's locks (if it still has any) go with it.
    lockClient?.release(true);
    lockClient = undefined;
    lockClient = await pool.connect();
    while (!stopped && !(await acquireLocks(lockClient))) await new Promise((resolve) => setTimeout(resolve, 1_000));
    await follow();
  };

  const applyBatch = async (batch: RecordedEvent<E>[]) => {
    if (stopped) return;
    const last = batch[batch.length - 1]!.position;
    await inTransaction(
      pool,
      async (client) => {
        for (const projection of projections) {
          const from = checkpoints.get(projection.name)!;
          const fresh = comparePositions(batch[0]!.position, from) > 0 ? batch : batch.filter((e) => comparePositions(e.position, from) > 0);
          if (fresh.length > 0) await projection.apply(client, fresh);
        }
        await saveCheckpoints(
          client,
          projections.map((projection) => projection.name),
          last,
        );
      },
      { asynchronousCommit: true },
    );
    for (const projection of projections) checkpoints.set(projection.name, last);
    position = last;
    release();
  };

  void start().catch(fail);

  return {
    reached(target, timeoutMs = 5_000) {
      if (started && comparePositions(target, position) <= 0) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const waiter = { position: target, resolve };
        waiters.push(waiter);
        setTimeout(() => {
          const i = waiters.indexOf(waiter);
          if (i >= 0) {
            waiters.splice(i, 1);
            reject(new Error(`projections ${projections.map((p) => p.name).join(', ')} did not reach the position within ${timeoutMs} ms`));
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
