import { domainEventCodec, EventCodecError } from '../../../../domain/events/codec';
import { eventRegistry, type DomainEvent } from '../../../../domain/events/catalogue';
import { usd } from '../../../../domain/money/money';
import type { EventCodec } from '../../../../src/ports/event-store';
import { ev, opened, promoGranted, reservationPlaced, T0 } from '../account/fixtures';

const settled = ev('ReservationSettled', {
  requestId: 'r1',
  keyId: 'key-1',
  model: 'm',
  operation: 'embedding',
  reservedAmount: usd('1'),
  actualCost: 12_345_678_901_234_567_890n,
  fromPromo: [{ grantId: 'g1', amount: 5n }],
  fromPurchased: 12_345_678_901_234_567_885n,
  usage: { inputTokens: 9_007_199_254_740_993n, outputTokens: 0n, estimated: true },
  priceVersion: 7,
  outcome: 'client_disconnected',
});

const samples: DomainEvent[] = [
  opened,
  ev('TopUpCompleted', { paymentReference: 'pay-1', amount: usd('10'), autoTopUpAttemptId: 'att-1' }),
  promoGranted('g1', usd('5'), '2026-02-01T00:00:00+01:00'),
  reservationPlaced('r1', usd('0.4')),
  settled,
  ev('ReservationReleased', { requestId: 'r1', amount: 1n, reason: 'upstream_error_no_tokens' }),
  ev('RefundIssued', { refundId: 'x', amount: 3n, paymentReferences: ['pay-1', 'pay-2'] }),
  ev('AutoTopUpConfigured', { autoTopUp: null }),
  ev('PersonalDataErased', {}),
  ev('PersonalDataCorrected', { displayNameCiphertext: null, emailCiphertext: 'pd1.a.b.c' }),
  {
    type: 'RetentionRunCompleted',
    data: {
      runId: 'run-1',
      asOf: T0,
      auditEntriesPurged: 2n,
      auditAnchor: { entryNo: 2n, hash: 'f'.repeat(64) },
      requestMetadataPurged: 0n,
      personalDataErased: ['a1'],
    },
    metadata: { correlationId: 'c', causationId: 'c', actor: { kind: 'system', process: 'retention' }, occurredAt: T0 },
  },
  {
    type: 'PriceSet',
    data: { version: 1, modelId: 'm', operation: 'chat', inputPerMillion: 150_000n, outputPerMillion: 600_000n, effectiveAt: T0 },
    metadata: { correlationId: 'c', causationId: 'c', actor: { kind: 'admin', adminId: 'ada' }, occurredAt: T0 },
  },
  {
    type: 'ApiKeyIssued',
    data: { keyId: 'k1', accountId: 'a1', prefix: 'tg_abc', secretHash: '$2b$10$' + 'a'.repeat(53), name: 'ci', scopes: ['inference'] },
    metadata: { correlationId: 'c', causationId: 'c', actor: { kind: 'customer_key', keyId: 'k0' }, occurredAt: T0 },
  },
];

