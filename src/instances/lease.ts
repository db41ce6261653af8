import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { Migration } from '../ports/migration';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';

/**
 * Gateway instances and the one that runs the background workers.
 *
 * Each instance holds a LEASE: a row it renews every third of the lease time; when it stops
 * renewing (SIGKILL, a hang, a lost network) the lease lapses. A reservation records the instance
 * that placed it, so the expiry process can return the holds of a gone instance within about the
 * lease time, and never expire a live instance's request however long it streams.
 *
 * The background workers (expiry, auto top-up, low-balance alerts) run on exactly one live
 * instance: the holder of the `workers` role row, claimed when its holder's lease has lapsed.
 * Why a row bound to the lease rather than a session advisory lock: after a SIGKILL the kernel
 * closes the dead process's sockets and PostgreSQL would free the lock at once, but a holder that
 * hangs, or whose network is cut without a reset, keeps a session lock for as long as its
 * connection looks open to the server (TCP keepalive: minutes to hours), and a pooler in
 * transaction mode breaks session locks outright. The row uses the very liveness rule the
 * reservations use, so "gone" means the same thing for holds and for workers, and takeover comes
 * within one lease time whatever killed the holder. All times are the database's (now()), so the
 * instances' clocks need not agree.
 *
 * A holder that stalls past its lease may overlap briefly with its successor until its next
 * heartbeat shows it lost the role; the workers tolerate that (each reservation and grant is ended
 * once by the decider, auto top-up charges carry idempotency keys).
 */

export const WORKERS_ROLE = 'workers';

export const instanceLeasesMigration: Migration = {
  id: '0040_instance_leases',
  sql: `
    CREATE TABLE instance_leases (
      instance_id text PRIMARY KEY,
      host text NOT NULL,
      pid integer NOT NULL,
      started_at timestamptz NOT NULL DEFAULT now(),
      renewed_at timestamptz NOT NULL DEFAULT now(),
      lapses_at timestamptz NOT NULL
    );
    CREATE INDEX instance_leases_lapses ON instance_leases (lapses_at);
    CREATE TABLE instance_roles (
      role text PRIMARY KEY,
      instance_id text NOT NULL,
      since timestamptz NOT NULL DEFAULT now()
    );
  `,
};

/** Something the role holder runs; stopped when the role moves or the instance shuts down. */
export interface Worker {
  stop(): Promise<void>;
}

export interface InstanceLeaseOptions {
  /** lapses this long after the last renewal */
  readonly leaseMs: number;
  /** default: a third of leaseMs */
  readonly heartbeatMs?: number;
  /** Starts the background workers; called each time this instance becomes the role holder. */
  readonly startWorkers: () => readonly Worker[];
}

