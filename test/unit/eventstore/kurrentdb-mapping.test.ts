/**
 * The KurrentDB adapter's translations, tested against the client's own classes: real
 * WrongExpectedVersionError instances, real protobuf messages decoded by the client's converter.
 * No KurrentDB server runs on this machine, so this is what proves the mapping here.
 */
import { NO_STREAM, START as CLIENT_START, jsonEvent, WrongExpectedVersionError, type JSONType, type ResolvedEvent } from '@eventstore/db-client';
import { ReadResp } from '@eventstore/db-client/generated/streams_pb';
import { StreamIdentifier, WrongExpectedVersion } from '@eventstore/db-client/generated/shared_pb';
import { Empty } from 'google-protobuf/google/protobuf/empty_pb';
import { convertGrpcEvent } from '@eventstore/db-client/dist/utils/convertGrpcEvent';
import { createUUID } from '@eventstore/db-client/dist/utils/grpcUUID';
import fc from 'fast-check';
import {
  appendWasWritten,
  findPartialRetryId,
  isStrictlyAfter,
  isSystemEvent,
  MissingLogPositionError,
  retrySlots,
  toClientConnectionString,
  toClientEventData,
  toClientExpectedRevision,
  toClientReadPosition,
  toLogPosition,
  toPortStreamId,
  toRecordedEvent,
  toStreamName,
  toStreamRevision,
  toVersionConflict,
  type ClientRecordedEvent,
} from '../../../adapters/eventstore/kurrentdb/mapping';
import { EventDecodeError, START, VersionConflictError, type EncodedEvent, type EventCodec, type LogPosition } from '../../../src/ports/event-store';

type Deposit = { type: 'Deposited'; amount: bigint };

/** Money travels as a decimal string; anything else is schema drift. */
const depositCodec: EventCodec<Deposit> = {
  encode: (event) => ({ type: event.type, data: { amount: event.amount.toString() }, metadata: { v: 1 } }),
  decode(stored: EncodedEvent): Deposit {
    const data = stored.data;
    if (stored.type !== 'Deposited' || typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new Error(`unknown event ${stored.type}`);
    }
    const amount = data['amount'];
    if (typeof amount !== 'string' || !/^\d+$/.test(amount)) throw new Error('amount is not a decimal string');
    return { type: 'Deposited', amount: BigInt(amount) };
  },
};

const positionArb = fc.record({ tx: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), seq: fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }) });

interface WireEvent {
  streamName: string;
  id: string;
  revision: bigint;
  type: string;
  contentType?: string;
  data: Uint8Array;
  metadata?: Uint8Array;
  position?: { commit: bigint; prepare: bigint };
  createdMs?: bigint;
}

/** A stored event as the server sends it over gRPC, read back through the client's own converter. */
function fromWire(wire: WireEvent): ClientRecordedEvent {
  const record = new ReadResp.ReadEvent.RecordedEvent();
  record.setId(createUUID(wire.id));
  record.setStreamIdentifier(new StreamIdentifier().setStreamName(Buffer.from(wire.streamName, 'utf8')));
  record.setStreamRevision(wire.revision.toString());
  if (wire.position !== undefined) {
    record.setCommitPosition(wire.position.commit.toString());
    record.setPreparePosition(wire.position.prepare.toString());
  }
  record.getMetadataMap().set('type', wire.type);
  record.getMetadataMap().set('content-type', wire.contentType ?? 'application/json');
  // The server sends `created` in 100 ns ticks since the Unix epoch.
  record.getMetadataMap().set('created', ((wire.createdMs ?? 0n) * 10_000n).toString());
  record.setData(wire.data);
  if (wire.metadata !== undefined) record.setCustomMetadata(wire.metadata);
  const readEvent = new ReadResp.ReadEvent().setEvent(record);
  if (wire.position !== undefined) readEvent.setCommitPosition(wire.position.commit.toString());
  else readEvent.setNoPosition(new Empty());
  const resolved = convertGrpcEvent<ResolvedEvent>(readEvent);
  if (resolved.event === undefined) throw new Error('converter dropped the event');
  return resolved.event;
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value), 'utf8');
const ID = '5c4b7a3e-2f1d-4e8a-9b6c-0d1e2f3a4b5c';

