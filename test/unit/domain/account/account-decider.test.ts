import { accountDecider } from '../../../../domain/account/decider';
import { availableOf, balanceOf, refundableOf } from '../../../../domain/account/state';
import { usd } from '../../../../domain/money/money';
import { deciderSpec } from '../decider-spec';
import { PRICE_V1, T0, cmd, ev, minutesAfterT0, opened, placeReservation, promoGranted, reservationPlaced, toppedUp } from './fixtures';

const given = deciderSpec(accountDecider());
const later = minutesAfterT0(30);
const nextWeek = minutesAfterT0(7 * 24 * 60);

describe('OpenAccount', () => {
  const open = cmd('OpenAccount', { accountId: 'acc-1', displayNameCiphertext: 'enc:name', emailCiphertext: 'enc:email' });
  it('opens an account, carrying personal data as the caller encrypted it', () => given([]).when(open).then([opened]));
  it('account_already_opened', () => given([opened]).when(open).then({ error: 'account_already_opened' }));
  it('account_not_open: any other command on a stream never opened', () =>
    given([])
      .when(cmd('CompleteTopUp', { paymentReference: 'p', amount: usd('10') }))
      .then({ error: 'account_not_open' }));
});

describe('CompleteTopUp', () => {
  const topUp = (amount: bigint, paymentReference = 'pay-1') => cmd('CompleteTopUp', { paymentReference, amount });
  it('credits purchased balance', () =>
    given([opened])
      .when(topUp(usd('10')))
      .then([toppedUp(usd('10'))]));
  it('a payment reference already applied is a no-op, so a redelivered payment never credits twice', () =>
    given([opened, toppedUp(usd('10'))])
      .when(topUp(usd('10')))
      .then([]));
  it('top_up_below_minimum', () =>
    given([opened])
      .when(topUp(usd('9.999999')))
      .then({ error: 'top_up_below_minimum', amount: usd('9.999999'), minimum: usd('10') }));
  it('amount_must_be_positive', () => given([opened]).when(topUp(0n)).thenRejectedWith('amount_must_be_positive'));
  it('balance_limit_exceeded: balance never above USD 10,000', () =>
    given([opened, toppedUp(usd('9995'))])
      .when(topUp(usd('10'), 'pay-2'))
      .then({ error: 'balance_limit_exceeded', balance: usd('9995'), amount: usd('10'), maximum: usd('10000') }));
  it('the limits come from the policy', () => {
    const strict = deciderSpec(accountDecider({ minimumTopUp: usd('50'), maximumBalance: usd('100'), reservationTtlMs: 1000 }));
    strict([opened])
      .when(topUp(usd('20')))
      .thenRejectedWith('top_up_below_minimum');
    strict([opened])
      .when(topUp(usd('101')))
      .thenRejectedWith('balance_limit_exceeded');
  });
  it('account_closed: no top-up after closing', () =>
    given([opened, ev('AccountClosed', { reason: 'customer_request' })])
      .when(topUp(usd('10')))
      .then({ error: 'account_closed' }));
  it('a top-up settles a negative balance first', () => {
    const settledShort = ev('ReservationSettled', {
      requestId: 'r1',
      keyId: 'key-1',
      model: 'llama-3.1-8b',
      operation: 'chat',
      reservedAmount: usd('1'),
      actualCost: usd('1.5'),
      fromPromo: [],
      fromPurchased: usd('1.5'),
      usage: { inputTokens: 0n, outputTokens: 750_000n, estimated: false },
      priceVersion: 1,
      outcome: 'completed',
    });
    const state = given([opened, toppedUp(usd('1')), reservationPlaced('r1', usd('1')), settledShort])
      .when(topUp(usd('10'), 'pay-2'))
      .thenState();
    expect(state.purchased).toBe(usd('9.5'));
  });
  it('reinstates an account suspended for a negative balance once the debt is paid', () =>
    given([opened, ev('AccountSuspended', { reason: 'negative_balance' })])
      .when(topUp(usd('10')))
      .then([toppedUp(usd('10')), ev('AccountReinstated', { reason: 'balance_restored', lifted: ['negative_balance'] })]));
  it('does not reinstate an account suspended for another reason', () =>
    given([opened, ev('AccountSuspended', { reason: 'terms_violation' })])
      .when(topUp(usd('10')))
      .then([toppedUp(usd('10'))]));
  it('ends the pending auto top-up it pays for', () => {
    const state = given([
      opened,
      ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('5'), amount: usd('20') } }),
      ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('20'), debt: 0n }),
    ])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-1', amount: usd('20'), autoTopUpAttemptId: 'att-1' }))
      .thenState();
    expect(state.pendingAutoTopUp).toBeNull();
  });
});

