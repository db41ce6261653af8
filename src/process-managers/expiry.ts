import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { systemMetadata } from '../command-metadata';
import type { Ledger } from '../ledger';

/**
 * Ends what is due: a reservation whose TTL passed (the gateway that placed it never came back,
 * so the hold returns in full and nothing is charged) and promo credit past its expiry. Any
 * instance may run it: the decider ends each reservation exactly once, so a second attempt is
 * refused by name and ignored.
 */
export class ExpiryProcess {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: Pool,
    private readonly ledger: Ledger,
    private readonly log: Logger,
    private readonly intervalMs = 15_000,
  ) {}

  start(): void {
    this.timer = setInterval(() => {
      this.running = this.running.then(async () => void (await this.runOnce())).catch((error: Error) => this.log.error({ err: { name: error.name } }, 'expiry run failed'));
    }, this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass over everything due now; returns how many items it ended. */
  async runOnce(limit = 1_000): Promise<{ reservationsExpired: number; promoGrantsExpired: number }> {
    const { rows } = await this.pool.query<{ kind: string; stream_id: string; item_id: string }>(
      'SELECT kind, stream_id, item_id FROM expiries WHERE expires_at <= now() ORDER BY expires_at LIMIT $1',
      [limit],
    );
    let reservationsExpired = 0;
    let promoGrantsExpired = 0;
    await Promise.all(
      rows.map(async (row) => {
        const metadata = systemMetadata('expiry');
        const result =
          row.kind === 'reservation'
            ? await this.ledger.accounts.handle(row.stream_id, { type: 'ExpireReservation', data: { requestId: row.item_id }, metadata })
            : await this.ledger.accounts.handle(row.stream_id, { type: 'ExpirePromoCredit', data: { grantId: row.item_id }, metadata });
        if (result.ok && result.events.length > 0) {
          if (row.kind === 'reservation') reservationsExpired += 1;
          else promoGrantsExpired += 1;
        }
      }),
    );
    if (reservationsExpired + promoGrantsExpired > 0) this.log.info({ reservationsExpired, promoGrantsExpired }, 'expired what was due');
    return { reservationsExpired, promoGrantsExpired };
  }
}
