/**
 * The event store port over KurrentDB / EventStoreDB 22.6+ (@eventstore/db-client, gRPC).
 *
 * What KurrentDB gives and what this adapter adds:
 * - Optimistic concurrency and idempotent appends by event id are the server's own. To report
 *   `written: false` for an exact retry, each append reads the stream head first (appendWasWritten);
 *   an identical append racing in between those two calls is reported as written by both callers.
 *   An append is three calls: read the head, append, read back the last event's position.
 * - A partly-stored retry is refused by the server as a version conflict; the adapter then reads
 *   where the ids would be and raises DuplicateEventIdError.
 * - No multi-stream transactions: appendToStreams appends each request on its own, in order.
 * - $all positions are (commit, prepare) = LogPosition (tx, seq); KurrentDB reads them inclusively,
 *   the port exclusively, so the event at exactly `from` is skipped.
 */
import {
  BACKWARDS,
  END,
  EventStoreDBClient,
  excludeSystemEvents,
  FORWARDS,
  START as CLIENT_START,
  StreamNotFoundError,
  streamNameFilter,
  WrongExpectedVersionError,
  type AppendResult as ClientAppendResult,
} from '@eventstore/db-client';
import { Subject, takeUntil, type Observable } from 'rxjs';
import {
  DuplicateEventIdError,
  START,
  VersionConflictError,
  type AppendRequest,
  type AppendResult,
  type EventCodec,
  type EventStore,
  type ExpectedVersion,
  type LogPosition,
  type NewEvent,
  type ReadStreamResult,
  type RecordedEvent,
  type StreamRevision,
} from '../../../src/ports/event-store';
import { collectAfter, observeAfter } from './global-log';
import {
  appendWasWritten,
  findPartialRetryId,
  isSystemEvent,
  requireLogPosition,
  retrySlots,
  toClientEventData,
  toClientExpectedRevision,
  toClientReadPosition,
  toPortStreamId,
  toRecordedEvent,
  toStreamName,
  toClientConnectionString,
  toVersionConflict,
  type ClientRecordedEvent,
} from './mapping';

export interface KurrentEventStoreOptions {
  /**
   * Prepended to every stream id on the server; readAll and subscribe see only streams with this
   * prefix. Empty (the default) means the whole log.
   */
  readonly streamPrefix?: string;
  /** close() disposes the client. True when the store made the client itself. */
  readonly ownsClient?: boolean;
}

interface StreamHead {
  readonly revision: StreamRevision;
  readonly position: LogPosition;
}

