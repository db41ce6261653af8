import type { Decider, Rejection } from '../domain/decider/decision';
import { accept } from '../domain/decider/decision';
import type { CommandMetadata } from '../domain/events/metadata';
import { eventMetadataFrom } from '../domain/events/metadata';
import { DEFAULT_REQUEST_LOG_RETENTION_DAYS, requestLogStreamId, type RequestLogEntry, type RequestLogEvent } from '../domain/request-log';
import type { DomainEvent } from '../domain/events';
import { createGroupCommitHandler, type GroupCommitOptions } from './handlers/group-commit';
import type { EventStore } from './ports/event-store';

/**
 * Writes the request log: one RequestLogged per ended request, in the account's stream of the
 * day, which has a maximum age (the retention days). Appends go through a group commit that is
 * deferrable: nobody waits on an entry, so it waits (up to `deferMs`, REQUEST_LOG_DEFER_MS by
 * default) for the next commit of its ledger's commit group (the next reservation) and rides in
 * it: no transaction of its own. It runs after the answer has gone out, once the settlement it
 * follows has committed.
 * A stream's maximum age is set before its first append, once per stream per process, so no
 * request-log event is ever stored in a stream that would keep it forever.
 */
export interface RequestLogWriter {
  record(entry: RequestLogEntry, metadata: CommandMetadata): Promise<void>;
  readonly retentionDays: number;
}

/**
 * How long a request-log entry waits to ride with another commit. An entry is written once its
 * settlement has committed, and that settlement rode with the next request's reservation, so the
 * commit it can share is the reservation after that: a whole request away at one connection.
 * Nothing is lost on a clean stop or delayed for a reader (Ledger.hurry ends the wait); a crash
 * loses at most this much of the log (metadata, never money: the settlement is already durable).
 * 100 ms: two requests' time at one connection even for short streams (~20 ms each), and a crash
 * window ten times the settlements' rather than longer.
 */
export const REQUEST_LOG_DEFER_MS = 100;

type LogRequest = { readonly entry: RequestLogEntry; readonly metadata: CommandMetadata };

const requestLogDecider: Decider<LogRequest, null, RequestLogEvent, Rejection> = {
  decide: (command) => accept({ type: 'RequestLogged', data: command.entry, metadata: eventMetadataFrom(command.metadata) } as RequestLogEvent),
  evolve: () => null,
  initialState: () => null,
};

export function createRequestLogWriter(store: EventStore<DomainEvent>, options: GroupCommitOptions & { retentionDays?: number } = {}): RequestLogWriter {
  const retentionDays = options.retentionDays ?? DEFAULT_REQUEST_LOG_RETENTION_DAYS;
  // The decider keeps no state: a cached stream costs one entry, so keep only today's.
  const handler = createGroupCommitHandler(store, requestLogDecider, {
    ...options,
    cacheSize: options.cacheSize ?? 10_000,
    deferMs: options.deferMs ?? REQUEST_LOG_DEFER_MS,
  });
  const aged = new Map<string, Promise<void>>();
  function ageOnce(streamId: string): Promise<void> {
    let done = aged.get(streamId);
    if (!done) {
      done = store.setStreamMaxAge(streamId, retentionDays * 86_400);
      aged.set(streamId, done);
      done.catch(() => aged.delete(streamId));
      if (aged.size > 100_000) aged.delete(aged.keys().next().value as string);
    }
    return done;
  }
  return {
    retentionDays,
    async record(entry, metadata) {
      const streamId = requestLogStreamId(entry.accountId, new Date(metadata.now).toISOString().slice(0, 10));
      await ageOnce(streamId);
      // Nobody waits on a log entry: it rides with the group's next commit (or commits after deferMs).
      await handler.handle(streamId, { entry, metadata }, { deferrable: true });
    },
  };
}