describe('expected version -> client expected revision', () => {
  test.each([['no_stream', NO_STREAM]] as const)('%s maps to the client constant %s', (port, client) => {
    expect(toClientExpectedRevision(port)).toBe(client);
  });

  test('a revision passes through as the same bigint, up to the top of int64', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 63n - 1n }), (revision) => {
        expect(toClientExpectedRevision(revision)).toBe(revision);
      }),
    );
  });

  test('a negative revision is refused before it reaches the server', () => {
    expect(() => toClientExpectedRevision(-1n)).toThrow(RangeError);
  });
});

describe('log positions', () => {
  test('tx is the commit position and seq the prepare position', () => {
    expect(toLogPosition({ commit: 1200n, prepare: 1100n })).toEqual({ tx: 1200n, seq: 1100n });
  });

  test('START reads $all from its start', () => {
    expect(toClientReadPosition(START)).toBe(CLIENT_START);
  });

  test('any other position goes to the client as (commit, prepare) and comes back unchanged', () => {
    fc.assert(
      fc.property(positionArb, (position) => {
        fc.pre(position.tx !== 0n || position.seq !== 0n);
        const client = toClientReadPosition(position);
        expect(client).toEqual({ commit: position.tx, prepare: position.seq });
        if (client === 'start' || client === 'end') throw new Error('expected a position');
        expect(toLogPosition(client)).toEqual(position);
      }),
    );
  });

  test('KurrentDB reads inclusively, the port exclusively: the position itself is not after itself', () => {
    const from: LogPosition = { tx: 500n, seq: 480n };
    expect(isStrictlyAfter(from, from)).toBe(false);
    expect(isStrictlyAfter({ tx: 500n, seq: 490n }, from)).toBe(true);
    expect(isStrictlyAfter({ tx: 501n, seq: 0n }, from)).toBe(true);
    expect(isStrictlyAfter({ tx: 499n, seq: 999n }, from)).toBe(false);
  });

  test('strictly-after agrees with the port ordering for any pair', () => {
    fc.assert(
      fc.property(positionArb, positionArb, (a, b) => {
        const after = a.tx > b.tx || (a.tx === b.tx && a.seq > b.seq);
        expect(isStrictlyAfter(a, b)).toBe(after);
      }),
    );
  });
});

describe('version conflicts', () => {
  test("the client's WrongExpectedVersionError becomes VersionConflictError with the actual revision", () => {
    const error = new WrongExpectedVersionError(undefined, { streamName: 'run1-account-7', expected: 3n, current: 5n });
    const conflict = toVersionConflict(error, 'account-7', 3n);
    expect(conflict).toBeInstanceOf(VersionConflictError);
    expect(conflict).toMatchObject({ streamId: 'account-7', expected: 3n, actual: 5n });
  });

  test('a conflict on a missing stream reports actual null', () => {
    const error = new WrongExpectedVersionError(undefined, { streamName: 'account-7', expected: 0n, current: NO_STREAM });
    expect(toVersionConflict(error, 'account-7', 0n)).toMatchObject({ expected: 0n, actual: null });
  });

  test('the protobuf details the server sends map through the client to the same port error', () => {
    const onExisting = new WrongExpectedVersion().setExpectedNoStream(new Empty()).setCurrentStreamRevision('0');
    expect(toVersionConflict(WrongExpectedVersionError.fromWrongExpectedVersion(onExisting, 'a'), 'a', 'no_stream')).toMatchObject({
      expected: 'no_stream',
      actual: 0n,
    });
    const onMissing = new WrongExpectedVersion().setExpectedStreamPosition('4').setCurrentNoStream(new Empty());
    expect(toVersionConflict(WrongExpectedVersionError.fromWrongExpectedVersion(onMissing, 'a'), 'a', 4n)).toMatchObject({
      expected: 4n,
      actual: null,
    });
  });

  test("the client's no_stream is the port's null; revisions pass through", () => {
    expect(toStreamRevision(NO_STREAM)).toBeNull();
    expect(toStreamRevision(0n)).toBe(0n);
    expect(toStreamRevision(2n ** 62n)).toBe(2n ** 62n);
  });
});

