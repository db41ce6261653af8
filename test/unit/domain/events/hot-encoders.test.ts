import fc from 'fast-check';
import { domainEventCodec, type DomainEvent } from '../../../../domain/events';
import { eventRegistry } from '../../../../domain/events/catalogue';
import { EventCodecError } from '../../../../domain/events/codec';
import { hotDataEncoders } from '../../../../domain/events/hot-encoders';
import { storedMetadataSchema } from '../../../../domain/events/metadata';

// The hand-written encoders must write exactly what the zod codec writes, field for field.

const id = fc.string({ minLength: 1, maxLength: 12 });
const natural = fc.bigInt({ min: 0n, max: 10n ** 20n });
const instant = fc.date({ min: new Date('2000-01-01T00:00:00Z'), max: new Date('2100-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString());
// Audio quantities are optional: absent on token requests, present on speech ones.
const usageOf = fc.record(
  { inputTokens: natural, outputTokens: natural, estimated: fc.boolean(), audioMilliseconds: natural, inputCharacters: natural },
  { requiredKeys: ['inputTokens', 'outputTokens', 'estimated'] },
);
const operation = fc.constantFrom('chat', 'completion', 'embedding', 'transcription', 'translation', 'speech');
const smallInt = fc.integer({ min: 0, max: 1_000_000 });
const actor = fc.oneof(
  fc.record({ kind: fc.constant('customer_key' as const), keyId: id }),
  fc.record({ kind: fc.constant('admin' as const), adminId: id }),
  fc.record({ kind: fc.constant('system' as const), process: id }),
);
const metadata = fc.record({ correlationId: id, causationId: id, actor, occurredAt: instant });

const hotEvents = fc.oneof(
  fc.record({
    type: fc.constant('ReservationPlaced'),
    data: fc.record({
      requestId: id,
      keyId: id,
      model: id,
      operation,
      amount: natural,
      priceVersion: fc.integer({ min: 1, max: 1_000 }),
      expiresAt: instant,
      instanceId: fc.option(id, { nil: null }),
    }),
    metadata,
  }),
  fc.record({
    type: fc.constant('ReservationSettled'),
    data: fc.record({
      requestId: id,
      keyId: id,
      model: id,
      operation,
      reservedAmount: natural,
      actualCost: natural,
      fromPromo: fc.array(fc.record({ grantId: id, amount: natural }), { maxLength: 3 }),
      fromPurchased: natural,
      usage: usageOf,
      priceVersion: fc.integer({ min: 1, max: 1_000 }),
      outcome: fc.constantFrom(
        'completed',
        'completed_after_disconnect',
        'client_disconnected',
        'max_duration_reached',
        'moderation_refusal',
        'upstream_error',
      ),
    }),
    metadata,
  }),
  fc.record({
    type: fc.constant('ReservationReleased'),
    data: fc.record({
      requestId: id,
      amount: natural,
      reason: fc.constantFrom('gateway_error', 'upstream_error_no_tokens', 'moderation_refusal_no_tokens_reported'),
    }),
    metadata,
  }),
  fc.record({
    type: fc.constant('RequestLogged'),
    data: fc.record({
      requestId: id,
      accountId: id,
      keyId: id,
      model: id,
      operation,
      ended: fc.constantFrom('settled', 'released'),
      outcome: id,
      usage: fc.option(usageOf, { nil: null }),
      upstream: fc.option(fc.webUrl(), { nil: null }),
      httpStatus: fc.option(fc.integer({ min: 100, max: 599 }), { nil: null }),
      stream: fc.boolean(),
      latencyMs: fc.option(smallInt, { nil: null }),
      timeToFirstTokenMs: fc.option(smallInt, { nil: null }),
    }),
    metadata,
  }),
) as fc.Arbitrary<DomainEvent>;

/** What the codec wrote before the hand-written encoders: zod's encode. */
function zodEncode(event: DomainEvent) {
  const def = eventRegistry.get(event.type)!;
  return {
    type: event.type,
    data: def.schema.encode(event.data as never),
    metadata: storedMetadataSchema.encode({ ...event.metadata, schemaVersion: def.version } as never),
  };
}

test('the hand-written encoders cover the events every request writes', () => {
  expect([...hotDataEncoders.keys()].sort()).toEqual(['RequestLogged', 'ReservationPlaced', 'ReservationReleased', 'ReservationSettled']);
});

test('they write exactly what zod writes (same JSON, same key order), and it decodes back to the event', () => {
  fc.assert(
    fc.property(hotEvents, (event) => {
      const fast = domainEventCodec.encode(event);
      expect(JSON.stringify(fast)).toBe(JSON.stringify(zodEncode(event)));
      expect(domainEventCodec.decode(JSON.parse(JSON.stringify(fast)))).toEqual(event);
    }),
    { numRuns: 2_000 },
  );
});

test('unknown keys are dropped, as zod drops them', () => {
  fc.assert(
    fc.property(hotEvents, (event) => {
      const padded = { ...event, data: { ...event.data, stray: 'x' }, metadata: { ...event.metadata, now: 'x' } } as unknown as DomainEvent;
      expect(JSON.stringify(domainEventCodec.encode(padded))).toBe(JSON.stringify(zodEncode(event)));
    }),
    { numRuns: 200 },
  );
});

test('an event that could not be read back is refused before it is written', () => {
  const event = fc.sample(hotEvents, { numRuns: 50, seed: 7 }).find((e) => e.type === 'ReservationPlaced')!;
  const negative = { ...event, data: { ...event.data, amount: -1n } } as DomainEvent;
  expect(() => domainEventCodec.encode(negative)).toThrow(EventCodecError);
  const badTime = { ...event, metadata: { ...event.metadata, occurredAt: 'yesterday' } } as DomainEvent;
  expect(() => domainEventCodec.encode(badTime)).toThrow(EventCodecError);
});