describe('GrantPromoCredit and ExpirePromoCredit', () => {
  const grant = (grantId = 'g1', amount = usd('5'), expiresAt = nextWeek) => cmd('GrantPromoCredit', { grantId, amount, expiresAt, reason: 'welcome' });
  it('grants promo credit with an expiry', () =>
    given([opened])
      .when(grant())
      .then([promoGranted('g1', usd('5'), nextWeek)]));
  it('promo_grant_already_exists', () =>
    given([opened, promoGranted('g1', usd('5'), nextWeek)])
      .when(grant())
      .then({ error: 'promo_grant_already_exists', grantId: 'g1' }));
  it('promo_expiry_not_in_future', () =>
    given([opened])
      .when(grant('g1', usd('5'), T0))
      .then({ error: 'promo_expiry_not_in_future', expiresAt: T0, now: T0 }));
  it('amount_must_be_positive for a grant', () => given([opened]).when(grant('g1', 0n)).thenRejectedWith('amount_must_be_positive'));
  it('balance_limit_exceeded counts promo credit too', () =>
    given([opened, toppedUp(usd('9999'))])
      .when(grant('g1', usd('2')))
      .thenRejectedWith('balance_limit_exceeded'));

  const expire = (now: string, grantId = 'g1') => cmd('ExpirePromoCredit', { grantId }, now);
  it('expires only the unspent remainder', () =>
    given([
      opened,
      promoGranted('g1', usd('5'), later),
      reservationPlaced('r1', usd('2')),
      ev('ReservationSettled', {
        requestId: 'r1',
        keyId: 'key-1',
        model: 'llama-3.1-8b',
        operation: 'chat',
        reservedAmount: usd('2'),
        actualCost: usd('2'),
        fromPromo: [{ grantId: 'g1', amount: usd('2') }],
        fromPurchased: 0n,
        usage: { inputTokens: 2_000_000n, outputTokens: 0n, estimated: false },
        priceVersion: 1,
        outcome: 'completed',
      }),
    ])
      .when(expire(later))
      .then([ev('PromoCreditExpired', { grantId: 'g1', amount: usd('3') }, later)]));
  it('promo_grant_not_yet_expired', () =>
    given([opened, promoGranted('g1', usd('5'), later)])
      .when(expire(T0))
      .then({ error: 'promo_grant_not_yet_expired', grantId: 'g1', expiresAt: later }));
  it('promo_grant_already_expired', () =>
    given([opened, promoGranted('g1', usd('5'), later), ev('PromoCreditExpired', { grantId: 'g1', amount: usd('5') }, later)])
      .when(expire(later))
      .then({ error: 'promo_grant_already_expired', grantId: 'g1' }));
  it('promo_grant_not_found', () => given([opened]).when(expire(later)).then({ error: 'promo_grant_not_found', grantId: 'g1' }));
  it('promo credit is never refundable', () => {
    const state = given([opened]).when(grant()).thenState();
    expect(refundableOf(state)).toBe(0n);
    expect(balanceOf(state)).toBe(usd('5'));
  });
});

