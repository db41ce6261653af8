import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { accountStreamId, availableOf } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { releaseAbandonedReservation } from '../../../src/inference/serve-request';
import { systemMetadata } from '../../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../../support/gateway';

/**
 * A reservation whose placement failed with an unknown outcome (the commit landed, the answer
 * was lost) would otherwise stay held until its deadline, since its instance lives on: the
 * inference route releases it. Real ledger on a real database.
 */
describe('a placement of unknown outcome is released', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    });
  });
  afterAll(() => gw.stop());

  const lines: string[] = [];
  const deps = () => ({
    ledger: gw.gateway.ledger,
    logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }),
    maxRequestDurationMs: 60_000,
  });

  async function fundedAccount(): Promise<string> {
    const { ledger } = gw.gateway;
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await ledger.accounts.handle(stream, {
      type: 'OpenAccount',
      data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' },
      metadata: systemMetadata('test'),
    });
    await ledger.accounts.handle(stream, { type: 'CompleteTopUp', data: { paymentReference: 'pi_1', amount: usd('10') }, metadata: systemMetadata('test') });
    return stream;
  }

  test('when the reservation was written after all, its hold returns (released, uncharged)', async () => {
    const { ledger, instance } = gw.gateway;
    const stream = await fundedAccount();
    const placed = await ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: { requestId: 'req_lost_ack', keyId: 'k', model: 'm', operation: 'chat', amount: usd('3'), priceVersion: 1, instanceId: instance.id },
      metadata: systemMetadata('test'),
    });
    expect(placed.ok && availableOf(placed.state)).toBe(usd('7'));
    await releaseAbandonedReservation(deps(), stream, 'req_lost_ack', systemMetadata('test'));
    const { events } = await ledger.store.readStream(stream);
    expect(events.filter((e) => e.event.type === 'ReservationReleased').map((e) => e.event.data)).toEqual([
      { requestId: 'req_lost_ack', amount: usd('3'), reason: 'gateway_error' },
    ]);
    expect(availableOf((await ledger.accounts.load(stream)).state)).toBe(usd('10'));
    expect(lines.some((l) => l.includes('released a reservation whose placement seemed to fail'))).toBe(true);
  });

  test('when it was never written, nothing is recorded', async () => {
    const { ledger } = gw.gateway;
    const stream = await fundedAccount();
    const before = (await ledger.store.readStream(stream)).events.length;
    await releaseAbandonedReservation(deps(), stream, 'req_never_written', systemMetadata('test'));
    expect((await ledger.store.readStream(stream)).events.length).toBe(before);
  });
});
