/**
 * Every translation between the event store port and @eventstore/db-client, as pure functions.
 * No server can run where the unit tests run, so these are what the tests prove; store.ts only
 * sequences calls around them.
 */
import {
  NO_STREAM,
  START as CLIENT_START,
  type AppendExpectedRevision,
  type CurrentRevision,
  type JSONEventData,
  type JSONType,
  type Position,
  type ReadPosition,
  type WrongExpectedVersionError,
} from '@eventstore/db-client';
import {
  comparePositions,
  EventDecodeError,
  VersionConflictError,
  type EncodedEvent,
  type EventCodec,
  type ExpectedVersion,
  type Json,
  type LogPosition,
  type RecordedEvent,
  type StreamRevision,
} from '../../../src/ports/event-store';

export function toClientExpectedRevision(expected: ExpectedVersion): AppendExpectedRevision {
  switch (expected) {
    case 'no_stream':
      return NO_STREAM;
    default:
      if (expected < 0n) throw new RangeError(`expected version must be a revision >= 0, got ${expected}`);
      return expected;
  }
}

/** The port's position names KurrentDB's pair: tx = commit, seq = prepare. */
export function toLogPosition(position: Position): LogPosition {
  return { tx: position.commit, seq: position.prepare };
}

/** START is the start of $all; any other position is passed through as (commit, prepare). */
export function toClientReadPosition(from: LogPosition): ReadPosition {
  if (comparePositions(from, { tx: 0n, seq: 0n }) === 0) return CLIENT_START;
  return { commit: from.tx, prepare: from.seq };
}

/** KurrentDB reads $all from a position inclusively; the port reads strictly after it. */
export function isStrictlyAfter(position: LogPosition, from: LogPosition): boolean {
  return comparePositions(position, from) === 1;
}

/** The client says 'no_stream' where the port says null. */
export function toStreamRevision(current: CurrentRevision): StreamRevision | null {
  return current === NO_STREAM ? null : current;
}

export function toVersionConflict(error: WrongExpectedVersionError, streamId: string, expected: ExpectedVersion): VersionConflictError {
  return new VersionConflictError(streamId, expected, toStreamRevision(error.actualVersion));
}

/**
 * KurrentDB acknowledges an exact retry (same event ids after the same expected version) as a
 * success without writing, and returns the revision of the events already stored. Fresh events
 * always land after the head observed before the append, so the append wrote something exactly
 * when the revision it returns is past that head.
 */
export function appendWasWritten(headBefore: StreamRevision | null, nextExpectedRevision: StreamRevision): boolean {
  return headBefore === null || nextExpectedRevision > headBefore;
}

/**
 * Where to look for an append's ids after a version conflict: at an exact revision (or no_stream)
 * the server compares the slots the events would fill.
 */
export function retrySlots(expected: ExpectedVersion, eventCount: number): { fromRevision: StreamRevision; maxCount: number } {
  if (expected === 'no_stream') return { fromRevision: 0n, maxCount: eventCount };
  return { fromRevision: expected + 1n, maxCount: eventCount };
}

/**
 * After a version conflict, the events stored where the append wanted to go: if some but not all
 * of the append's ids are among them, the caller retried with a changed batch.
 * Returns the first such id, or null when the conflict is an ordinary concurrent write.
 */
export function findPartialRetryId(requestedIds: readonly string[], storedIds: readonly string[]): string | null {
  const stored = new Set(storedIds.map((id) => id.toLowerCase()));
  const found = requestedIds.filter((id) => stored.has(id.toLowerCase()));
  if (found.length === 0 || found.length === requestedIds.length) return null;
  return found[0] ?? null;
}

export function toClientEventData(id: string, encoded: EncodedEvent): JSONEventData {
  return {
    id,
    contentType: 'application/json',
    type: encoded.type,
    // The client JSON.stringifies any value; its JSONType is narrower than JSON itself.
    data: encoded.data as JSONType,
    // The client drops falsy metadata, and reads absent metadata back as undefined (null here).
    metadata: encoded.metadata === null ? undefined : (encoded.metadata as JSONType),
  };
}