describe('PlaceReservation', () => {
  it('places a reservation that expires after the TTL', () =>
    given([opened, toppedUp(usd('10'))])
      .when(placeReservation('r1', usd('0.40')))
      .then([reservationPlaced('r1', usd('0.40'))]));
  it('exceeds_available_balance: available is balance minus open reservations', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('9'))])
      .when(placeReservation('r2', usd('1.5')))
      .then({ error: 'exceeds_available_balance', available: usd('1'), needed: usd('1.5') }));
  it('promo credit counts towards available', () =>
    given([opened, promoGranted('g1', usd('1'), nextWeek)])
      .when(placeReservation('r1', usd('1')))
      .then([reservationPlaced('r1', usd('1'))]));
  it('promo past its expiry no longer counts, even before it is recorded as expired', () =>
    given([opened, promoGranted('g1', usd('1'), later)])
      .when(placeReservation('r1', usd('1'), later))
      .then({ error: 'exceeds_available_balance', available: 0n, needed: usd('1') }));
  it('negative_balance: a negative balance blocks new reservations until a top-up', () =>
    given([
      opened,
      toppedUp(usd('10')),
      reservationPlaced('r1', usd('10')),
      ev('ReservationSettled', {
        requestId: 'r1',
        keyId: 'key-1',
        model: 'llama-3.1-8b',
        operation: 'chat',
        reservedAmount: usd('10'),
        actualCost: usd('10.2'),
        fromPromo: [],
        fromPurchased: usd('10.2'),
        usage: { inputTokens: 10_200_000n, outputTokens: 0n, estimated: false },
        priceVersion: 1,
        outcome: 'completed',
      }),
      promoGranted('g1', usd('5'), nextWeek),
    ])
      .when(placeReservation('r2', usd('1')))
      .then({ error: 'negative_balance', balance: usd('-0.2') }));
  it('account_suspended: a suspended account reserves nothing', () =>
    given([opened, toppedUp(usd('10')), ev('AccountSuspended', { reason: 'payment_dispute' })])
      .when(placeReservation('r1', usd('1')))
      .then({ error: 'account_suspended', reason: 'payment_dispute' }));
  it('account_closed: a closed account reserves nothing', () =>
    given([opened, toppedUp(usd('10')), ev('AccountClosed', { reason: 'customer_request' })])
      .when(placeReservation('r1', usd('1')))
      .then({ error: 'account_closed' }));
  it('reservation_already_exists', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(placeReservation('r1', usd('1')))
      .then({ error: 'reservation_already_exists', requestId: 'r1' }));
  it('amount_must_not_be_negative', () =>
    given([opened, toppedUp(usd('10'))])
      .when(placeReservation('r1', -1n))
      .thenRejectedWith('amount_must_not_be_negative'));
});

describe('SettleReservation', () => {
  const settle = (requestId: string, inputTokens: bigint, outputTokens: bigint, price = PRICE_V1, now = T0) =>
    cmd('SettleReservation', { requestId, usage: { inputTokens, outputTokens, estimated: false }, price, outcome: 'completed' }, now);
  const settled = (data: {
    reserved: bigint;
    cost: bigint;
    fromPromo?: { grantId: string; amount: bigint }[];
    fromPurchased: bigint;
    input: bigint;
    output: bigint;
  }) =>
    ev('ReservationSettled', {
      requestId: 'r1',
      keyId: 'key-1',
      model: 'llama-3.1-8b',
      operation: 'chat',
      reservedAmount: data.reserved,
      actualCost: data.cost,
      fromPromo: data.fromPromo ?? [],
      fromPurchased: data.fromPurchased,
      usage: { inputTokens: data.input, outputTokens: data.output, estimated: false },
      priceVersion: 1,
      outcome: 'completed',
    });

  it('settles at the actual cost; the excess returns to available', () => {
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(settle('r1', 100_000n, 50_000n))
      .then([settled({ reserved: usd('1'), cost: usd('0.2'), fromPurchased: usd('0.2'), input: 100_000n, output: 50_000n })]);
    const state = given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(settle('r1', 100_000n, 50_000n))
      .thenState();
    expect(availableOf(state)).toBe(usd('9.8'));
    expect(state.totalUsage).toEqual({ inputTokens: 100_000n, outputTokens: 50_000n, cost: usd('0.2') });
  });
  it('rounds the whole request up once: 1 input + 1 output token at 1 micro-USD per million costs 1 micro-USD', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(settle('r1', 1n, 1n, { version: 1, inputPerMillion: 1n, outputPerMillion: 1n }))
      .then([settled({ reserved: usd('1'), cost: 1n, fromPurchased: 1n, input: 1n, output: 1n })]));
  it('a shortfall may take the balance below zero', () => {
    const state = given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('10'))])
      .when(settle('r1', 10_500_000n, 0n))
      .thenState();
    expect(state.purchased).toBe(usd('-0.5'));
  });
  it('promo credit is spent before purchased credit, soonest expiry first', () =>
    given([opened, toppedUp(usd('10')), promoGranted('late', usd('1'), nextWeek), promoGranted('soon', usd('0.5'), later), reservationPlaced('r1', usd('2'))])
      .when(settle('r1', 2_000_000n, 0n))
      .then([
        settled({
          reserved: usd('2'),
          cost: usd('2'),
          input: 2_000_000n,
          output: 0n,
          fromPromo: [
            { grantId: 'soon', amount: usd('0.5') },
            { grantId: 'late', amount: usd('1') },
          ],
          fromPurchased: usd('0.5'),
        }),
      ]));
  it('price_version_mismatch: settlement uses the version the reservation was admitted under', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(settle('r1', 1n, 1n, { ...PRICE_V1, version: 2 }))
      .then({ error: 'price_version_mismatch', requestId: 'r1', reservedUnder: 1, given: 2 }));
  it('reservation_not_found: unknown reservation', () =>
    given([opened, toppedUp(usd('10'))])
      .when(settle('r1', 1n, 1n))
      .then({ error: 'reservation_not_found', requestId: 'r1' }));
  it('reservation_not_found: a reservation ends exactly once', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1')), settled({ reserved: usd('1'), cost: 3n, fromPurchased: 3n, input: 1n, output: 1n })])
      .when(settle('r1', 1n, 1n))
      .then({ error: 'reservation_not_found', requestId: 'r1' }));
  it('token_count_negative', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(settle('r1', -1n, 0n))
      .then({ error: 'token_count_negative' }));
  it('settles even on a suspended account: the request was admitted before', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1')), ev('AccountSuspended', { reason: 'payment_dispute' })])
      .when(settle('r1', 0n, 0n))
      .then([settled({ reserved: usd('1'), cost: 0n, fromPurchased: 0n, input: 0n, output: 0n })]));
});

