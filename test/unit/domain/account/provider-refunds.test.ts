import fc from 'fast-check';
import { decideAccount } from '../../../../domain/account/decide';
import { accountDecider, accountStreamId } from '../../../../domain/account/decider';
import type { AccountEvent } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import { initialAccountState, refundableOf } from '../../../../domain/account/state';
import { domainEventCodec } from '../../../../domain/events/codec';
import { usd } from '../../../../domain/money/money';
import { applyBalanceChange, balanceChange, type BalanceRow } from '../../../../projections/balances/balances';
import { customerBalanceOf, postingsOf, sumOfPostings } from '../../../../projections/journal/journal';
import { deciderSpec } from '../decider-spec';
import { cmd, ev, minutesAfterT0, opened, reservationPlaced, toppedUp } from './fixtures';

/**
 * Refunds made in the Stripe Dashboard (RecordProviderRefund): the money has already left, so
 * they are applied whatever the balance, once per refund id; the refundable part is a
 * RefundIssued, the rest a RefundShortfall that takes the purchased credit into debt.
 */

const given = deciderSpec(accountDecider());
const record = (amount: bigint, refundId = 'stripe:re_1', paymentReference = 'pay-1') => cmd('RecordProviderRefund', { refundId, paymentReference, amount });

describe('RecordProviderRefund', () => {
  it('within what is refundable: a RefundIssued', () =>
    given([opened, toppedUp(usd('30'))])
      .when(record(usd('10')))
      .then([ev('RefundIssued', { refundId: 'stripe:re_1', amount: usd('10'), paymentReferences: ['pay-1'] })]));
  it('more than is refundable: the refundable part, and the rest as a shortfall into debt', () => {
    const spent = [opened, toppedUp(usd('30')), reservationPlaced('r1', usd('25'))];
    given(spent)
      .when(record(usd('30')))
      .then([
        ev('RefundIssued', { refundId: 'stripe:re_1', amount: usd('5'), paymentReferences: ['pay-1'] }),
        ev('RefundShortfall', { refundId: 'stripe:re_1', amount: usd('25'), paymentReference: 'pay-1' }),
      ]);
    const state = given(spent)
      .when(record(usd('30')))
      .thenState();
    expect([state.purchased, refundableOf(state)]).toEqual([0n, 0n]);
  });
  it('nothing refundable at all: only the shortfall', () =>
    given([opened, toppedUp(usd('30')), ev('RefundIssued', { refundId: 'rf-1', amount: usd('30'), paymentReferences: ['pay-1'] })])
      .when(record(usd('10')))
      .then([ev('RefundShortfall', { refundId: 'stripe:re_1', amount: usd('10'), paymentReference: 'pay-1' })]));
  it('applied once by refund id, even after a shortfall', () =>
    given([opened, toppedUp(usd('30')), ev('RefundShortfall', { refundId: 'stripe:re_1', amount: usd('10'), paymentReference: 'pay-1' })])
      .when(record(usd('10')))
      .then([]));
  it('on a closed account too: the money has left', () =>
    given([opened, toppedUp(usd('30')), ev('AccountClosed', { reason: 'customer_request' })])
      .when(record(usd('30')))
      .then([ev('RefundIssued', { refundId: 'stripe:re_1', amount: usd('30'), paymentReferences: ['pay-1'] })]));
  it('unknown_payment_reference', () =>
    given([opened, toppedUp(usd('30'))])
      .when(record(usd('10'), 'stripe:re_1', 'pay-9'))
      .then({ error: 'unknown_payment_reference', paymentReference: 'pay-9' }));
  it('amount_must_be_positive', () =>
    given([opened, toppedUp(usd('30'))])
      .when(record(0n))
      .then({ error: 'amount_must_be_positive', amount: 0n }));
});

test('property: any mix of Dashboard refunds (redelivered), Tollgate refunds and usage debits each refund id once, by exactly its amount; the journal balances', () => {
  const stream = accountStreamId('acc-1');
  const step = fc.oneof(
    fc.record({ kind: fc.constant('dashboard' as const), id: fc.nat(3), amount: fc.bigInt(1n, usd('40')) }),
    fc.record({ kind: fc.constant('tollgate' as const), id: fc.nat(3), amount: fc.bigInt(1n, usd('40')) }),
    fc.record({ kind: fc.constant('reserve' as const), id: fc.nat(3), amount: fc.bigInt(0n, usd('20')) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 25 }), (steps) => {
      let state = [opened, toppedUp(usd('50'))].reduce(evolveAccount, initialAccountState());
      let row: BalanceRow | undefined;
      let journal = 0n;
      let owed = 0n;
      for (const e of [opened, toppedUp(usd('50'))]) {
        row = applyBalanceChange(row, balanceChange(stream, e)!);
        owed += customerBalanceOf(postingsOf(stream, e), 'acc-1');
      }
      const events: AccountEvent[] = [];
      // Stripe's amount for a refund id never changes between deliveries.
      const dashboardAmount = new Map<number, bigint>();
      steps.forEach((s, i) => {
        const now = minutesAfterT0(i + 1);
        const amount = s.kind === 'dashboard' ? (dashboardAmount.get(s.id) ?? s.amount) : s.amount;
        if (s.kind === 'dashboard') dashboardAmount.set(s.id, amount);
        const command =
          s.kind === 'dashboard'
            ? cmd('RecordProviderRefund', { refundId: `stripe:re_${s.id}`, paymentReference: 'pay-1', amount }, now)
            : s.kind === 'tollgate'
              ? cmd('IssueRefund', { refundId: `rf-${s.id}`, amount, paymentReferences: ['pay-1'] }, now)
              : cmd('PlaceReservation', { requestId: `r${i}`, keyId: 'k', model: 'm', operation: 'chat', amount, priceVersion: 1 }, now);
        const decision = decideAccount(command, state);
        if (s.kind === 'dashboard') expect(decision.ok).toBe(true);
        if (!decision.ok) return;
        for (const event of decision.events) {
          expect(domainEventCodec.decode(domainEventCodec.encode(event))).toEqual(event);
          state = evolveAccount(state, event);
          events.push(event);
          const postings = postingsOf(stream, event);
          journal += sumOfPostings(postings);
          owed += customerBalanceOf(postings, 'acc-1');
          row = applyBalanceChange(row, balanceChange(stream, event)!);
        }
      });
      for (const [id, amount] of dashboardAmount) {
        const applied = events
          .filter((e) => (e.type === 'RefundIssued' || e.type === 'RefundShortfall') && e.data.refundId === `stripe:re_${id}`)
          .reduce((sum, e) => sum + (e as { data: { amount: bigint } }).data.amount, 0n);
        expect(applied).toBe(amount);
      }
      // Tollgate's own refunds never exceed what was refundable: only the Dashboard can make debt.
      const shortfall = events.filter((e) => e.type === 'RefundShortfall').reduce((sum, e) => sum + (e as { data: { amount: bigint } }).data.amount, 0n);
      if (shortfall === 0n) expect(state.purchased >= 0n).toBe(true);
      expect(journal).toBe(0n);
      expect(owed).toBe(state.purchased);
      expect(row?.purchased).toBe(state.purchased);
    }),
    { numRuns: 400 },
  );
});
