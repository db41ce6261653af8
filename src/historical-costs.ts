import type { Pool } from 'pg';
import { averageCost } from '../domain/estimate';
import type { MicroUsd } from '../domain/money';
import type { Operation } from '../domain/price-book';
import { startPollLoop, type PollLoop } from './process-managers/poll-loop';

/** Days of usage the average covers: recent enough to follow price changes. */
export const HISTORY_WINDOW_DAYS = 30;

/**
 * The historical average actual cost per model and operation, the estimate's second term. It is
 * read from the usage projection's table (`usage_daily`, every account, every instance's
 * requests), so all instances reserve alike for the same request; each instance refreshes it
 * every `refreshMs`. Released and expired requests count at cost 0: the average is what a request
 * of this model and operation has cost.
 *
 * The estimate itself stays a pure function (domain/estimate) that takes this average as input.
 */
export class HistoricalCosts {
  private averages = new Map<string, MicroUsd>();
  private loop: PollLoop | undefined;
  private refreshing: Promise<void> | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly refreshMs: number,
    /** told of a failed refresh; the last averages stay in use until the next one succeeds */
    private readonly onError: (error: unknown) => void,
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.refresh(), { intervalMs: this.refreshMs, onError: this.onError });
    void this.loop.runNow();
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    await this.refreshing?.catch(() => {});
  }

  historicalAverage(model: string, operation: Operation): MicroUsd | undefined {
    return this.averages.get(key(model, operation));
  }

  /** Reads the averages again now (the timer calls this; so may a test or an operator tool). */
  refresh(): Promise<void> {
    // One query at a time per instance, however slow the database is.
    this.refreshing ??= this.load().finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  private async load(): Promise<void> {
    const { rows } = await this.pool.query<{ model: string; operation: string; cost: string; requests: string }>(
      `SELECT model, operation, sum(cost)::text AS cost, sum(requests)::text AS requests
         FROM usage_daily
        WHERE day >= (now() AT TIME ZONE 'UTC')::date - $1::int
        GROUP BY model, operation`,
      [HISTORY_WINDOW_DAYS],
    );
    const next = new Map<string, MicroUsd>();
    for (const row of rows) {
      const average = averageCost(BigInt(row.cost), BigInt(row.requests));
      if (average !== undefined) next.set(key(row.model, row.operation), average);
    }
    this.averages = next;
  }
}

function key(model: string, operation: string): string {
  // JSON keeps the key unambiguous whatever characters a model id contains.
  return JSON.stringify([model, operation]);
}
