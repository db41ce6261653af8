import type { Pool, PoolClient } from 'pg';
import { saveCheckpoint } from '../read-models/checkpoints';
import type { DomainEvent } from '../../domain/events';
import { comparePositions, START, type EventStore, type LogPosition, type RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from '../read-models/runner';

export interface ReplayProgress {
  readonly events: number;
  /** events in the log when the replay started (more may arrive) */
  readonly total: number;
  readonly elapsedMs: number;
}

export interface ReplayResult {
  readonly projections: readonly string[];
  readonly events: number;
  readonly seconds: number;
  readonly eventsPerSecond: number;
}

/** Another process (a running gateway) holds a projection: replaying under it would double-apply. */
export class ProjectionBusyError extends Error {
  override readonly name = 'ProjectionBusyError';
  constructor(readonly projection: string) {
    super(`projection ${projection} is being run by another process (a gateway?): stop it before replaying`);
  }
}

/**
 * Rebuilds projections from the start of the log: takes each projection's run lock (the one
 * runProjection holds, so no gateway applies events meanwhile), resets the tables and the
 * checkpoints in one transaction, then applies the log page by page, every projection and its
 * checkpoint in the page's transaction. The next page is read while the current one is applied.
 * A replay that stops half way leaves consistent checkpoints: running it again starts over, a
 * gateway started instead carries on from them.
 */
export async function replayProjections(
  pool: Pool,
  store: EventStore<DomainEvent>,
  projections: readonly SqlProjection<DomainEvent>[],
  options: { pageSize?: number; onProgress?: (progress: ReplayProgress) => void } = {},
): Promise<ReplayResult> {
  const pageSize = options.pageSize ?? 5_000;
  const names = projections.map((p) => p.name);
  const lock = await pool.connect();
  let work: PoolClient | undefined;
  try {
    for (const name of names) {
      const { rows } = await lock.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [`projection:${name}`]);
      if (!rows[0]!.locked) throw new ProjectionBusyError(name);
    }
    work = await pool.connect();
    const { rows: counted } = await work.query<{ n: string }>('SELECT count(*)::text AS n FROM events');
    const total = Number(counted[0]!.n);

    await inTransaction(work, async () => {
      for (const projection of projections) {
        await projection.reset(work!);
        await saveCheckpoint(work!, projection.name, START);
      }
    });

    const started = performance.now();
    // Everything committed when the replay began. Events an older transaction still open (in any
    // database of the cluster: the visibility horizon is the server's) hides from the global log
    // are not readable yet: an empty page before this position means "wait", not "done".
    const target = await store.latestPosition();
    let position: LogPosition = START;
    let applied = 0;
    let next: Promise<readonly RecordedEvent<DomainEvent>[]> = store.readAll(START, { maxCount: pageSize });
    for (;;) {
      const page = await next;
      if (page.length === 0) {
        if (comparePositions(position, target) >= 0) break;
        await new Promise((resolve) => setTimeout(resolve, 50));
        next = store.readAll(position, { maxCount: pageSize });
        continue;
      }
      const last: LogPosition = page[page.length - 1]!.position;
      position = last;
      next = store.readAll(last, { maxCount: pageSize });
      // A failed prefetch is reported by the await above on the next turn, not as unhandled.
      next.catch(() => {});
      await inTransaction(work, async () => {
        for (const projection of projections) {
          await projection.apply(work!, page);
          await saveCheckpoint(work!, projection.name, last);
        }
      });
      applied += page.length;
      options.onProgress?.({ events: applied, total, elapsedMs: performance.now() - started });
    }
    const seconds = (performance.now() - started) / 1_000;
    return { projections: names, events: applied, seconds, eventsPerSecond: seconds > 0 ? applied / seconds : 0 };
  } finally {
    work?.release();
    await lock.query('SELECT pg_advisory_unlock_all()').catch(() => {});
    lock.release();
  }
}

async function inTransaction(db: PoolClient, work: () => Promise<void>): Promise<void> {
  await db.query('BEGIN');
  try {
    await work();
    await db.query('COMMIT');
  } catch (error) {
    await db.query('ROLLBACK').catch(() => {});
    throw error;
  }
}
