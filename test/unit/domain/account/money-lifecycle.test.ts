import fc from 'fast-check';
import type { AccountCommand } from '../../../../domain/account/commands';
import { decideAccount } from '../../../../domain/account/decide';
import { accountDecider, accountStreamId } from '../../../../domain/account/decider';
import type { AccountEvent } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import type { AccountPolicy } from '../../../../domain/account/policy';
import { availableOf, balanceOf, initialAccountState, refundableOf, type AccountState } from '../../../../domain/account/state';
import { domainEventCodec } from '../../../../domain/events/codec';
import { usd } from '../../../../domain/money/money';
import { addMs } from '../../../../domain/time/instant';
import { applyBalanceChange, balanceChange, type BalanceRow } from '../../../../projections/balances/balances';
import { customerBalanceOf, postingsOf, sumOfPostings } from '../../../../projections/journal/journal';
import { deciderSpec } from '../decider-spec';
import { PRICE_V1, T0, cmd, ev, minutesAfterT0, opened, reservationPlaced, toppedUp } from './fixtures';

/**
 * The money lifecycle beyond top-up and usage (issue 15): termination for breach, promo revocation; given/when/then
 * for each rule, and a property over random histories that the journal stays balanced, owes the
 * customer exactly the decider's balance, and agrees with the balances projection.
 */

const given = deciderSpec(accountDecider());