describe('ReleaseReservation and ExpireReservation', () => {
  const base = [opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))];
  const release = cmd('ReleaseReservation', { requestId: 'r1', reason: 'gateway_error' });
  it('releases without charge', () =>
    given(base)
      .when(release)
      .then([ev('ReservationReleased', { requestId: 'r1', amount: usd('1'), reason: 'gateway_error' })]));
  it('reservation_not_found on release of an ended reservation', () =>
    given([...base, ev('ReservationReleased', { requestId: 'r1', amount: usd('1'), reason: 'gateway_error' })])
      .when(release)
      .then({ error: 'reservation_not_found', requestId: 'r1' }));
  const expireAt = (now: string) => cmd('ExpireReservation', { requestId: 'r1' }, now);
  it('expires a reservation after its expiresAt, returning the hold', () =>
    given(base)
      .when(expireAt(minutesAfterT0(10)))
      .then([ev('ReservationExpired', { requestId: 'r1', amount: usd('1') }, minutesAfterT0(10))]));
  it('reservation_not_yet_expired', () =>
    given(base)
      .when(expireAt(minutesAfterT0(9)))
      .then({ error: 'reservation_not_yet_expired', requestId: 'r1', expiresAt: minutesAfterT0(10) }));
  it('reservation_not_found on expiry of an ended reservation', () =>
    given([...base, ev('ReservationExpired', { requestId: 'r1', amount: usd('1') })])
      .when(expireAt(later))
      .thenRejectedWith('reservation_not_found'));

  // Instances hold leases: a live instance's reservation is never expired before its deadline;
  // a lapsed one's may be expired at once.
  const placedBy = (instanceId: string) => [opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'), { instanceId })];
  const expireLapsed = (lapsedInstanceId: string, now: string) => cmd('ExpireReservation', { requestId: 'r1', lapsedInstanceId }, now);
  it('records the instance that placed the reservation', () =>
    given([opened, toppedUp(usd('10'))])
      .when(
        cmd('PlaceReservation', {
          requestId: 'r1',
          keyId: 'key-1',
          model: 'llama-3.1-8b',
          operation: 'chat',
          amount: usd('1'),
          priceVersion: 1,
          instanceId: 'gw-a',
        }),
      )
      .then([reservationPlaced('r1', usd('1'), { instanceId: 'gw-a' })]));
  it('expires at once, before its deadline, when the instance that placed it has lapsed', () =>
    given(placedBy('gw-a'))
      .when(expireLapsed('gw-a', minutesAfterT0(1)))
      .then([ev('ReservationExpired', { requestId: 'r1', amount: usd('1') }, minutesAfterT0(1))]));
  it('reservation_instance_not_lapsed: another instance lapsing proves nothing about this one', () =>
    given(placedBy('gw-a'))
      .when(expireLapsed('gw-b', minutesAfterT0(1)))
      .then({ error: 'reservation_instance_not_lapsed', requestId: 'r1', instanceId: 'gw-a', lapsedInstanceId: 'gw-b' }));
  it('reservation_instance_not_lapsed for a reservation of unknown instance (older events): it waits for its deadline', () =>
    given(base)
      .when(expireLapsed('gw-a', minutesAfterT0(1)))
      .then({ error: 'reservation_instance_not_lapsed', requestId: 'r1', instanceId: null, lapsedInstanceId: 'gw-a' }));
  it("a live instance's reservation still expires at its hard deadline", () =>
    given(placedBy('gw-a'))
      .when(expireAt(minutesAfterT0(10)))
      .then([ev('ReservationExpired', { requestId: 'r1', amount: usd('1') }, minutesAfterT0(10))]));
  it("reservation_not_yet_expired for a live instance's reservation before its deadline", () =>
    given(placedBy('gw-a'))
      .when(expireAt(minutesAfterT0(9)))
      .then({ error: 'reservation_not_yet_expired', requestId: 'r1', expiresAt: minutesAfterT0(10) }));
});

