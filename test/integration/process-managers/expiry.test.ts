import { randomUUID } from 'node:crypto';
import { accountStreamId, availableOf, promoBalanceOf } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { addMs } from '../../../domain/time';
import { systemMetadata } from '../../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { until } from '../../support/wait';

describe('expiry process', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // No upstream is needed: the reservation below comes from "a gateway that crashed".
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
      env: { TOLLGATE_RESERVATION_TTL_S: '1', TOLLGATE_EXPIRY_INTERVAL_S: '0.2' },
    });
  });
  afterAll(() => gw.stop());

  test('a reservation whose gateway never came back expires after its TTL and the hold returns in full', async () => {
    const { ledger } = gw.gateway;
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await ledger.accounts.handle(stream, { type: 'OpenAccount', data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' }, metadata: systemMetadata('test') });
    await ledger.accounts.handle(stream, { type: 'CompleteTopUp', data: { paymentReference: 'pi_1', amount: usd('10') }, metadata: systemMetadata('test') });
    const placed = await ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: { requestId: 'req_crashed', keyId: 'k', model: 'm', operation: 'chat', amount: usd('3'), priceVersion: 1 },
      metadata: systemMetadata('test'),
    });
    expect(placed.ok && availableOf(placed.state)).toBe(usd('7'));

    const expired = await until(async () => {
      const { events } = await ledger.store.readStream(stream);
      return events.find((e) => e.event.type === 'ReservationExpired');
    });
    expect(expired.event).toMatchObject({ type: 'ReservationExpired', data: { requestId: 'req_crashed', amount: usd('3') }, metadata: { actor: { kind: 'system', process: 'expiry' } } });
    const { state } = await ledger.accounts.load(stream);
    expect(availableOf(state)).toBe(usd('10'));
    expect(state.openReservations.size).toBe(0);
  });

  test('promo credit lapses at its expiry, and only its unspent remainder', async () => {
    const { ledger } = gw.gateway;
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await ledger.accounts.handle(stream, { type: 'OpenAccount', data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' }, metadata: systemMetadata('test') });
    const now = new Date().toISOString();
    await ledger.accounts.handle(stream, {
      type: 'GrantPromoCredit',
      data: { grantId: 'welcome', amount: usd('2'), expiresAt: addMs(now, 1_000), reason: 'test' },
      metadata: systemMetadata('test'),
    });
    const lapsed = await until(async () => {
      const { events } = await ledger.store.readStream(stream);
      return events.find((e) => e.event.type === 'PromoCreditExpired');
    });
    expect(lapsed.event).toMatchObject({ data: { grantId: 'welcome', amount: usd('2') } });
    expect(promoBalanceOf((await ledger.accounts.load(stream)).state)).toBe(0n);
    // The read model forgets the grant once the projection has seen its expiry.
    await gw.gateway.projections.get('expiries')!.reached(await ledger.store.latestPosition());
    const { rows } = await gw.gateway.database.pool.query('SELECT count(*)::int AS n FROM expiries WHERE stream_id = $1', [stream]);
    expect(rows[0].n).toBe(0);
  });
});
