import type { Subscription } from 'rxjs';
import type { DomainEvent } from '../domain/events';
import type { ApiKeys } from './api-keys';
import type { Ledger } from './ledger';
import type { LogPosition, RecordedEvent } from './ports/event-store';

/**
 * What every gateway process learns from the global log as it happens: other processes'
 * writes (so cached stream states are dropped when they fall behind), key revocations (so a
 * revoked key stops working here too). The estimate's historical average is not kept here: each
 * process would see only what happened since it started (see src/historical-costs.ts).
 */
export class LiveLog {
  private subscription: Subscription | undefined;
  private position: LogPosition;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    private readonly ledger: Ledger,
    private readonly keys: ApiKeys,
    from: LogPosition,
    /** told of each failure of the subscription, which is then made again after retryMs */
    private readonly onError: (error: unknown) => void,
    private readonly retryMs = 1_000,
  ) {
    this.position = from;
  }

  start(): void {
    this.stopped = false;
    this.subscription = this.ledger.store.subscribe(this.position).subscribe({
      next: (recorded) => this.apply(recorded),
      error: (error) => {
        this.onError(error);
        // The database went away (restart, failover, network): follow the log again from the
        // last event applied once it is back, or revocations and other processes' writes
        // would go unseen here for the rest of the process's life.
        if (!this.stopped) this.retry = setTimeout(() => this.start(), this.retryMs).unref();
      },
    });
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retry);
    this.subscription?.unsubscribe();
  }

  private apply(recorded: RecordedEvent<DomainEvent>): void {
    const { streamId, revision, event } = recorded;
    this.ledger.accounts.observe(streamId, revision);
    this.ledger.priceBook.observe(streamId, revision);
    this.ledger.apiKeys.observe(streamId, revision);
    if (event.type === 'ApiKeyRevoked') this.keys.forget(streamId.slice('api-key-'.length));
    this.position = recorded.position;
  }
}
