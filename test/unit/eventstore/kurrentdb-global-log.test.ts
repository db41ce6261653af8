/**
 * Reading and following $all in the KurrentDB adapter: strictly after `from`, without system
 * events or other prefixes' streams, with decode failures ending the read, and unsubscribing
 * cancelling the client's subscription. The sources here are an async generator and an
 * object-mode PassThrough, the same Readable kind the client returns, fed client-shaped records.
 */
import { PassThrough } from 'node:stream';
import { firstValueFrom, lastValueFrom, toArray, take } from 'rxjs';
import { collectAfter, observeAfter, type ClientResolvedEvent } from '../../../adapters/eventstore/kurrentdb/global-log';
import { toPortStreamId, toRecordedEvent, type ClientRecordedEvent } from '../../../adapters/eventstore/kurrentdb/mapping';
import { EventDecodeError, START, type EventCodec, type LogPosition, type RecordedEvent } from '../../../src/ports/event-store';

type Note = { text: string };
const noteCodec: EventCodec<Note> = {
  encode: (note) => ({ type: 'Noted', data: { text: note.text }, metadata: null }),
  decode(stored) {
    const data = stored.data;
    if (stored.type !== 'Noted' || typeof data !== 'object' || data === null || Array.isArray(data) || typeof data['text'] !== 'string') {
      throw new Error(`not a note: ${stored.type}`);
    }
    return { text: data['text'] };
  },
};

const PREFIX = 'run7-';
const toPortEvent = (recorded: ClientRecordedEvent): RecordedEvent<Note> | null => {
  const streamId = toPortStreamId(PREFIX, recorded.streamId);
  return streamId === null ? null : toRecordedEvent(recorded, streamId, noteCodec);
};

let nextRevision = 0n;
function stored(streamId: string, position: LogPosition, type = 'Noted', data: unknown = { text: `${position.tx}` }): ClientResolvedEvent {
  return {
    event: {
      streamId,
      id: `00000000-0000-4000-8000-${position.tx.toString().padStart(12, '0')}`,
      revision: nextRevision++,
      type,
      created: new Date(0),
      isJson: true,
      data,
      metadata: undefined,
      position: { commit: position.tx, prepare: position.seq },
    },
  };
}

const at = (tx: bigint, seq = tx): LogPosition => ({ tx, seq });
const texts = (events: readonly RecordedEvent<Note>[]) => events.map((e) => e.event.text);

/** A log as the server returns it from `from` inclusive: our events, another run's, system records. */
const log = [
  stored('$$run7-account-1', at(100n), '$metadata', { $maxAge: 1 }),
  stored('run7-account-1', at(200n)),
  stored('run8-account-1', at(300n)),
  stored('run7-account-2', at(400n, 380n)),
  stored('run7-account-2', at(400n, 390n)),
  stored('$stats-node', at(500n), '$statsCollected', {}),
  stored('run7-account-1', at(600n)),
];

async function* source(events: readonly ClientResolvedEvent[], onReturn?: () => void) {
  try {
    yield* events;
  } finally {
    onReturn?.();
  }
}

describe('readAll over $all', () => {
  test('keeps only this prefix, skips system events, in log order, with the prefix removed', async () => {
    const events = await collectAfter(source(log), START, toPortEvent);
    expect(events.map((e) => [e.streamId, e.position])).toEqual([
      ['account-1', at(200n)],
      ['account-2', at(400n, 380n)],
      ['account-2', at(400n, 390n)],
      ['account-1', at(600n)],
    ]);
  });

  test('skips the event at exactly `from`: KurrentDB starts there, the port starts after it', async () => {
    const fromSecond = log.slice(3);
    expect(texts(await collectAfter(source(fromSecond), at(400n, 380n), toPortEvent))).toEqual(['400', '600']);
  });

  test('two events of one commit are told apart by their prepare position', async () => {
    const events = await collectAfter(source(log.slice(3)), at(400n, 390n), toPortEvent);
    expect(events.map((e) => e.position)).toEqual([at(600n)]);
  });

  test('maxCount counts only returned events and stops reading the source', async () => {
    let returned = false;
    const events = await collectAfter(
      source(log, () => (returned = true)),
      START,
      toPortEvent,
      2,
    );
    expect(events.map((e) => e.position)).toEqual([at(200n), at(400n, 380n)]);
    expect(returned).toBe(true);
  });

  test('maxCount 0 reads nothing', async () => {
    let started = false;
    async function* untouched() {
      started = true;
      yield* log;
    }
    expect(await collectAfter(untouched(), START, toPortEvent, 0)).toEqual([]);
    expect(started).toBe(false);
  });

  test('an undecodable event fails the read with EventDecodeError naming it', async () => {
    const drifted = [...log.slice(0, 2), stored('run7-account-3', at(250n), 'NotedV0', { body: 'x' }), ...log.slice(2)];
    await expect(collectAfter(source(drifted), START, toPortEvent)).rejects.toMatchObject({
      name: 'EventDecodeError',
      streamId: 'account-3',
      position: at(250n),
      eventType: 'NotedV0',
    });
  });
});

