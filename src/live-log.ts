import type { Subscription } from 'rxjs';
import type { DomainEvent } from '../domain/events';
import type { ApiKeys } from './api-keys';
import type { Ledger } from './ledger';
import type { LogPosition, RecordedEvent, StreamAnnouncement } from './ports/event-store';

/**
 * Events every process must act on at once, not when the global log gets there: the global log
 * can be held back for as long as any transaction in the database cluster stays open, and a
 * revoked key or a suspended account must not keep working meanwhile. Price book changes ride
 * along (a price must not lag either). All are rare, so announcing them costs nothing that matters.
 * Give this to the event store (PostgresEventStoreOptions.announcedTypes) wherever these are written.
 */
export const ANNOUNCED_EVENT_TYPES: readonly DomainEvent['type'][] = [
  'ApiKeyRevoked',
  'ApiKeyLimitsSet',
  'AccountSuspended',
  'AccountReinstated',
  'AccountClosed',
  'PriceSet',
  'ModelAdded',
  'ModelRetired',
  'ModelDescribed',
];

const API_KEY_STREAM_PREFIX = 'api-key-';

/**
 * What every gateway process learns from the global log as it happens: other processes'
 * writes (so cached stream states are dropped when they fall behind), key revocations and limits
 * changes (so a revoked key stops working here too, and a new limit applies here at once). The estimate's historical average is not kept here: each
 * process would see only what happened since it started (see src/historical-costs.ts).
 *
 * Where the store offers stream announcements (PostgreSQL), revocations, suspensions, closures and
 * price changes are also applied as soon as they commit, from the stream itself: the global log
 * trails any open transaction in the cluster, and those must not wait for it. Applying them twice
 * (announcement, then global log) is harmless: both only drop cached state.
 */
export class LiveLog {
  private subscription: Subscription | undefined;
  private announcements: Subscription | undefined;
  private position: LogPosition;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private announcementsRetry: NodeJS.Timeout | undefined;

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
    if (!this.announcements) this.followAnnouncements();
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
    clearTimeout(this.announcementsRetry);
    this.subscription?.unsubscribe();
    this.announcements?.unsubscribe();
    this.announcements = undefined;
  }

  private followAnnouncements(): void {
    // Called by start() and by its own retry: whichever comes first follows, once.
    clearTimeout(this.announcementsRetry);
    if (this.announcements || this.stopped) return;
    const announcements = this.ledger.store.streamAnnouncements?.();
    if (!announcements) return;
    this.announcements = announcements.subscribe({
      next: (announcement) => {
        void this.applyAnnouncement(announcement);
      },
      error: (error) => {
        this.onError(error);
        this.announcements = undefined;
        if (!this.stopped) this.announcementsRetry = setTimeout(() => this.followAnnouncements(), this.retryMs).unref();
      },
    });
  }

  /**
   * A stream named by an announcement: drop what is cached of it, as the global log will later.
   * When announcements (re)start, one may have been missed meanwhile: every cached key is checked.
   * Never rejects.
   */
  private async applyAnnouncement(announcement: StreamAnnouncement): Promise<void> {
    if (announcement.kind === 'listening') return this.keys.recheckVerified();
    const { streamId, revision } = announcement;
    this.ledger.accounts.observe(streamId, revision);
    this.ledger.priceBook.observe(streamId, revision);
    this.ledger.apiKeys.observe(streamId, revision);
    if (!streamId.startsWith(API_KEY_STREAM_PREFIX)) return;
    // A key stream is a handful of events; read it whole (no horizon) to see whether it is revoked
    // or its limits changed. Unreadable now: forget the key anyway; the next request verifies it
    // again from its stream.
    const keyId = streamId.slice(API_KEY_STREAM_PREFIX.length);
    const changed = await this.ledger.store.readStream(streamId).then(
      ({ events }) => events.some((e) => e.event.type === 'ApiKeyRevoked' || e.event.type === 'ApiKeyLimitsSet'),
      () => true,
    );
    if (changed) this.keys.forget(keyId);
  }

  private apply(recorded: RecordedEvent<DomainEvent>): void {
    const { streamId, revision, event } = recorded;
    this.ledger.accounts.observe(streamId, revision);
    this.ledger.priceBook.observe(streamId, revision);
    this.ledger.apiKeys.observe(streamId, revision);
    if (event.type === 'ApiKeyRevoked' || event.type === 'ApiKeyLimitsSet') this.keys.forget(streamId.slice(API_KEY_STREAM_PREFIX.length));
    this.position = recorded.position;
  }
}
