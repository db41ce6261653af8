import type { Subscription } from 'rxjs';
import type { AccountEvent } from '../domain/account';
import type { DomainEvent } from '../domain/events';
import { evolveHistoricalCosts, historicalAverage, initialHistoricalCosts, type HistoricalCosts } from '../domain/estimate';
import type { Operation } from '../domain/price-book';
import type { ApiKeys } from './api-keys';
import type { Ledger } from './ledger';
import type { LogPosition, RecordedEvent } from './ports/event-store';

/**
 * What every gateway process learns from the global log as it happens: other processes'
 * writes (so cached stream states are dropped when they fall behind), key revocations (so a
 * revoked key stops working here too), and settled costs (the historical average that the
 * estimate policy uses).
 */
export class LiveLog {
  private history: HistoricalCosts = initialHistoricalCosts();
  private subscription: Subscription | undefined;
  private position: LogPosition;

  constructor(
    private readonly ledger: Ledger,
    private readonly keys: ApiKeys,
    from: LogPosition,
    private readonly onError: (error: unknown) => void,
  ) {
    this.position = from;
  }

  start(): void {
    this.subscription = this.ledger.store.subscribe(this.position).subscribe({
      next: (recorded) => this.apply(recorded),
      error: (error) => this.onError(error),
    });
  }

  stop(): void {
    this.subscription?.unsubscribe();
  }

  historicalAverage(model: string, operation: Operation): bigint | undefined {
    return historicalAverage(this.history, model, operation);
  }

  private apply(recorded: RecordedEvent<DomainEvent>): void {
    const { streamId, revision, event } = recorded;
    this.ledger.accounts.observe(streamId, revision);
    this.ledger.priceBook.observe(streamId, revision);
    this.ledger.apiKeys.observe(streamId, revision);
    if (event.type === 'ApiKeyRevoked') this.keys.forget(streamId.slice('api-key-'.length));
    if (event.type === 'ReservationSettled') this.history = evolveHistoricalCosts(this.history, event as AccountEvent);
    this.position = recorded.position;
  }
}