describe('IssueRefund', () => {
  const refund = (amount: bigint, refundId = 'ref-1', paymentReferences = ['pay-1']) => cmd('IssueRefund', { refundId, amount, paymentReferences });
  const refunded = (amount: bigint) => ev('RefundIssued', { refundId: 'ref-1', amount, paymentReferences: ['pay-1'] });
  it('refunds purchased credit', () =>
    given([opened, toppedUp(usd('10'))])
      .when(refund(usd('10')))
      .then([refunded(usd('10'))]));
  it('a refund id already issued is a no-op', () =>
    given([opened, toppedUp(usd('10')), refunded(usd('4'))])
      .when(refund(usd('4')))
      .then([]));
  it('exceeds_refundable_credit: purchased less open reservations, promo excluded', () =>
    given([opened, toppedUp(usd('10')), promoGranted('g1', usd('5'), nextWeek), reservationPlaced('r1', usd('3'))])
      .when(refund(usd('7.000001')))
      .then({ error: 'exceeds_refundable_credit', refundable: usd('7'), requested: usd('7.000001') }));
  it('unknown_payment_reference', () =>
    given([opened, toppedUp(usd('10'))])
      .when(refund(usd('1'), 'ref-1', ['pay-404']))
      .then({ error: 'unknown_payment_reference', paymentReference: 'pay-404' }));
  it('refund_without_payment_reference', () =>
    given([opened, toppedUp(usd('10'))])
      .when(refund(usd('1'), 'ref-1', []))
      .then({ error: 'refund_without_payment_reference' }));
  it('amount_must_be_positive for a refund', () =>
    given([opened, toppedUp(usd('10'))])
      .when(refund(0n))
      .thenRejectedWith('amount_must_be_positive'));
  it('refunds the remainder after closing', () =>
    given([opened, toppedUp(usd('10')), ev('AccountClosed', { reason: 'customer_request' })])
      .when(refund(usd('10')))
      .then([refunded(usd('10'))]));
});

