import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { systemMetadata } from '../command-metadata';
import type { Ledger } from '../ledger';
import { startPollLoop, type PollLoop } from './poll-loop';

/**
 * Ends what is due: a reservation whose gateway instance is gone (its lease lapsed: SIGKILL,
 * crash, lost network), or that passed its hard deadline (the gateway ends every request before
 * it, so only a stuck settlement gets there); and promo credit past its expiry. The hold returns
 * in full and nothing is charged. A live instance's reservation is never expired before its
 * deadline, however long its stream runs. It runs on the one instance that holds the workers
 * role (src/instances/lease.ts); should two overlap, the decider ends each item exactly once and
 * the second attempt is refused by name and ignored.
 */
export class ExpiryProcess {
  private loop: PollLoop | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly ledger: Ledger,
    private readonly log: Logger,
    private readonly intervalMs = 2_000,
    /**
     * The instance running this process: alive by definition, so its own reservations are never
     * expired for a lapse (after a database outage longer than the lease, this pass may come
     * before its own renewal).
     */
    private readonly selfInstanceId: string | null = null,
  ) {}

  start(): void {
    void this.loop?.stop();
    this.loop = startPollLoop(() => this.runOnce(), {
      intervalMs: this.intervalMs,
      onError: (error) => this.log.error({ err: { name: (error as Error).name } }, 'expiry run failed'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = undefined;
  }

  /** One pass over everything due now; returns how many items it ended. */
  async runOnce(limit = 1_000): Promise<{ reservationsExpired: number; ofLapsedInstances: number; promoGrantsExpired: number }> {
    // Deadline passed (any kind), or a reservation whose instance's lease has lapsed. A reservation
    // of unknown instance (placed before leases, or its lease row long gone) waits for its deadline.
    const { rows } = await this.pool.query<{ kind: string; stream_id: string; item_id: string; lapsed_instance_id: string | null }>(
      `(SELECT kind, stream_id, item_id, NULL AS lapsed_instance_id FROM expiries WHERE expires_at <= now() ORDER BY expires_at LIMIT $1)
       UNION ALL
       (SELECT e.kind, e.stream_id, e.item_id, e.instance_id FROM instance_leases l JOIN expiries e ON e.instance_id = l.instance_id
         WHERE l.lapses_at <= now() AND l.instance_id IS DISTINCT FROM $2 AND e.kind = 'reservation' AND e.expires_at > now() LIMIT $1)`,
      [limit, this.selfInstanceId],
    );
    let reservationsExpired = 0;
    let ofLapsedInstances = 0;
    let promoGrantsExpired = 0;
    await Promise.all(
      rows.map(async (row) => {
        const metadata = systemMetadata('expiry');
        const result =
          row.kind === 'reservation'
            ? await this.ledger.accounts.handle(row.stream_id, {
                type: 'ExpireReservation',
                data: { requestId: row.item_id, ...(row.lapsed_instance_id === null ? {} : { lapsedInstanceId: row.lapsed_instance_id }) },
                metadata,
              })
            : await this.ledger.accounts.handle(row.stream_id, { type: 'ExpirePromoCredit', data: { grantId: row.item_id }, metadata });
        if (result.ok && result.events.length > 0) {
          if (row.kind !== 'reservation') promoGrantsExpired += 1;
          else {
            reservationsExpired += 1;
            if (row.lapsed_instance_id !== null) ofLapsedInstances += 1;
          }
        }
      }),
    );
    if (reservationsExpired + promoGrantsExpired > 0) this.log.info({ reservationsExpired, ofLapsedInstances, promoGrantsExpired }, 'expired what was due');
    // Forget instances lapsed a day ago that hold nothing any more.
    await this.pool.query(
      `DELETE FROM instance_leases l WHERE l.lapses_at < now() - interval '1 day'
          AND NOT EXISTS (SELECT 1 FROM expiries e WHERE e.instance_id = l.instance_id)
          AND NOT EXISTS (SELECT 1 FROM instance_roles r WHERE r.instance_id = l.instance_id)`,
    );
    return { reservationsExpired, ofLapsedInstances, promoGrantsExpired };
  }
}
