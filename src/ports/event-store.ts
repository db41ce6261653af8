import type { Observable } from 'rxjs';

/**
 * The event store port. Every adapter (PostgreSQL, KurrentDB) implements it and passes the
 * contract suite in test/contract. Streams hold one aggregate each (an account, the price book);
 * the global log orders every stream's events for projections and process managers.
 */

/** Plain JSON; money travels as decimal strings because JSON has no bigint. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Revision of the last event in a stream: 0n after the first event. */
export type StreamRevision = bigint;

export type ExpectedVersion =
  | StreamRevision
  /** the stream must not exist yet */
  | 'no_stream';

/**
 * A position in the global log. Two numbers because both stores need two:
 * PostgreSQL orders by (transaction id, sequence) so a reader never passes a slower
 * transaction that has not committed; KurrentDB positions are (commit, prepare).
 * Compare with comparePositions; START is before every event.
 */
export interface LogPosition {
  readonly tx: bigint;
  readonly seq: bigint;
}
export const START: LogPosition = Object.freeze({ tx: 0n, seq: 0n });

export function comparePositions(a: LogPosition, b: LogPosition): -1 | 0 | 1 {
  if (a.tx !== b.tx) return a.tx < b.tx ? -1 : 1;
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1;
  return 0;
}

/** What the store writes: already encoded to JSON by the codec. */
export interface EncodedEvent {
  readonly type: string;
  readonly data: Json;
  readonly metadata: Json;
}

/** An event to append. `id` (a UUID) makes the append idempotent. */
export interface NewEvent<E> {
  readonly id: string;
  readonly event: E;
}

export interface RecordedEvent<E> {
  readonly id: string;
  readonly streamId: string;
  readonly revision: StreamRevision;
  readonly position: LogPosition;
  readonly type: string;
  readonly event: E;
  readonly recordedAt: Date;
}

/**
 * Turns domain events into JSON and back. `decode` validates (zod) and upcasts old
 * schema versions; when it throws, the store raises EventDecodeError naming the event.
 */
export interface EventCodec<E> {
  encode(event: E): EncodedEvent;
  decode(stored: EncodedEvent): E;
}

export interface AppendResult {
  /** revision of the last event now in the stream: the next expectedVersion */
  readonly nextExpectedVersion: StreamRevision;
  /** position of the last event appended (or found already stored) */
  readonly lastPosition: LogPosition;
  /** false when every event id was already stored: nothing was written */
  readonly written: boolean;
}

export interface AppendRequest<E> {
  readonly streamId: string;
  readonly events: readonly NewEvent<E>[];
  readonly expectedVersion: ExpectedVersion;
}

export interface ReadStreamResult<E> {
  /** null when the stream does not exist */
  readonly revision: StreamRevision | null;
  readonly events: readonly RecordedEvent<E>[];
}

export interface EventStore<E> {
  appendToStream(streamId: string, events: readonly NewEvent<E>[], options: { expectedVersion: ExpectedVersion }): Promise<AppendResult>;

  /**
   * Appends to several streams at once (group commit). Each request succeeds or fails on its
   * own: a version conflict on one stream does not stop the others. On PostgreSQL all
   * successful requests are written in one transaction.
   */
  appendToStreams(requests: readonly AppendRequest<E>[]): Promise<(AppendResult | VersionConflictError)[]>;

  readStream(streamId: string, options?: { fromRevision?: StreamRevision; maxCount?: number }): Promise<ReadStreamResult<E>>;

  /** Events strictly after `from`, in global order, only those no slower writer can still precede. */
  readAll(from: LogPosition, options?: { maxCount?: number }): Promise<readonly RecordedEvent<E>[]>;

  /**
   * Position of the last event a reader can see now (START for an empty log): where a process
   * that only cares about what happens from now on subscribes from.
   */
  headPosition(): Promise<LogPosition>;

  /**
   * Position of the newest committed event, even one that global-log readers cannot see yet
   * because an older transaction is still open. To read your writes from a projection, wait
   * for the projection to reach this (it gets there once the older transactions end).
   */
  latestPosition(): Promise<LogPosition>;

  /**
   * Gives a stream a maximum age (KurrentDB's `$maxAge`): its events older than that are deleted
   * (by the server's own scavenge on KurrentDB, by `scavenge` on PostgreSQL). The stream's
   * revision never goes back: later appends continue after the last revision ever written.
   * Wallet streams never get one; request-log streams do. Setting it again replaces it.
   */
  setStreamMaxAge(streamId: string, maxAgeSeconds: number): Promise<void>;