export class InstanceLease {
  /** Unique per process start: a restarted gateway is a new instance (the old one's holds return). */
  readonly id = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private loop: PollLoop | undefined;
  private workers: readonly Worker[] | null = null;
  /** performance.now() when the last successful renewal was sent: the lease holds until then + leaseMs */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  private live = 1;
  private stopped = false;

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
    private readonly options: InstanceLeaseOptions,
  ) {}

  /** True while this instance runs the background workers. */
  get runsWorkers(): boolean {
    return this.workers !== null;
  }

  /**
   * How many instances hold a live lease, this one included, as of the last heartbeat: the shared
   * rate limits divide by it (adapters/http/admission/share.ts). Never less than one.
   */
  get liveInstances(): number {
    return this.live;
  }

  /** Takes the lease (and the workers, when no live instance has them) before returning. */
  async start(): Promise<void> {
    await this.renew();
    await this.tick();
    // A renewal stuck on an unreachable database is not queued behind by more of them.
    this.loop = startPollLoop(() => this.tick(), {
      intervalMs: this.options.heartbeatMs ?? Math.max(200, Math.floor(this.options.leaseMs / 3)),
      onError: (error) => this.log.warn({ err: { name: (error as Error).name, message: (error as Error).message } }, 'instance lease heartbeat failed'),
    });
  }

  /**
   * Stops the workers, hands the role back and ends the lease at once: another instance takes
   * the workers over and expires whatever this one leaves open without waiting for a lapse.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.loop?.stop();
    await this.stopWorkers();
    try {
      await this.pool.query('DELETE FROM instance_roles WHERE role = $1 AND instance_id = $2', [WORKERS_ROLE, this.id]);
      await this.pool.query('UPDATE instance_leases SET lapses_at = now() WHERE instance_id = $1', [this.id]);
    } catch (error) {
      this.log.warn(
        { err: { name: (error as Error).name, message: (error as Error).message } },
        'could not end the instance lease on shutdown; it lapses by itself',
      );
    }
  }

  private async tick(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.renew();
      const holder = await this.claimWorkers();
      if (this.stopped) return;
      if (holder && !this.workers) {
        this.workers = this.options.startWorkers();
        this.log.info({ instanceId: this.id }, 'this instance runs the background workers');
      } else if (!holder && this.workers) {
        this.log.warn({ instanceId: this.id }, 'another instance took the background workers over; stopping them here');
        await this.stopWorkers();
      }
    } catch (error) {
      this.log.warn({ instanceId: this.id, err: { name: (error as Error).name, message: (error as Error).message } }, 'instance lease renewal failed');
      // Unconfirmed for a whole lease: another instance may hold the role by now.
      if (this.workers && performance.now() - this.confirmedAt >= this.options.leaseMs) {
        this.log.warn({ instanceId: this.id }, 'instance lease not renewed within its lease time; stopping the background workers');
        await this.stopWorkers();
      }
    }
  }

  private async renew(): Promise<void> {
    const sentAt = performance.now();
    // The others' live leases are counted in the same statement (the CTE's snapshot does not see
    // this one's upsert, so it counts itself separately).
    const { rows } = await this.pool.query<{ was_lapsed: boolean | null; live: number }>(
      `WITH before AS (SELECT lapses_at FROM instance_leases WHERE instance_id = $1),
            renewed AS (
              INSERT INTO instance_leases (instance_id, host, pid, lapses_at)
              VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
              ON CONFLICT (instance_id) DO UPDATE SET renewed_at = now(), lapses_at = EXCLUDED.lapses_at
              RETURNING 1)
       SELECT (SELECT lapses_at <= now() FROM before) AS was_lapsed,
              (SELECT count(*)::int FROM instance_leases WHERE instance_id <> $1 AND lapses_at > now()) + (SELECT count(*)::int FROM renewed) AS live`,
      [this.id, hostname(), process.pid, this.options.leaseMs],
    );
    const live = Math.max(1, rows[0]?.live ?? 1);
    if (live !== this.live) this.log.info({ instanceId: this.id, liveInstances: live }, 'live gateway instances changed; rate limits rebalanced');
    this.live = live;
    if (rows[0]?.was_lapsed) {
      // Another instance may have expired some of this one's reservations meanwhile; their
      // settlements are refused (reservation_not_found) and logged by the inference use case.
      this.log.warn({ instanceId: this.id }, 'this instance lease had lapsed before it was renewed (stalled process or database outage)');
    }
    this.confirmedAt = sentAt;
  }

  /** True when this instance holds the workers role (kept, or taken from a lapsed holder). */
  private async claimWorkers(): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO instance_roles AS r (role, instance_id) VALUES ($1, $2)
       ON CONFLICT (role) DO UPDATE
         SET instance_id = EXCLUDED.instance_id,
             since = CASE WHEN r.instance_id = EXCLUDED.instance_id THEN r.since ELSE now() END
       WHERE r.instance_id = EXCLUDED.instance_id
          OR NOT EXISTS (SELECT 1 FROM instance_leases l WHERE l.instance_id = r.instance_id AND l.lapses_at > now())
       RETURNING r.instance_id`,
      [WORKERS_ROLE, this.id],
    );
    return rowCount === 1;
  }

  private async stopWorkers(): Promise<void> {
    const workers = this.workers;
    this.workers = null;
    if (!workers) return;
    for (const worker of workers) {
      await worker.stop().catch((error: Error) => this.log.warn({ err: { name: error.name, message: error.message } }, 'a background worker failed to stop'));
    }
  }
}