describe('auto top-up', () => {
  const configure = (autoTopUp: { threshold: bigint; amount: bigint } | null) => cmd('ConfigureAutoTopUp', { autoTopUp });
  const configured = ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('5'), amount: usd('20') } });
  it('configures auto top-up', () =>
    given([opened])
      .when(configure({ threshold: usd('5'), amount: usd('20') }))
      .then([configured]));
  it('disables auto top-up', () =>
    given([opened, configured])
      .when(configure(null))
      .then([ev('AutoTopUpConfigured', { autoTopUp: null })]));
  it('top_up_below_minimum for the auto top-up amount', () =>
    given([opened])
      .when(configure({ threshold: usd('5'), amount: usd('5') }))
      .thenRejectedWith('top_up_below_minimum'));
  it('balance_limit_exceeded when threshold plus amount exceeds the maximum', () =>
    given([opened])
      .when(configure({ threshold: usd('9995'), amount: usd('10') }))
      .thenRejectedWith('balance_limit_exceeded'));

  const trigger = (attemptId = 'att-1') => cmd('RecordAutoTopUpTriggered', { attemptId });
  it('triggers below the threshold', () =>
    given([opened, configured])
      .when(trigger())
      .then([ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('20'), debt: 0n })]));
  it('auto_top_up_not_configured', () => given([opened]).when(trigger()).then({ error: 'auto_top_up_not_configured' }));
  it('available_above_auto_top_up_threshold', () =>
    given([opened, toppedUp(usd('10')), configured])
      .when(trigger())
      .then({ error: 'available_above_auto_top_up_threshold', available: usd('10'), threshold: usd('5') }));
  it('auto_top_up_already_pending: one attempt at a time', () =>
    given([opened, configured, ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('20'), debt: 0n })])
      .when(trigger('att-2'))
      .then({ error: 'auto_top_up_already_pending', attemptId: 'att-1' }));

  const fail = (attemptId = 'att-1') => cmd('RecordAutoTopUpFailed', { attemptId, reason: 'card_declined' });
  it('records a failed attempt', () =>
    given([opened, configured, ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('20'), debt: 0n })])
      .when(fail())
      .then([ev('AutoTopUpFailed', { attemptId: 'att-1', reason: 'card_declined' })]));
  it('auto_top_up_not_pending', () => given([opened, configured]).when(fail()).then({ error: 'auto_top_up_not_pending', attemptId: 'att-1' }));
});

describe('suspension, closure, erasure', () => {
  const suspended = ev('AccountSuspended', { reason: 'payment_dispute' });
  const closed = ev('AccountClosed', { reason: 'customer_request' });
  it('suspends', () =>
    given([opened])
      .when(cmd('SuspendAccount', { reason: 'payment_dispute' }))
      .then([suspended]));
  it('account_already_suspended: the same reason twice', () =>
    given([opened, suspended])
      .when(cmd('SuspendAccount', { reason: 'payment_dispute' }))
      .thenRejectedWith('account_already_suspended'));
  it('another reason adds to the set', () =>
    given([opened, suspended])
      .when(cmd('SuspendAccount', { reason: 'terms_violation' }))
      .then([ev('AccountSuspended', { reason: 'terms_violation' })]));
  it('reinstates', () =>
    given([opened, suspended])
      .when(cmd('ReinstateAccount', {}))
      .then([ev('AccountReinstated', { reason: 'admin_decision', lifted: ['payment_dispute'] })]));
  it('account_not_suspended', () => given([opened]).when(cmd('ReinstateAccount', {})).then({ error: 'account_not_suspended' }));
  it('closes', () =>
    given([opened])
      .when(cmd('CloseAccount', { reason: 'customer_request' }))
      .then([closed]));
  it('account_closed: closing twice', () =>
    given([opened, closed])
      .when(cmd('CloseAccount', { reason: 'customer_request' }))
      .then({ error: 'account_closed' }));
  it('account_has_open_reservations', () =>
    given([opened, toppedUp(usd('10')), reservationPlaced('r1', usd('1'))])
      .when(cmd('CloseAccount', { reason: 'customer_request' }))
      .then({ error: 'account_has_open_reservations', openReservations: 1 }));
  it('erases personal data of a closed account', () =>
    given([opened, closed])
      .when(cmd('ErasePersonalData', {}))
      .then([ev('PersonalDataErased', {})]));
  it('account_not_closed: erasure follows closure', () => given([opened]).when(cmd('ErasePersonalData', {})).then({ error: 'account_not_closed' }));
  it('personal_data_already_erased', () =>
    given([opened, closed, ev('PersonalDataErased', {})])
      .when(cmd('ErasePersonalData', {}))
      .then({ error: 'personal_data_already_erased' }));
});