describe('TerminateAccount', () => {
  const terminate = (forAbuse: boolean, reason = 'spam relay') => cmd('TerminateAccount', { reason, forAbuse });
  it('not for abuse: terminated and closed; the purchased credit stays owed, to be refunded by the caller', () =>
    given([opened, toppedUp(usd('20'))])
      .when(terminate(false))
      .then([ev('AccountTerminated', { reason: 'spam relay', forAbuse: false }), ev('AccountClosed', { reason: 'terminated_for_breach' })]));
  it('the credit left after a termination not for abuse is still refundable', () => {
    const state = given([opened, toppedUp(usd('20'))])
      .when(terminate(false))
      .thenState();
    expect([state.status, refundableOf(state), state.termination]).toEqual(['closed', usd('20'), { forAbuse: false }]);
  });
  it('for abuse: the purchased credit left is forfeited in the same decision', () =>
    given([opened, toppedUp(usd('20'))])
      .when(terminate(true))
      .then([
        ev('AccountTerminated', { reason: 'spam relay', forAbuse: true }),
        ev('AccountClosed', { reason: 'terminated_for_breach' }),
        ev('PurchasedCreditForfeited', { amount: usd('20'), reason: 'terminated_for_abuse' }),
      ]));
  it('for abuse, nothing is left to refund and the balance is the promo alone', () => {
    const state = given([
      opened,
      toppedUp(usd('20')),
      ev('PromoCreditGranted', { grantId: 'g1', amount: usd('3'), expiresAt: minutesAfterT0(60), reason: 'welcome' }),
    ])
      .when(terminate(true))
      .thenState();
    expect([refundableOf(state), balanceOf(state), state.totalForfeited]).toEqual([0n, usd('3'), usd('20')]);
  });
  it('for abuse with a debt: nothing is forfeited, the debt stays owed', () => {
    const short = ev('ReservationSettled', {
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
    given([opened, toppedUp(usd('1')), reservationPlaced('r1', usd('1')), short])
      .when(terminate(true))
      .then([ev('AccountTerminated', { reason: 'spam relay', forAbuse: true }), ev('AccountClosed', { reason: 'terminated_for_breach' })]);
  });
  it('a suspended account can be terminated', () =>
    given([opened, ev('AccountSuspended', { reason: 'terms_violation' })])
      .when(terminate(false))
      .then([ev('AccountTerminated', { reason: 'spam relay', forAbuse: false }), ev('AccountClosed', { reason: 'terminated_for_breach' })]));
  it('account_closed: a closed account is not terminated again', () =>
    given([opened, ev('AccountClosed', { reason: 'customer_request' })])
      .when(terminate(true))
      .then({ error: 'account_closed' }));
  it('reason_required', () => given([opened]).when(terminate(false, '  ')).then({ error: 'reason_required' }));
  it('account_has_open_reservations: no hold outlives the account', () =>
    given([opened, toppedUp(usd('20')), reservationPlaced('r1', usd('1'))])
      .when(terminate(true))
      .then({ error: 'account_has_open_reservations', openReservations: 1 }));
  it('no top-up after termination', () =>
    given([opened, ev('AccountTerminated', { reason: 'x', forAbuse: false }), ev('AccountClosed', { reason: 'terminated_for_breach' })])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-2', amount: usd('10') }))
      .then({ error: 'account_closed' }));
});

describe('RevokePromoCredit', () => {
  const grant = ev('PromoCreditGranted', { grantId: 'g1', amount: usd('5'), expiresAt: minutesAfterT0(60), reason: 'welcome' });
  const spent2 = ev('ReservationSettled', {
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
  });
  const revoke = (amount: bigint | null, now = minutesAfterT0(10), grantId = 'g1', reason = 'campaign abused') =>
    cmd('RevokePromoCredit', { grantId, amount, reason }, now);
  it('without an amount, takes back all of the unspent remainder; what was spent stays spent', () =>
    given([opened, grant, reservationPlaced('r1', usd('2')), spent2])
      .when(revoke(null))
      .then([ev('PromoCreditRevoked', { grantId: 'g1', amount: usd('3'), reason: 'campaign abused' }, minutesAfterT0(10))]));
  it('in part: the rest of the grant stays spendable until its expiry', () => {
    const state = given([opened, grant])
      .when(revoke(usd('1.5')))
      .thenState();
    expect([state.promoGrants.get('g1')?.remaining, balanceOf(state, minutesAfterT0(10))]).toEqual([usd('3.5'), usd('3.5')]);
  });
  it('exceeds_unspent_promo', () =>
    given([opened, grant, reservationPlaced('r1', usd('2')), spent2])
      .when(revoke(usd('3.000001')))
      .then({ error: 'exceeds_unspent_promo', grantId: 'g1', unspent: usd('3'), requested: usd('3.000001') }));
  it('promo_grant_already_expired: past its expiry, even before the expiry is recorded', () =>
    given([opened, grant])
      .when(revoke(null, minutesAfterT0(60)))
      .then({ error: 'promo_grant_already_expired', grantId: 'g1' }));
  it('promo_grant_already_expired: after PromoCreditExpired', () =>
    given([opened, grant, ev('PromoCreditExpired', { grantId: 'g1', amount: usd('5') }, minutesAfterT0(61))])
      .when(revoke(null, minutesAfterT0(62)))
      .thenRejectedWith('promo_grant_already_expired'));
  it('promo_grant_not_found', () =>
    given([opened, grant])
      .when(revoke(null, minutesAfterT0(10), 'g9'))
      .then({ error: 'promo_grant_not_found', grantId: 'g9' }));
  it('reason_required', () =>
    given([opened, grant])
      .when(revoke(null, minutesAfterT0(10), 'g1', ' '))
      .then({ error: 'reason_required' }));
  it('amount_must_be_positive: a fully spent grant has nothing to revoke', () => {
    const allSpent = ev('ReservationSettled', {
      ...spent2.data,
      reservedAmount: usd('5'),
      actualCost: usd('5'),
      fromPromo: [{ grantId: 'g1', amount: usd('5') }],
    });
    given([opened, grant, reservationPlaced('r1', usd('5')), allSpent])
      .when(revoke(null))
      .then({ error: 'amount_must_be_positive', amount: 0n });
  });
  it('promo_held_by_reservations: credit a request in flight counts on is not taken from under it', () =>
    given([opened, grant, reservationPlaced('r1', usd('4'))])
      .when(revoke(usd('2')))
      .then({ error: 'promo_held_by_reservations', available: usd('1'), requested: usd('2') }));
  it('purchased credit can cover a hold, so the promo can go', () =>
    given([opened, toppedUp(usd('10')), grant, reservationPlaced('r1', usd('4'))])
      .when(revoke(null))
      .then([ev('PromoCreditRevoked', { grantId: 'g1', amount: usd('5'), reason: 'campaign abused' }, minutesAfterT0(10))]));
  it('a revoked remainder is not spent later, and the expiry lapses only what is left', () => {
    const state = given([opened, grant, ev('PromoCreditRevoked', { grantId: 'g1', amount: usd('5'), reason: 'x' })])
      .when(cmd('ExpirePromoCredit', { grantId: 'g1' }, minutesAfterT0(61)))
      .thenState();
    expect(state.promoGrants.get('g1')).toMatchObject({ remaining: 0n, expired: true });
    given([opened, grant, ev('PromoCreditRevoked', { grantId: 'g1', amount: usd('5'), reason: 'x' })])
      .when(cmd('ExpirePromoCredit', { grantId: 'g1' }, minutesAfterT0(61)))
      .then([ev('PromoCreditExpired', { grantId: 'g1', amount: 0n }, minutesAfterT0(61))]);
  });
});

describe('SetMaximumBalance', () => {
  const raise = (maximum: bigint | null, reason = 'enterprise contract') => cmd('SetMaximumBalance', { maximum, reason });
  const raised = ev('MaximumBalanceSet', { maximum: usd('25000'), reason: 'enterprise contract' });
  it('raises one account above the default', () =>
    given([opened])
      .when(raise(usd('25000')))
      .then([raised]));
  it('null returns the account to the default', () => {
    const state = given([opened, raised]).when(raise(null)).thenState();
    expect(state.maximumBalance).toBeNull();
  });
  it('maximum_below_default', () =>
    given([opened])
      .when(raise(usd('9999.99')))
      .then({ error: 'maximum_below_default', maximum: usd('9999.99'), default: usd('10000') }));
  it('reason_required', () =>
    given([opened])
      .when(raise(usd('20000'), ''))
      .then({ error: 'reason_required' }));
  it('account_closed', () =>
    given([opened, ev('AccountClosed', { reason: 'customer_request' })])
      .when(raise(usd('20000')))
      .then({ error: 'account_closed' }));
  it('top-ups are held to the raised ceiling, not the default', () => {
    given([opened, raised, toppedUp(usd('9995'))])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-2', amount: usd('10000') }))
      .then([toppedUp(usd('10000'), 'pay-2')]);
    given([opened, raised, toppedUp(usd('24995'))])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-2', amount: usd('10') }))
      .then({ error: 'balance_limit_exceeded', balance: usd('24995'), amount: usd('10'), maximum: usd('25000') });
  });
  it('promo grants count against the raised ceiling too', () =>
    given([opened, raised, toppedUp(usd('9999'))])
      .when(cmd('GrantPromoCredit', { grantId: 'g1', amount: usd('2'), expiresAt: minutesAfterT0(60), reason: 'x' }))
      .then([ev('PromoCreditGranted', { grantId: 'g1', amount: usd('2'), expiresAt: minutesAfterT0(60), reason: 'x' })]));
  it('auto top-up: configured and triggered under the raised ceiling', () => {
    given([opened, raised])
      .when(cmd('ConfigureAutoTopUp', { autoTopUp: { threshold: usd('15000'), amount: usd('5000') } }))
      .then([ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('15000'), amount: usd('5000') } })]);
    given([opened])
      .when(cmd('ConfigureAutoTopUp', { autoTopUp: { threshold: usd('15000'), amount: usd('5000') } }))
      .thenRejectedWith('balance_limit_exceeded');
    given([opened, raised, toppedUp(usd('14000')), ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('15000'), amount: usd('5000') } })])
      .when(cmd('RecordAutoTopUpTriggered', { attemptId: 'att-1' }))
      .then([ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('5000'), debt: 0n })]);
  });
  it('back at the default, a balance above it stays, but nothing more comes in', () =>
    given([opened, raised, toppedUp(usd('20000')), ev('MaximumBalanceSet', { maximum: null, reason: 'contract ended' })])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-2', amount: usd('10') }))
      .thenRejectedWith('balance_limit_exceeded'));
});