describe('domainEventCodec', () => {
  it('is an EventCodec<DomainEvent> for the event store port (checked by the compiler)', () => {
    const asPort: EventCodec<DomainEvent> = domainEventCodec;
    expect(asPort).toBe(domainEventCodec);
  });

  it.each(samples.map((e) => [e.type, e] as const))('round-trips %s through JSON text', (_type, event) => {
    const stored = JSON.parse(JSON.stringify(domainEventCodec.encode(event)));
    expect(domainEventCodec.decode(stored)).toEqual(event);
  });

  it('stores bigint as decimal strings, so amounts above 2^53 survive', () => {
    const encoded = domainEventCodec.encode(settled) as unknown as { data: { actualCost: unknown; usage: { inputTokens: unknown } } };
    expect(encoded.data.actualCost).toBe('12345678901234567890');
    expect(encoded.data.usage.inputTokens).toBe('9007199254740993');
    const decoded = domainEventCodec.decode(JSON.parse(JSON.stringify(encoded)));
    expect(decoded.type === 'ReservationSettled' && decoded.data.actualCost).toBe(12_345_678_901_234_567_890n);
  });

  it('writes the current schema version into stored metadata', () => {
    expect(domainEventCodec.encode(reservationPlaced('r1', 1n)).metadata).toMatchObject({ schemaVersion: 2 });
    expect(domainEventCodec.encode(opened).metadata).toMatchObject({ schemaVersion: 1, occurredAt: T0 });
  });

  it('upcasts ReservationPlaced v1 (no operation, chat only) to v2 with operation chat', () => {
    const v1 = {
      type: 'ReservationPlaced',
      data: { requestId: 'r1', keyId: 'key-1', model: 'llama-3.1-8b', amount: '400000', priceVersion: 1, expiresAt: '2026-01-01T00:10:00.000Z' },
      metadata: { correlationId: 'req-corr-1', causationId: 'cmd-1', actor: { kind: 'system', process: 'test' }, occurredAt: T0, schemaVersion: 1 },
    };
    expect(domainEventCodec.decode(v1)).toEqual(reservationPlaced('r1', 400_000n));
  });

  it('decodes a ReservationPlaced written before instances held leases with no instance (instanceId null)', () => {
    const stored = domainEventCodec.encode(reservationPlaced('r1', 400_000n)) as { type: string; data: Record<string, unknown>; metadata: unknown };
    const { instanceId, ...before } = stored.data;
    expect(instanceId).toBeNull();
    expect(domainEventCodec.decode({ ...stored, data: before })).toEqual(reservationPlaced('r1', 400_000n));
    expect(domainEventCodec.decode(domainEventCodec.encode(reservationPlaced('r1', 1n, { instanceId: 'gw-a' })))).toEqual(
      reservationPlaced('r1', 1n, { instanceId: 'gw-a' }),
    );
  });

  it('every definition has an upcaster for each older version', () => {
    for (const def of eventRegistry.values()) {
      for (let v = 1; v < def.version; v++) expect(def.upcasters.some((u) => u.from === v)).toBe(true);
    }
  });

  const good = () =>
    JSON.parse(JSON.stringify(domainEventCodec.encode(ev('TopUpCompleted', { paymentReference: 'p', amount: 10n, autoTopUpAttemptId: null }))));
  it.each<[string, (s: { type: string; data: any; metadata: any }) => void]>([
    ['a fractional amount', (s) => (s.data.amount = '10.5')],
    ['an amount as a JSON number', (s) => (s.data.amount = 10)],
    ['a negative top-up', (s) => (s.data.amount = '-10')],
    ['a missing field', (s) => delete s.data.paymentReference],
    ['an unknown event type', (s) => (s.type = 'MoneyPrinted')],
    ['missing metadata', (s) => (s.metadata = null)],
    ['an unknown actor kind', (s) => (s.metadata.actor = { kind: 'robot' })],
    ['a schema version newer than the code', (s) => (s.metadata.schemaVersion = 2)],
    ['an occurredAt that is not an instant', (s) => (s.metadata.occurredAt = 'yesterday')],
  ])('refuses %s with EventCodecError', (_what, corrupt) => {
    const stored = good();
    corrupt(stored);
    expect(() => domainEventCodec.decode(stored)).toThrow(EventCodecError);
  });

  it('refuses an invalid v1 before upcasting it', () => {
    const v1 = { type: 'ReservationPlaced', data: { requestId: 'r1' }, metadata: { ...good().metadata, schemaVersion: 1 } };
    expect(() => domainEventCodec.decode(v1)).toThrow(/invalid v1 data/);
  });

  it('names paths, never stored values, in its messages', () => {
    const stored = good();
    stored.data.paymentReference = 42;
    stored.data.amount = 'secret-looking-value';
    expect(() => domainEventCodec.decode(stored)).toThrow(/paymentReference/);
    expect(() => domainEventCodec.decode(stored)).not.toThrow(/secret-looking-value/);
  });
});
