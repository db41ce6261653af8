import { domainEventCodec } from '../../../../domain/events/codec';
import { ev } from '../account/fixtures';

/**
 * Request metadata left the wallet events for the request log (issue 16): ReservationSettled and
 * ReservationReleased are at version 2 without it. Events stored at version 1 still decode, so a
 * replay of an old log works, and the metadata they held is dropped on read: no read model built
 * from them keeps it.
 */
describe('request metadata is no longer part of wallet events', () => {
  const request = { upstream: 'http://gpu-1:8000/v1', httpStatus: 200, stream: true, latencyMs: 812, timeToFirstTokenMs: 95 };

  const asStoredV1 = (event: ReturnType<typeof ev>, extra: Record<string, unknown>) => {
    const stored = domainEventCodec.encode(event);
    return {
      ...stored,
      data: { ...(stored.data as Record<string, unknown>), ...extra } as never,
      metadata: { ...(stored.metadata as object), schemaVersion: 1 } as never,
    };
  };

  test('a release is written at version 2, with no request metadata', () => {
    const stored = domainEventCodec.encode(ev('ReservationReleased', { requestId: 'r1', amount: 7n, reason: 'gateway_error' }));
    expect(stored.data).toEqual({ requestId: 'r1', amount: '7', reason: 'gateway_error' });
    expect(stored.metadata).toMatchObject({ schemaVersion: 2 });
  });

  test.each([
    ['with request metadata', { request }],
    ['with request: null', { request: null }],
    ['from before the field existed', {}],
  ])('a version-1 release stored %s decodes, its metadata dropped', (_label, extra) => {
    const released = ev('ReservationReleased', { requestId: 'r1', amount: 7n, reason: 'gateway_error' });
    const decoded = domainEventCodec.decode(asStoredV1(released, extra));
    expect(decoded).toEqual(released);
    expect(decoded.data).not.toHaveProperty('request');
  });

  test('a version-1 settlement with request metadata decodes to the money facts only', () => {
    const settled = ev('ReservationSettled', {
      requestId: 'r1',
      keyId: 'k1',
      model: 'm',
      operation: 'chat',
      reservedAmount: 10n,
      actualCost: 4n,
      fromPromo: [{ grantId: 'g', amount: 1n }],
      fromPurchased: 3n,
      usage: { inputTokens: 5n, outputTokens: 6n, estimated: false },
      priceVersion: 1,
      outcome: 'completed',
    });
    const decoded = domainEventCodec.decode(asStoredV1(settled, { request }));
    expect(decoded).toEqual(settled);
    expect(JSON.stringify(domainEventCodec.encode(decoded).data)).not.toContain('gpu-1');
  });

  test('a version-1 settlement whose money facts are malformed is refused, not guessed at', () => {
    const stored = domainEventCodec.encode(ev('ReservationReleased', { requestId: 'r1', amount: 7n, reason: 'gateway_error' }));
    expect(() =>
      domainEventCodec.decode({
        ...stored,
        data: { requestId: 'r1', amount: 'seven', reason: 'gateway_error', request } as never,
        metadata: { ...(stored.metadata as object), schemaVersion: 1 } as never,
      }),
    ).toThrow(/amount/);
  });
});
