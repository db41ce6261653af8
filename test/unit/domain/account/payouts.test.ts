import fc from 'fast-check';
import { decideAccount } from '../../../../domain/account/decide';
import { accountDecider } from '../../../../domain/account/decider';
import type { AccountEvent } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import { initialAccountState } from '../../../../domain/account/state';
import { usd } from '../../../../domain/money/money';
import { deciderSpec } from '../decider-spec';
import { cmd, ev, minutesAfterT0, opened, reservationPlaced, toppedUp } from './fixtures';

/**
 * Payouts outside the card (RecordPayout): an operator records a bank transfer (method,
 * reference, amount, reason), limited to what is refundable; card refunds and payouts draw on the
 * same refundable amount, so no credit is paid back twice.
 */

const given = deciderSpec(accountDecider());
const payout = (amount: bigint, payoutId = 'payout:bank_transfer:TR-1', reason = 'closed, bought by bank transfer') =>
  cmd('RecordPayout', { payoutId, method: 'bank_transfer', reference: 'TR-1', amount, reason });

describe('RecordPayout', () => {
  it('records a payout of refundable credit', () =>
    given([opened, toppedUp(usd('30'), 'manual:bank-1')])
      .when(payout(usd('30')))
      .then([
        ev('PayoutRecorded', {
          payoutId: 'payout:bank_transfer:TR-1',
          method: 'bank_transfer',
          reference: 'TR-1',
          amount: usd('30'),
          reason: 'closed, bought by bank transfer',
        }),
      ]));
  it('on a closed account (the credit would otherwise be stranded)', () => {
    const state = given([opened, toppedUp(usd('30'), 'manual:bank-1'), ev('AccountClosed', { reason: 'customer_request' })])
      .when(payout(usd('30')))
      .thenState();
    expect([state.status, state.purchased, state.totalRefunded]).toEqual(['closed', 0n, usd('30')]);
  });
  it('the same payout twice: once', () =>
    given([
      opened,
      toppedUp(usd('30')),
      ev('PayoutRecorded', { payoutId: 'payout:bank_transfer:TR-1', method: 'bank_transfer', reference: 'TR-1', amount: usd('10'), reason: 'r' }),
    ])
      .when(payout(usd('10')))
      .then([]));
  it('exceeds_refundable_credit: never more than refundable (open requests and disputes hold theirs)', () =>
    given([
      opened,
      toppedUp(usd('30')),
      reservationPlaced('r1', usd('5')),
      ev('DisputeOpened', { disputeId: 'dp-1', paymentReference: 'pay-1', amount: usd('10') }),
    ])
      .when(payout(usd('16')))
      .then({ error: 'exceeds_refundable_credit', refundable: usd('15'), requested: usd('16') }));
  it('exceeds_refundable_credit: after a card refund of the same credit', () =>
    given([opened, toppedUp(usd('30')), ev('RefundIssued', { refundId: 'rf-1', amount: usd('25'), paymentReferences: ['pay-1'] })])
      .when(payout(usd('10')))
      .then({ error: 'exceeds_refundable_credit', refundable: usd('5'), requested: usd('10') }));
  it('reason_required', () =>
    given([opened, toppedUp(usd('30'))])
      .when(payout(usd('10'), 'p', ' '))
      .then({ error: 'reason_required' }));
  it('amount_must_be_positive', () =>
    given([opened, toppedUp(usd('30'))])
      .when(payout(0n))
      .then({ error: 'amount_must_be_positive', amount: 0n }));
});