// ---------------------------------------------------------------------------------------------
// Property: the journal and the balances projection agree with the decider over any history.

const POLICY: AccountPolicy = { minimumTopUp: usd('10'), maximumBalance: usd('100'), reservationTtlMs: 10 * 60_000 };

const micro = (min: string, max: string) => fc.bigInt(usd(min), usd(max));
const commandArb = (n: number): fc.Arbitrary<(now: string) => AccountCommand> =>
  fc.oneof(
    fc.record({ ref: fc.nat(4), amount: micro('10', '40') }).map(
      ({ ref, amount }) =>
        (now: string) =>
          cmd('CompleteTopUp', { paymentReference: `pay-${ref}`, amount }, now),
    ),
    fc.record({ id: fc.nat(3), amount: micro('0.01', '5'), minutes: fc.integer({ min: 1, max: 120 }) }).map(
      ({ id, amount, minutes }) =>
        (now: string) =>
          cmd('GrantPromoCredit', { grantId: `g${id}`, amount, expiresAt: addMs(now, minutes * 60_000), reason: 'promo' }, now),
    ),
    fc.nat(3).map((id) => (now: string) => cmd('ExpirePromoCredit', { grantId: `g${id}` }, now)),
    fc.record({ req: fc.nat(n), amount: micro('0', '8') }).map(
      ({ req, amount }) =>
        (now: string) =>
          cmd('PlaceReservation', { requestId: `r${req}`, keyId: 'k', model: 'm', operation: 'chat', amount, priceVersion: 1 }, now),
    ),
    fc.record({ req: fc.nat(n), input: fc.bigInt(0n, 12_000_000n) }).map(
      ({ req, input }) =>
        (now: string) =>
          cmd(
            'SettleReservation',
            { requestId: `r${req}`, usage: { inputTokens: input, outputTokens: 0n, estimated: false }, price: PRICE_V1, outcome: 'completed' },
            now,
          ),
    ),
    fc.record({ id: fc.nat(3), amount: micro('0.01', '30') }).map(
      ({ id, amount }) =>
        (now: string) =>
          cmd('IssueRefund', { refundId: `rf-${id}`, amount, paymentReferences: ['pay-0'] }, now),
    ),
    fc.boolean().map((forAbuse) => (now: string) => cmd('TerminateAccount', { reason: 'breach', forAbuse }, now)),
    fc.option(micro('100', '200')).map((maximum) => (now: string) => cmd('SetMaximumBalance', { maximum, reason: 'raised' }, now)),
    fc.record({ id: fc.nat(3), amount: fc.option(micro('0.000001', '3')) }).map(
      ({ id, amount }) =>
        (now: string) =>
          cmd('RevokePromoCredit', { grantId: `g${id}`, amount, reason: 'revoked' }, now),
    ),
  );