describe('idempotent appends', () => {
  test.each([
    ['a new stream', null, 1n, true],
    ['a fresh append past the head', 4n, 6n, true],
    ['an exact retry: the server returns the stored revision, the head it found', 6n, 6n, false],
    ['an exact retry after the stream moved on', 9n, 6n, false],
  ] as const)('%s (head %s, returned %s) -> written %s', (_case, headBefore, next, written) => {
    expect(appendWasWritten(headBefore, next)).toBe(written);
  });

  test.each([
    ['no_stream: the first slots of the stream', 'no_stream', { fromRevision: 0n, maxCount: 2 }],
    ['a revision: the slots right after it', 4n, { fromRevision: 5n, maxCount: 2 }],
  ] as const)('after a conflict at %s, the retry check reads those slots', (_case, expected, slots) => {
    expect(retrySlots(expected, 2)).toEqual(slots);
  });

  test('a conflict where some but not all ids are already stored names the first stored id', () => {
    expect(findPartialRetryId(['a', 'b', 'c'], ['x', 'b', 'c'])).toBe('b');
  });

  test('a conflict with none of the ids stored is an ordinary concurrent write', () => {
    expect(findPartialRetryId(['a', 'b'], ['x', 'y'])).toBeNull();
  });

  test('all ids stored is not a partial retry', () => {
    expect(findPartialRetryId(['a', 'b'], ['a', 'b'])).toBeNull();
  });

  test('ids compare without regard to case (the server may return UUIDs lower-cased)', () => {
    expect(findPartialRetryId([ID.toUpperCase(), 'other'], [ID])).toBe(ID.toUpperCase());
  });
});

describe('event data sent to the server', () => {
  test("has the shape the client's own jsonEvent builder makes, with the event's id", () => {
    const encoded = depositCodec.encode({ type: 'Deposited', amount: 10_000_000n });
    const ours = toClientEventData(ID, encoded);
    const theirs = jsonEvent({
      id: ID,
      type: encoded.type,
      data: encoded.data as JSONType,
      metadata: encoded.metadata as JSONType,
    });
    expect(ours).toEqual(theirs);
  });

  test('null metadata is left out rather than sent as the text "null"', () => {
    expect(toClientEventData(ID, { type: 'T', data: {}, metadata: null }).metadata).toBeUndefined();
  });
});

describe('system events and stream prefixes', () => {
  test.each([
    [{ streamId: '$$account-1', type: '$metadata' }, true],
    [{ streamId: '$ce-account', type: '$>' }, true],
    [{ streamId: 'account-1', type: '$>' }, true],
    [{ streamId: '$stats-127.0.0.1:2113', type: '$statsCollected' }, true],
    [{ streamId: 'account-1', type: 'Deposited' }, false],
  ])('%o is a system event: %s', (event, system) => {
    expect(isSystemEvent(event)).toBe(system);
  });

  test('a prefixed stream name maps back to the port stream id', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (prefix, streamId) => {
        expect(toPortStreamId(prefix, toStreamName(prefix, streamId))).toBe(streamId);
      }),
    );
  });

  test("another prefix's stream is not this store's", () => {
    expect(toPortStreamId('run-a-', 'run-b-account-1')).toBeNull();
    expect(toPortStreamId('', 'account-1')).toBe('account-1');
  });
});