test('property: card refunds and payouts, before and after closure, never pay back more than was bought less what was spent', () => {
  const step = fc.oneof(
    fc.record({ kind: fc.constant('card' as const), id: fc.nat(4), amount: fc.bigInt(1n, usd('40')) }),
    fc.record({ kind: fc.constant('payout' as const), id: fc.nat(4), amount: fc.bigInt(1n, usd('40')) }),
    fc.record({ kind: fc.constant('spend' as const), id: fc.nat(4), amount: fc.bigInt(0n, usd('20')) }),
    fc.record({ kind: fc.constant('close' as const), id: fc.nat(0), amount: fc.constant(0n) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
      let state = [opened, toppedUp(usd('50'))].reduce(evolveAccount, initialAccountState());
      const events: AccountEvent[] = [];
      let spent = 0n;
      steps.forEach((s, i) => {
        const now = minutesAfterT0(i + 1);
        const commands =
          s.kind === 'card'
            ? [cmd('IssueRefund', { refundId: `rf-${s.id}`, amount: s.amount, paymentReferences: ['pay-1'] }, now)]
            : s.kind === 'payout'
              ? [cmd('RecordPayout', { payoutId: `payout:${s.id}`, method: 'bank_transfer', reference: `TR-${s.id}`, amount: s.amount, reason: 'r' }, now)]
              : s.kind === 'close'
                ? [cmd('CloseAccount', { reason: 'customer_request' }, now)]
                : [
                    cmd('PlaceReservation', { requestId: `r${i}`, keyId: 'k', model: 'm', operation: 'chat', amount: s.amount, priceVersion: 1 }, now),
                    cmd(
                      'SettleReservation',
                      {
                        requestId: `r${i}`,
                        usage: { inputTokens: s.amount, outputTokens: 0n, estimated: false },
                        price: { version: 1, inputPerMillion: 1_000_000n, outputPerMillion: 1_000_000n },
                        outcome: 'completed',
                      },
                      now,
                    ),
                  ];
        for (const command of commands) {
          const decision = decideAccount(command, state);
          if (!decision.ok) break;
          for (const event of decision.events) {
            state = evolveAccount(state, event);
            events.push(event);
            if (event.type === 'ReservationSettled') spent += event.data.fromPurchased;
          }
        }
      });
      const paidBack = events.reduce((sum, e) => sum + (e.type === 'RefundIssued' || e.type === 'PayoutRecorded' ? e.data.amount : 0n), 0n);
      expect(paidBack).toBe(state.totalRefunded);
      expect(paidBack <= usd('50') - spent).toBe(true);
      expect(state.purchased).toBe(usd('50') - spent - paidBack);
      expect(state.purchased >= 0n).toBe(true);
      // Each id pays back once.
      const ids = events.flatMap((e) => (e.type === 'RefundIssued' ? [e.data.refundId] : e.type === 'PayoutRecorded' ? [e.data.payoutId] : []));
      expect(new Set(ids).size).toBe(ids.length);
    }),
    { numRuns: 400 },
  );
});

describe('the claim period after closure (360 days)', () => {
  const closedAtT0 = ev('AccountClosed', { reason: 'customer_request' });
  const day = 24 * 60;
  it('a card refund of a closed account within 360 days', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(cmd('IssueRefund', { refundId: 'rf-1', amount: usd('30'), paymentReferences: ['pay-1'] }, minutesAfterT0(359 * day)))
      .then([ev('RefundIssued', { refundId: 'rf-1', amount: usd('30'), paymentReferences: ['pay-1'] }, minutesAfterT0(359 * day))]));
  it('claim_period_over: a card refund 360 days after closure', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(cmd('IssueRefund', { refundId: 'rf-1', amount: usd('30'), paymentReferences: ['pay-1'] }, minutesAfterT0(360 * day)))
      .then({ error: 'claim_period_over', claimableUntil: minutesAfterT0(360 * day) }));
  it('claim_period_over: a payout 360 days after closure', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(cmd('RecordPayout', { payoutId: 'p', method: 'bank_transfer', reference: 'TR', amount: usd('1'), reason: 'late' }, minutesAfterT0(361 * day)))
      .thenRejectedWith('claim_period_over'));
  it('a refund made in the Stripe Dashboard is applied even after the period: the money has left', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(cmd('RecordProviderRefund', { refundId: 'stripe:re_1', paymentReference: 'pay-1', amount: usd('30') }, minutesAfterT0(400 * day)))
      .then([ev('RefundIssued', { refundId: 'stripe:re_1', amount: usd('30'), paymentReferences: ['pay-1'] }, minutesAfterT0(400 * day))]));
});