interface Checked {
  readonly state: AccountState;
  readonly events: readonly AccountEvent[];
}

/** Runs the commands minute by minute; after every event checks journal, projection and decider agree. */
function runAndCheck(commands: readonly ((now: string) => AccountCommand)[]): Checked {
  const stream = accountStreamId('acc-1');
  let state = evolveAccount(initialAccountState(), opened);
  const events: AccountEvent[] = [opened];
  let journalTotal = 0n;
  let owed = 0n;
  let row: BalanceRow | undefined;
  commands.forEach((make, i) => {
    const decision = decideAccount(make(addMs(T0, (i + 1) * 60_000)), state, POLICY);
    if (!decision.ok) return;
    for (const event of decision.events) {
      // Every event survives the codec (what the store does to it).
      expect(domainEventCodec.decode(domainEventCodec.encode(event))).toEqual(event);
      state = evolveAccount(state, event);
      events.push(event);
      const postings = postingsOf(stream, event);
      journalTotal += sumOfPostings(postings);
      owed += customerBalanceOf(postings, 'acc-1');
      const change = balanceChange(stream, event);
      if (change) row = applyBalanceChange(row, change);
      expect(journalTotal).toBe(0n);
      expect(owed).toBe(balanceOf(state));
      expect([row?.purchased, row?.reserved]).toEqual([state.purchased, state.reserved]);
      // Promo as the projection counts it: granted less spent, lapsed and revoked.
      expect(row?.promo).toBe([...state.promoGrants.values()].reduce((sum, g) => sum + g.remaining, 0n));
      // A promo grant never goes below zero: revocation takes only the unspent part.
      for (const g of state.promoGrants.values()) expect(g.remaining >= 0n).toBe(true);
    }
  });
  return { state, events };
}

test('property: over any history with terminations and promo revocations, the trial balance is zero, the journal owes exactly the balance, the projection agrees', () => {
  let terminatedForAbuse = 0;
  let revoked = 0;
  fc.assert(
    fc.property(fc.array(commandArb(4), { minLength: 1, maxLength: 60 }), (commands) => {
      const { state, events } = runAndCheck(commands);
      revoked += events.filter((e) => e.type === 'PromoCreditRevoked').length;
      if (state.termination?.forAbuse) {
        terminatedForAbuse++;
        // Forfeited for abuse: nothing purchased is owed any more, a debt still is.
        expect(state.purchased <= 0n).toBe(true);
      }
      // Nothing moves money after the closure but refunds, forfeiture, settlement and promo expiry.
      const closedAt = events.findIndex((e) => e.type === 'AccountClosed');
      if (closedAt >= 0) {
        const after = events.slice(closedAt + 1).map((e) => e.type);
        expect(
          after.filter((t) => !['PurchasedCreditForfeited', 'RefundIssued', 'PromoCreditExpired', 'PromoCreditRevoked', 'ReservationSettled'].includes(t)),
        ).toEqual([]);
      }
      expect(availableOf(state) <= balanceOf(state)).toBe(true);
    }),
    { numRuns: 300 },
  );
  expect(terminatedForAbuse).toBeGreaterThan(0);
  expect(revoked).toBeGreaterThan(0);
});