export function createKurrentEventStore<E>(client: EventStoreDBClient, codec: EventCodec<E>, options: KurrentEventStoreOptions = {}): EventStore<E> {
  const prefix = options.streamPrefix ?? '';
  // close() ends every Observable from subscribe(); their teardown cancels the server calls.
  const closing = new Subject<void>();

  const streamName = (streamId: string) => toStreamName(prefix, streamId);

  /** Reads one stored event of a stream; null when the stream (or that revision) does not exist. */
  async function readOne(name: string, from: bigint | typeof END, direction: typeof FORWARDS | typeof BACKWARDS): Promise<ClientRecordedEvent | null> {
    try {
      for await (const resolved of client.readStream(name, { fromRevision: from, direction, maxCount: 1 })) {
        if (resolved.event !== undefined) return resolved.event;
      }
      return null;
    } catch (error) {
      if (error instanceof StreamNotFoundError) return null;
      throw error;
    }
  }

  async function readHead(name: string): Promise<StreamHead | null> {
    const last = await readOne(name, END, BACKWARDS);
    return last === null ? null : { revision: last.revision, position: requireLogPosition(last) };
  }

  async function positionOf(name: string, revision: StreamRevision): Promise<LogPosition> {
    const recorded = await readOne(name, revision, FORWARDS);
    if (recorded === null) throw new Error(`event ${name}@${revision} acknowledged by the server but not readable`);
    return requireLogPosition(recorded);
  }

  /** The port's view of a record from $all, or null for another prefix's stream. */
  function fromLog(recorded: ClientRecordedEvent): RecordedEvent<E> | null {
    const streamId = toPortStreamId(prefix, recorded.streamId);
    return streamId === null ? null : toRecordedEvent(recorded, streamId, codec);
  }

  /**
   * Turns a refused append into the port's error: a changed retry is a caller bug, otherwise a
   * conflict. Only refused appends pay for this read.
   */
  async function explainConflict(streamId: string, events: readonly NewEvent<E>[], expected: ExpectedVersion, conflict: VersionConflictError): Promise<Error> {
    const slots = retrySlots(expected, events.length);
    if (conflict.actual === null || conflict.actual < slots.fromRevision) return conflict;
    const stored = await readStreamNamed(streamName(streamId), slots);
    const partial = findPartialRetryId(
      events.map((e) => e.id),
      stored.map((e) => e.id),
    );
    return partial === null ? conflict : new DuplicateEventIdError(streamId, partial);
  }

  async function readStreamNamed(name: string, options: { fromRevision?: StreamRevision; maxCount?: number }): Promise<ClientRecordedEvent[]> {
    const read = client.readStream(name, {
      fromRevision: options.fromRevision ?? CLIENT_START,
      direction: FORWARDS,
      ...(options.maxCount === undefined ? {} : { maxCount: options.maxCount }),
    });
    const records: ClientRecordedEvent[] = [];
    for await (const resolved of read) {
      if (resolved.event !== undefined) records.push(resolved.event);
    }
    return records;
  }

  async function appendToStream(
    streamId: string,
    events: readonly NewEvent<E>[],
    { expectedVersion }: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    if (events.length === 0) throw new RangeError(`append to ${streamId} has no events`);
    const name = streamName(streamId);
    const expectedRevision = toClientExpectedRevision(expectedVersion);
    const data = events.map((e) => toClientEventData(e.id, codec.encode(e.event)));
    const headBefore = await readHead(name);

    let result: ClientAppendResult;
    try {
      result = await client.appendToStream(name, data, { expectedRevision });
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) {
        throw await explainConflict(streamId, events, expectedVersion, toVersionConflict(error, streamId, expectedVersion));
      }
      throw error;
    }
    if (!result.success) {
      // Clients built with throwOnAppendFailure=false report conflicts as values, with an unreliable
      // revision (client 6.2 bug), so the actual revision is read back.
      const head = await readHead(name);
      const conflict = new VersionConflictError(streamId, expectedVersion, head?.revision ?? null);
      throw await explainConflict(streamId, events, expectedVersion, conflict);
    }

    const next = result.nextExpectedRevision;
    const written = appendWasWritten(headBefore?.revision ?? null, next);
    // The port wants the last event's position; the one the append returns is not documented to be
    // that event's (KurrentDB positions the write, not each event), so it is read back.
    const lastPosition = headBefore !== null && headBefore.revision === next ? headBefore.position : await positionOf(name, next);
    return { nextExpectedVersion: next, lastPosition, written };
  }

  const store: EventStore<E> = {
    appendToStream,

    async appendToStreams(requests: readonly AppendRequest<E>[]) {
      // Independent appends, one after another, so a stream named twice sees its earlier request.
      const results: (AppendResult | VersionConflictError)[] = [];
      for (const request of requests) {
        try {
          results.push(await appendToStream(request.streamId, request.events, { expectedVersion: request.expectedVersion }));
        } catch (error) {
          if (!(error instanceof VersionConflictError)) throw error;
          results.push(error);
        }
      }
      return results;
    },

    async setStreamMaxAge(streamId, maxAgeSeconds) {
      if (!Number.isSafeInteger(maxAgeSeconds) || maxAgeSeconds <= 0)
        throw new RangeError(`a maximum age is a whole number of seconds above 0, got ${maxAgeSeconds}`);
      // KurrentDB's own $maxAge: reads stop returning older events at once, its scavenge removes them.
      const name = streamName(streamId);
      const current = await client.getStreamMetadata(name);
      await client.setStreamMetadata(name, { ...(current.metadata ?? {}), maxAge: maxAgeSeconds });
    },

    async streamMaxAge(streamId) {
      const { metadata } = await client.getStreamMetadata(streamName(streamId));
      return metadata?.maxAge ?? null;
    },

    async readStream(streamId, options = {}) {
      const name = streamName(streamId);
      if (options.maxCount !== undefined && options.maxCount <= 0) {
        const head = await readHead(name);
        return { revision: head?.revision ?? null, events: [] };
      }
      let records: ClientRecordedEvent[];
      try {
        records = await readStreamNamed(name, options);
      } catch (error) {
        if (error instanceof StreamNotFoundError) return { revision: null, events: [] };
        throw error;
      }
      const events = records.map((r) => toRecordedEvent(r, streamId, codec));
      const last = events.at(-1);
      // A read to the end stops at the head; a cut-short or empty read needs the head asked for.
      const readToEnd = last !== undefined && (options.maxCount === undefined || events.length < options.maxCount);
      const revision = readToEnd ? last.revision : ((await readHead(name))?.revision ?? null);
      return { revision, events } satisfies ReadStreamResult<E>;
    },

    async readAll(from, options = {}) {
      const read = client.readAll({ fromPosition: toClientReadPosition(from), direction: FORWARDS });
      try {
        return await collectAfter(read, from, fromLog, options.maxCount);
      } finally {
        // Stops the server read when maxCount was reached before the end of the log.
        await read.cancel();
      }
    },

    async headPosition() {
      // Walk back from the end of $all to the newest event of ours (system events and other
      // prefixes' streams are not part of this log). Only the position is needed, so nothing
      // is decoded.
      const read = client.readAll({ fromPosition: END, direction: BACKWARDS, maxCount: 1_000 });
      try {
        for await (const resolved of read) {
          const recorded = resolved.event;
          if (recorded === undefined || isSystemEvent(recorded) || toPortStreamId(prefix, recorded.streamId) === null) continue;
          return requireLogPosition(recorded as ClientRecordedEvent);
        }
      } finally {
        await read.cancel();
      }
      return START;
    },

    // KurrentDB positions are assigned at commit: what a reader can see is everything committed.
    latestPosition() {
      return store.headPosition();
    },

    subscribe(from): Observable<RecordedEvent<E>> {
      const filter = prefix === '' ? excludeSystemEvents() : streamNameFilter({ prefixes: [prefix] });
      const open = () => client.subscribeToAll({ fromPosition: toClientReadPosition(from), filter });
      return observeAfter(open, from, fromLog).pipe(takeUntil(closing));
    },

    async close() {
      closing.next();
      closing.complete();
      if (options.ownsClient === true) await client.dispose();
    },
  };
  return store;
}

/** A store over its own client from `esdb://` / `kurrentdb://` connection string; close() disposes it. */
export function createKurrentEventStoreFromConnectionString<E>(
  connectionString: string,
  codec: EventCodec<E>,
  options: Omit<KurrentEventStoreOptions, 'ownsClient'> = {},
): EventStore<E> {
  const client = EventStoreDBClient.connectionString(toClientConnectionString(connectionString));
  return createKurrentEventStore(client, codec, { ...options, ownsClient: true });
}