/** System events ($-prefixed streams such as $$metadata, $-prefixed types such as $> links) never reach the port. */
export function isSystemEvent(event: { readonly streamId: string; readonly type: string }): boolean {
  return event.streamId.startsWith('$') || event.type.startsWith('$');
}

/**
 * Stream names on the server are `${prefix}${streamId}`. A prefix lets stores share one cluster
 * (tenants, environments, test runs) without seeing each other's streams.
 */
export function toStreamName(prefix: string, streamId: string): string {
  return `${prefix}${streamId}`;
}

/** The port's stream id for a server stream name, or null when the stream belongs to another prefix. */
export function toPortStreamId(prefix: string, streamName: string): string | null {
  return streamName.startsWith(prefix) ? streamName.slice(prefix.length) : null;
}

/** What the client hands back for a stored event (readStream, readAll, subscribeToAll). */
export interface ClientRecordedEvent {
  readonly streamId: string;
  readonly id: string;
  readonly revision: bigint;
  readonly type: string;
  readonly created: Date;
  readonly isJson: boolean;
  readonly data: unknown;
  readonly metadata?: unknown;
  readonly position?: Position;
}

/** Thrown when the server omits event positions: KurrentDB/EventStoreDB before 22.6 does for stream reads. */
export class MissingLogPositionError extends Error {
  override readonly name = 'MissingLogPositionError';
  constructor(
    readonly streamName: string,
    readonly revision: bigint,
  ) {
    super(`event ${streamName}@${revision} has no log position; this adapter needs EventStoreDB 22.6 or later`);
  }
}

/**
 * Servers before 22.6 leave the position fields of stream reads unset, which protobuf reads back
 * as (0, 0); no event is ever stored there (the log opens with an epoch record), so (0, 0) is missing.
 */
export function requireLogPosition(recorded: ClientRecordedEvent): LogPosition {
  const position = recorded.position;
  if (position === undefined || (position.commit === 0n && position.prepare === 0n)) {
    throw new MissingLogPositionError(recorded.streamId, recorded.revision);
  }
  return toLogPosition(position);
}

/** Binary payloads and non-JSON metadata are schema drift to this store: it only ever writes JSON. */
export function toEncodedEvent(recorded: ClientRecordedEvent): EncodedEvent {
  if (!recorded.isJson || recorded.data instanceof Uint8Array) {
    throw new TypeError(`event data is not JSON (binary content)`);
  }
  if (recorded.metadata instanceof Uint8Array) {
    throw new TypeError(`event metadata is not JSON`);
  }
  // The client parsed both from JSON text, so they are JSON values.
  return {
    type: recorded.type,
    data: recorded.data as Json,
    metadata: recorded.metadata === undefined ? null : (recorded.metadata as Json),
  };
}

/**
 * A stored event as the port sees it. `streamId` is the port's id (prefix removed); decoding
 * failures become EventDecodeError naming stream, revision, position and type.
 */
export function toRecordedEvent<E>(recorded: ClientRecordedEvent, streamId: string, codec: EventCodec<E>): RecordedEvent<E> {
  const position = requireLogPosition(recorded);
  let event: E;
  try {
    event = codec.decode(toEncodedEvent(recorded));
  } catch (cause) {
    throw new EventDecodeError(streamId, recorded.revision, position, recorded.type, cause);
  }
  return {
    id: recorded.id,
    streamId,
    revision: recorded.revision,
    position,
    type: recorded.type,
    event,
    recordedAt: recorded.created,
  };
}

/** Client 6.x only knows esdb:// and esdb+discover://; KurrentDB's kurrentdb:// schemes mean the same. */
export function toClientConnectionString(connectionString: string): string {
  return connectionString.replace(/^kurrentdb(\+discover)?:\/\//i, (_match, discover: string | undefined) => `esdb${discover ?? ''}://`);
}