describe('stored events read back', () => {
  const position = { commit: 7_340_032n, prepare: 7_339_904n };

  test('decode into the port record: id, unprefixed stream, revision, (tx, seq), type, time', () => {
    const recorded = fromWire({
      streamName: 'run1-account-7',
      id: ID,
      revision: 3n,
      type: 'Deposited',
      data: json({ amount: '10000000' }),
      metadata: json({ v: 1 }),
      position,
      createdMs: 1_700_000_000_123n,
    });
    expect(toRecordedEvent(recorded, 'account-7', depositCodec)).toEqual({
      id: ID,
      streamId: 'account-7',
      revision: 3n,
      position: { tx: 7_340_032n, seq: 7_339_904n },
      type: 'Deposited',
      event: { type: 'Deposited', amount: 10_000_000n },
      recordedAt: new Date(1_700_000_000_123),
    });
  });

  test('the codec sees the stored type, data and metadata (absent metadata as null)', () => {
    const seen: EncodedEvent[] = [];
    const spy: EventCodec<EncodedEvent> = { encode: (e) => e, decode: (stored) => (seen.push(stored), stored) };
    toRecordedEvent(fromWire({ streamName: 's', id: ID, revision: 0n, type: 'Withdrawn', data: json({ amount: '5' }), position }), 's', spy);
    toRecordedEvent(
      fromWire({ streamName: 's', id: ID, revision: 1n, type: 'Withdrawn', data: json([1, 'x']), metadata: json({ by: 'ops' }), position }),
      's',
      spy,
    );
    expect(seen).toEqual([
      { type: 'Withdrawn', data: { amount: '5' }, metadata: null },
      { type: 'Withdrawn', data: [1, 'x'], metadata: { by: 'ops' } },
    ]);
  });

  test('a codec refusal becomes EventDecodeError naming stream, revision, position and type', () => {
    const recorded = fromWire({
      streamName: 'run1-account-7',
      id: ID,
      revision: 12n,
      type: 'Deposited',
      data: json({ amount: 12.5 }),
      position,
    });
    let thrown: unknown;
    try {
      toRecordedEvent(recorded, 'account-7', depositCodec);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(EventDecodeError);
    expect(thrown).toMatchObject({
      streamId: 'account-7',
      revision: 12n,
      position: { tx: position.commit, seq: position.prepare },
      eventType: 'Deposited',
    });
    expect((thrown as EventDecodeError).cause).toEqual(new Error('amount is not a decimal string'));
    expect((thrown as EventDecodeError).message).toContain('account-7@12');
  });

  test('binary event data is schema drift, reported as EventDecodeError', () => {
    const recorded = fromWire({
      streamName: 'account-7',
      id: ID,
      revision: 0n,
      type: 'Deposited',
      contentType: 'application/octet-stream',
      data: json({ amount: '1' }),
      position,
    });
    expect(() => toRecordedEvent(recorded, 'account-7', depositCodec)).toThrow(EventDecodeError);
  });

  test('malformed JSON data reaches the codec as text and is refused', () => {
    const recorded = fromWire({ streamName: 'a', id: ID, revision: 0n, type: 'Deposited', data: Buffer.from('{not json'), position });
    expect(() => toRecordedEvent(recorded, 'a', depositCodec)).toThrow(EventDecodeError);
  });

  test('an event without a log position (server before 22.6) is refused by name, not given a fake position', () => {
    const recorded = fromWire({ streamName: 'a', id: ID, revision: 0n, type: 'Deposited', data: json({ amount: '1' }) });
    // What the client makes of the unset protobuf fields: not undefined, but zeros.
    expect(recorded.position).toEqual({ commit: 0n, prepare: 0n });
    expect(() => toRecordedEvent(recorded, 'a', depositCodec)).toThrow(MissingLogPositionError);
    const { position: _unset, ...withoutPosition } = recorded;
    expect(() => toRecordedEvent(withoutPosition, 'a', depositCodec)).toThrow(MissingLogPositionError);
  });
});

describe('connection strings', () => {
  test.each([
    ['kurrentdb://localhost:2113?tls=false', 'esdb://localhost:2113?tls=false'],
    ['kurrentdb+discover://cluster.example:2113', 'esdb+discover://cluster.example:2113'],
    ['KurrentDB://admin:changeit@host:2113', 'esdb://admin:changeit@host:2113'],
    ['esdb://localhost:2113?tls=false', 'esdb://localhost:2113?tls=false'],
  ])('%s -> %s', (given, expected) => {
    expect(toClientConnectionString(given)).toBe(expected);
  });
});
