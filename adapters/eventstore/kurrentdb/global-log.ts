/**
 * Reading and following $all: the client's streams of resolved events turned into the port's
 * strictly-after, system-free view. Kept apart from the client calls so tests can feed them
 * any Readable or async iterable.
 */
import { Observable } from 'rxjs';
import type { LogPosition, RecordedEvent } from '../../../src/ports/event-store';
import { isStrictlyAfter, isSystemEvent, requireLogPosition, type ClientRecordedEvent } from './mapping';

/** The part of a client ResolvedEvent this adapter reads: links are never resolved, so `event` is the record. */
export interface ClientResolvedEvent {
  readonly event?: ClientRecordedEvent;
}

/**
 * Turns one stored record into the port's event, or null to leave it out (another prefix's
 * stream). Throws EventDecodeError when the record does not decode.
 */
export type ToPortEvent<E> = (recorded: ClientRecordedEvent) => RecordedEvent<E> | null;

/**
 * Collects up to `maxCount` port events strictly after `from`. The source starts at `from`
 * inclusive (KurrentDB's fromPosition) and may contain system events and other prefixes' events,
 * which neither count nor appear.
 */
export async function collectAfter<E>(
  source: AsyncIterable<ClientResolvedEvent>,
  from: LogPosition,
  toPortEvent: ToPortEvent<E>,
  maxCount: number = Number.POSITIVE_INFINITY,
): Promise<RecordedEvent<E>[]> {
  const collected: RecordedEvent<E>[] = [];
  if (maxCount <= 0) return collected;
  for await (const resolved of source) {
    const recorded = resolved.event;
    if (recorded === undefined || isSystemEvent(recorded)) continue;
    if (!isStrictlyAfter(requireLogPosition(recorded), from)) continue;
    const event = toPortEvent(recorded);
    if (event === null) continue;
    collected.push(event);
    // Returning from for-await destroys the source, which stops the server read.
    if (collected.length >= maxCount) break;
  }
  return collected;
}

/** The part of the client's subscription (a Readable of resolved events) this adapter uses. */
export interface LiveSubscription {
  on(event: 'data', listener: (resolved: ClientResolvedEvent) => void): unknown;
  on(event: 'error', listener: (error: Error) => void): unknown;
  on(event: 'end', listener: () => void): unknown;
  /** Cancels the call on the server. */
  unsubscribe(): Promise<void>;
}

/**
 * An Observable over a subscription opened per subscriber. Skips the event at exactly `from`
 * (the port's subscribe is exclusive), system events and events `toPortEvent` leaves out; a
 * decode failure or a subscription error ends the Observable with that error; unsubscribing
 * (or ending) cancels the server subscription.
 */
export function observeAfter<E>(open: () => LiveSubscription, from: LogPosition, toPortEvent: ToPortEvent<E>): Observable<RecordedEvent<E>> {
  return new Observable<RecordedEvent<E>>((subscriber) => {
    const subscription = open();
    subscription.on('data', (resolved: ClientResolvedEvent) => {
      if (subscriber.closed) return;
      const recorded = resolved.event;
      if (recorded === undefined || isSystemEvent(recorded)) return;
      let event: RecordedEvent<E> | null;
      try {
        if (!isStrictlyAfter(requireLogPosition(recorded), from)) return;
        event = toPortEvent(recorded);
      } catch (error) {
        subscriber.error(error);
        return;
      }
      if (event !== null) subscriber.next(event);
    });
    subscription.on('error', (error: Error) => subscriber.error(error));
    subscription.on('end', () => subscriber.complete());
    return () => {
      // Teardown cannot wait; a failed cancel means the call is already gone.
      subscription.unsubscribe().catch(() => undefined);
    };
  });
}
