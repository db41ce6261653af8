import { domainEventCodec } from '../../../../domain/events/codec';
import { ev } from '../account/fixtures';

describe('request metadata on settlements and releases', () => {
  const request = { upstream: 'http://gpu-1:8000/v1', httpStatus: 200, stream: true, latencyMs: 812, timeToFirstTokenMs: 95 };

  test('round-trips through the codec', () => {
    const released = ev('ReservationReleased', { requestId: 'r1', amount: 7n, reason: 'gateway_error', request });
    expect(domainEventCodec.decode(domainEventCodec.encode(released))).toEqual(released);
  });

  test('events stored before the field existed decode with request: null', () => {
    const stored = domainEventCodec.encode(ev('ReservationReleased', { requestId: 'r1', amount: 7n, reason: 'gateway_error', request }));
    const { request: _dropped, ...older } = stored.data as Record<string, unknown>;
    const decoded = domainEventCodec.decode({ ...stored, data: older as never });
    expect(decoded.type === 'ReservationReleased' && decoded.data.request).toBeNull();
  });
});