  /** The stream's maximum age in seconds, or null when it is kept forever. */
  streamMaxAge(streamId: string): Promise<number | null>;

  /**
   * Optional, for stores that do not expire events themselves (PostgreSQL): deletes the events of
   * max-age streams recorded before `now` minus their stream's maximum age. Global-log readers and
   * checkpoints hold positions, not rows, so a reader positioned before, inside or after the
   * deleted range goes on with the next event that is still there, never failing or skipping one.
   * `now` comes from the caller (an injected clock in tests).
   */
  scavenge?(now: Date): Promise<ScavengeResult>;

  /** Catches up from `from` (exclusive), then follows live appends. Errors end the stream. */
  subscribe(from: LogPosition): Observable<RecordedEvent<E>>;

  /**
   * Optional: streams that just received an event of an announced type (the adapter is told which
   * types: revocations, suspensions), delivered as soon as the append commits, whatever holds the
   * global log back. A store whose global log can stall behind other transactions (PostgreSQL)
   * offers it; readers read the named stream itself (per-stream reads need no horizon) and must
   * be idempotent with the global log's later delivery of the same event. It says when it is
   * listening (first, and after each reconnection), so a reader can re-check its caches for what
   * it may have missed meanwhile. Errors (a lost connection) end it; subscribe again.
   */
  streamAnnouncements?(): Observable<StreamAnnouncement>;

  /**
   * Optional: how far global-log readers trail the committed log, for stores whose readers can
   * be held back (PostgreSQL: an open transaction anywhere in the cluster holds the horizon).
   */
  globalLogLag?(): Promise<GlobalLogLag>;

  close(): Promise<void>;
}

/** What a scavenge deleted: counts only, never the events. */
export interface ScavengeResult {
  readonly deletedEvents: number;
  /** max-age streams that lost at least one event */
  readonly streams: number;
}

export type StreamAnnouncement =
  /** an announced append: `streamId` now has an event at `revision` */
  | { readonly kind: 'appended'; readonly streamId: string; readonly revision: StreamRevision }
  /**
   * announcements flow from here on: first, and again after a reconnection. Anything announced
   * before may have been missed, so a reader re-checks what it has cached.
   */
  | { readonly kind: 'listening' };

export interface GlobalLogLag {
  /** committed events that global-log readers cannot read yet (counted up to a cap) */
  readonly hiddenEvents: number;
  /** seconds the oldest of them has waited; 0 when there are none */
  readonly seconds: number;
  /** what holds them back, when there are any and the store can tell */
  readonly blocker: GlobalLogBlocker | null;
}

/** The transaction holding the global log back. Never its query text (it may hold data). */
export interface GlobalLogBlocker {
  /** server process id (null for a prepared transaction, which has no backend) */
  readonly pid: number | null;
  readonly database: string | null;
  readonly applicationName: string | null;
  /** e.g. `idle in transaction`, `active`, or `prepared` */
  readonly state: string | null;
  readonly transactionAgeSeconds: number | null;
  /** the prepared transaction's identifier, when it is one */
  readonly preparedTransaction: string | null;
}

export class VersionConflictError extends Error {
  override readonly name = 'VersionConflictError';
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    readonly actual: StreamRevision | null,
  ) {
    super(`version conflict on stream ${streamId}: expected ${String(expected)}, actual ${actual === null ? 'no stream' : String(actual)}`);
  }
}

/** Some but not all of an append's event ids are already stored: a caller bug, never silently merged. */
export class DuplicateEventIdError extends Error {
  override readonly name = 'DuplicateEventIdError';
  constructor(
    readonly streamId: string,
    readonly eventId: string,
  ) {
    super(`event ${eventId} is already stored, but the append to ${streamId} is not an exact retry`);
  }
}

/** A stored event no longer parses (schema drift): reads fail loudly instead of dropping it. */
export class EventDecodeError extends Error {
  override readonly name = 'EventDecodeError';
  constructor(
    readonly streamId: string,
    readonly revision: StreamRevision,
    readonly position: LogPosition,
    readonly eventType: string,
    override readonly cause: unknown,
  ) {
    super(
      `cannot decode event ${eventType} at ${streamId}@${revision} (log position ${position.tx}/${position.seq}): ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
    );
  }
}
