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
    // No upstream is needed: the reservations below come from "gateways that crashed".
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
      env: { TOLLGATE_EXPIRY_INTERVAL_S: '0.2', TOLLGATE_INSTANCE_LEASE_S: '2' },
    });
  });
  afterAll(() => gw.stop());

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

  async function place(stream: string, requestId: string, options: { instanceId?: string; at?: string } = {}) {
    const metadata = { ...systemMetadata('test'), ...(options.at ? { now: options.at } : {}) };
    const placed = await gw.gateway.ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: {
        requestId,
        keyId: 'k',
        model: 'm',
        operation: 'chat',
        amount: usd('3'),
        priceVersion: 1,
        ...(options.instanceId ? { instanceId: options.instanceId } : {}),
      },
      metadata,
    });
    expect(placed.ok).toBe(true);
  }

  const expiredEvent = (stream: string, requestId: string) =>
    until(async () => {
      const { events } = await gw.gateway.ledger.store.readStream(stream);
      return events.find((e) => e.event.type === 'ReservationExpired' && e.event.data.requestId === requestId);
    });

  test('this instance runs the workers: it holds the workers role on a live lease', async () => {
    const { rows } = await gw.gateway.database.pool.query(
      `SELECT r.instance_id, l.pid, l.lapses_at > now() AS live FROM instance_roles r JOIN instance_leases l USING (instance_id) WHERE r.role = 'workers'`,
    );
    expect(rows).toEqual([{ instance_id: gw.gateway.instance.id, pid: process.pid, live: true }]);
    expect(gw.gateway.instance.runsWorkers).toBe(true);
  });

  test('a reservation whose instance lease lapsed is expired before its deadline, and the hold returns in full', async () => {
    const { ledger, database } = gw.gateway;
    // A gateway that registered, placed a reservation, then died: its lease lapsed a moment ago.
    await database.pool.query(
      `INSERT INTO instance_leases (instance_id, host, pid, lapses_at) VALUES ('gw-dead', 'elsewhere', 1, now() - interval '1 second')`,
    );
    const stream = await fundedAccount();
    await place(stream, 'req_crashed', { instanceId: 'gw-dead' });

    const expired = await expiredEvent(stream, 'req_crashed');
    expect(expired.event).toMatchObject({
      type: 'ReservationExpired',
      data: { requestId: 'req_crashed', amount: usd('3') },
      metadata: { actor: { kind: 'system', process: 'expiry' } },
    });
    const { state } = await ledger.accounts.load(stream);
    expect(availableOf(state)).toBe(usd('10'));
    expect(state.openReservations.size).toBe(0);
  });

  test("a live instance's reservation is not expired before its deadline; once its lease lapses it is", async () => {
    const { ledger, database } = gw.gateway;
    await database.pool.query(`INSERT INTO instance_leases (instance_id, host, pid, lapses_at) VALUES ('gw-alive', 'elsewhere', 2, now() + interval '1 hour')`);
    const stream = await fundedAccount();
    await place(stream, 'req_live', { instanceId: 'gw-alive' });
    // Its row is in the read model and the process has run over it several times since.
    await gw.gateway.projections.get('expiries')!.reached(await ledger.store.latestPosition());
    const { rows } = await database.pool.query('SELECT instance_id FROM expiries WHERE stream_id = $1', [stream]);
    expect(rows).toEqual([{ instance_id: 'gw-alive' }]);
    const passes = await gw.gateway.expiry.runOnce();
    expect(passes.reservationsExpired).toBe(0);
    expect((await ledger.accounts.load(stream)).state.openReservations.has('req_live')).toBe(true);

    await database.pool.query(`UPDATE instance_leases SET lapses_at = now() WHERE instance_id = 'gw-alive'`);
    await expiredEvent(stream, 'req_live');
    expect(availableOf((await ledger.accounts.load(stream)).state)).toBe(usd('10'));
  });

  test('an instance never expires its own reservations for a lapse: it knows it is alive (a database outage may outlast its lease)', async () => {
    const { ledger, database, instance, expiry } = gw.gateway;
    const stream = await fundedAccount();
    await place(stream, 'req_mine', { instanceId: instance.id });
    await gw.gateway.projections.get('expiries')!.reached(await ledger.store.latestPosition());
    // As after an outage, before this instance's next renewal: its own lease reads as lapsed.
    await database.pool.query("UPDATE instance_leases SET lapses_at = now() - interval '1 second' WHERE instance_id = $1", [instance.id]);
    expect((await expiry.runOnce()).reservationsExpired).toBe(0);
    expect((await ledger.accounts.load(stream)).state.openReservations.has('req_mine')).toBe(true);
    await ledger.accounts.handle(stream, {
      type: 'ReleaseReservation',
      data: { requestId: 'req_mine', reason: 'gateway_error' },
      metadata: systemMetadata('test'),
    });
  });

  test('a reservation of unknown instance (placed before leases) expires at its deadline', async () => {
    const { ledger } = gw.gateway;
    const stream = await fundedAccount();
    // Placed long enough ago that its deadline (maximum request duration + grace) has passed.
    await place(stream, 'req_old', { at: new Date(Date.now() - 2 * 3_600_000 - 120_000).toISOString() });
    await expiredEvent(stream, 'req_old');
    expect(availableOf((await ledger.accounts.load(stream)).state)).toBe(usd('10'));
  });

  test('promo credit lapses at its expiry, and only its unspent remainder', async () => {
    const { ledger } = gw.gateway;
    const accountId = randomUUID();
    const stream = accountStreamId(accountId);
    await ledger.accounts.handle(stream, {
      type: 'OpenAccount',
      data: { accountId, displayNameCiphertext: 'x', emailCiphertext: 'x' },
      metadata: systemMetadata('test'),
    });
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