/** A stand-in for the client's subscription: the same object-mode Readable, plus unsubscribe. */
function fakeSubscription() {
  const stream = new PassThrough({ objectMode: true });
  let unsubscribed = 0;
  const subscription = Object.assign(stream, {
    unsubscribe: async () => {
      unsubscribed += 1;
    },
  });
  return { subscription, unsubscribed: () => unsubscribed };
}

describe('subscribe over $all', () => {
  test('delivers events strictly after `from`, skipping system events and other prefixes', async () => {
    const { subscription } = fakeSubscription();
    const received = lastValueFrom(observeAfter(() => subscription, at(200n), toPortEvent).pipe(toArray()));
    for (const event of log) subscription.write(event);
    subscription.end();
    expect((await received).map((e) => e.position)).toEqual([at(400n, 380n), at(400n, 390n), at(600n)]);
  });

  test('opens the client subscription only when subscribed, once per subscriber', () => {
    let opened = 0;
    const observable = observeAfter(
      () => {
        opened += 1;
        return fakeSubscription().subscription;
      },
      START,
      toPortEvent,
    );
    expect(opened).toBe(0);
    const a = observable.subscribe();
    const b = observable.subscribe();
    expect(opened).toBe(2);
    a.unsubscribe();
    b.unsubscribe();
  });

  test("unsubscribing cancels the client's subscription", () => {
    const { subscription, unsubscribed } = fakeSubscription();
    const handle = observeAfter(() => subscription, START, toPortEvent).subscribe();
    expect(unsubscribed()).toBe(0);
    handle.unsubscribe();
    expect(unsubscribed()).toBe(1);
  });

  test('taking the first event is enough to cancel the client subscription', async () => {
    const { subscription, unsubscribed } = fakeSubscription();
    const first = firstValueFrom(observeAfter(() => subscription, START, toPortEvent).pipe(take(1)));
    subscription.write(log[1]);
    expect((await first).streamId).toBe('account-1');
    expect(unsubscribed()).toBe(1);
  });

  test('an undecodable event ends the Observable with EventDecodeError and cancels the subscription', async () => {
    const { subscription, unsubscribed } = fakeSubscription();
    const received: RecordedEvent<Note>[] = [];
    const done = new Promise<unknown>((resolve) => {
      observeAfter(() => subscription, START, toPortEvent).subscribe({
        next: (event) => received.push(event),
        error: resolve,
        complete: () => resolve('completed'),
      });
    });
    subscription.write(log[1]);
    subscription.write(stored('run7-account-3', at(250n), 'NotedV0', { body: 'x' }));
    subscription.write(log[6]);
    const error = await done;
    expect(error).toBeInstanceOf(EventDecodeError);
    expect(texts(received)).toEqual(['200']);
    expect(unsubscribed()).toBe(1);
  });

  test('a subscription error ends the Observable with that error', async () => {
    const { subscription } = fakeSubscription();
    const failed = lastValueFrom(observeAfter(() => subscription, START, toPortEvent));
    const dropped = new Error('subscription dropped: leader changed');
    subscription.destroy(dropped);
    await expect(failed).rejects.toBe(dropped);
  });
});
