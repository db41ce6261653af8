import fc from 'fast-check';
import type { AccountCommand } from '../../../../domain/account/commands';
import { decideAccount } from '../../../../domain/account/decide';
import { accountDecider, accountStreamId } from '../../../../domain/account/decider';
import type { AccountEvent } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import { initialAccountState, outstandingClaimOf, refundableOf, unclaimedOf } from '../../../../domain/account/state';
import { usd } from '../../../../domain/money/money';
import { customerBalanceOf, postingsOf, sumOfPostings } from '../../../../projections/journal/journal';
import { deciderSpec } from '../decider-spec';
import { cmd, ev, minutesAfterT0, opened, toppedUp } from './fixtures';

/**
 * Refund claims after closure and the forfeiture after 360 days (issue 15): given/when/then for
 * each rule, and a property that a card refund, a payout, a claim and a forfeiture never pay back
 * or take the same credit twice.
 */

const given = deciderSpec(accountDecider());
const DAY = 24 * 60;
const day = (n: number) => minutesAfterT0(n * DAY);
const closedAtT0 = ev('AccountClosed', { reason: 'customer_request' });
const claim = (claimId: string, amount: bigint | null, now = day(10)) => cmd('ClaimRefund', { claimId, amount }, now);
const forfeit = (now = day(360)) => cmd('ForfeitUnclaimedCredit', {}, now);

describe('ClaimRefund', () => {
  it('claims all the remaining purchased credit within 360 days of closure', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(claim('cl-1', null, day(359)))
      .then([ev('RefundClaimed', { claimId: 'cl-1', amount: usd('30') }, day(359))]));
  it('the same claim id twice records once', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('30') })])
      .when(claim('cl-1', null))
      .then([]));
  it('account_not_closed: an open account is refunded, not claimed', () =>
    given([opened, toppedUp(usd('30'))])
      .when(claim('cl-1', null))
      .then({ error: 'account_not_closed' }));
  it('claim_period_over: 360 days after closure', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(claim('cl-1', null, day(360)))
      .then({ error: 'claim_period_over', claimableUntil: day(360) }));
  it('less a debt: nothing to claim when the purchased credit is negative', () =>
    given([opened, closedAtT0, ev('RefundShortfall', { refundId: 'stripe:re_1', amount: usd('2'), paymentReference: 'pay-1' })])
      .when(claim('cl-1', null))
      .then({ error: 'nothing_to_claim' }));
  it('less disputed amounts: what a dispute holds is not claimable', () =>
    given([
      opened,
      toppedUp(usd('30')),
      toppedUp(usd('10'), 'pay-2'),
      ev('DisputeOpened', { disputeId: 'dp_1', paymentReference: 'pay-2', amount: usd('10') }),
      closedAtT0,
    ])
      .when(claim('cl-1', null))
      .then([ev('RefundClaimed', { claimId: 'cl-1', amount: usd('30') }, day(10))]));
  it('less what was already claimed: a second claim asks only for the rest', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('12') })])
      .when(claim('cl-2', null))
      .then([ev('RefundClaimed', { claimId: 'cl-2', amount: usd('18') }, day(10))]));
  it('exceeds_refundable_credit: more than is unclaimed', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('12') })])
      .when(claim('cl-2', usd('19')))
      .then({ error: 'exceeds_refundable_credit', refundable: usd('18'), requested: usd('19') }));
  it('nothing_to_claim after everything was refunded', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundIssued', { refundId: 'rf-1', amount: usd('30'), paymentReferences: ['pay-1'] })])
      .when(claim('cl-1', null))
      .then({ error: 'nothing_to_claim' }));
  it('a claim is paid down by the refunds and payouts after it', () => {
    const state = given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('30') })])
      .when(cmd('IssueRefund', { refundId: 'rf-1', amount: usd('20'), paymentReferences: ['pay-1'] }, day(11)))
      .thenState();
    expect([state.claimedUnpaid, outstandingClaimOf(state), unclaimedOf(state), state.totalClaimed]).toEqual([usd('10'), usd('10'), 0n, usd('30')]);
  });
});

describe('paying a claim after the period', () => {
  const claimed = [opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('20') }, day(300))];
  it('a payout of what was claimed in time is recorded after the period', () =>
    given(claimed)
      .when(cmd('RecordPayout', { payoutId: 'p1', method: 'bank_transfer', reference: 'TR-1', amount: usd('20'), reason: 'claim cl-1' }, day(400)))
      .then([ev('PayoutRecorded', { payoutId: 'p1', method: 'bank_transfer', reference: 'TR-1', amount: usd('20'), reason: 'claim cl-1' }, day(400))]));
  it('claim_period_over: more than was claimed, after the period', () =>
    given(claimed)
      .when(cmd('IssueRefund', { refundId: 'rf-1', amount: usd('21'), paymentReferences: ['pay-1'] }, day(400)))
      .then({ error: 'claim_period_over', claimableUntil: day(360) }));
});

describe('ForfeitUnclaimedCredit', () => {
  it('after 360 days the unclaimed refundable credit is forfeited', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(forfeit())
      .then([ev('PurchasedCreditForfeited', { amount: usd('30'), reason: 'claim_period_over' }, day(360))]));
  it('claim_period_not_over: a day before', () =>
    given([opened, toppedUp(usd('30')), closedAtT0])
      .when(forfeit(day(359)))
      .then({ error: 'claim_period_not_over', claimableUntil: day(360) }));
  it('account_not_closed', () =>
    given([opened, toppedUp(usd('30'))])
      .when(forfeit())
      .then({ error: 'account_not_closed' }));
  it('what was claimed in time and not yet paid is not forfeited', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('RefundClaimed', { claimId: 'cl-1', amount: usd('20') }, day(300))])
      .when(forfeit())
      .then([ev('PurchasedCreditForfeited', { amount: usd('10'), reason: 'claim_period_over' }, day(360))]));
  it('a disputed amount stays held; the rest is forfeited', () =>
    given([
      opened,
      toppedUp(usd('30')),
      toppedUp(usd('10'), 'pay-2'),
      ev('DisputeOpened', { disputeId: 'dp_1', paymentReference: 'pay-2', amount: usd('10') }),
      closedAtT0,
    ])
      .when(forfeit())
      .then([ev('PurchasedCreditForfeited', { amount: usd('30'), reason: 'claim_period_over' }, day(360))]));
  it('nothing_to_forfeit: run again, nothing more is taken', () =>
    given([opened, toppedUp(usd('30')), closedAtT0, ev('PurchasedCreditForfeited', { amount: usd('30'), reason: 'claim_period_over' }, day(360))])
      .when(forfeit(day(361)))
      .then({ error: 'nothing_to_forfeit' }));
  it('nothing_to_forfeit: a debt stays a debt', () =>
    given([opened, closedAtT0, ev('RefundShortfall', { refundId: 'stripe:re_1', amount: usd('2'), paymentReference: 'pay-1' })])
      .when(forfeit())
      .then({ error: 'nothing_to_forfeit' }));
  it('after the forfeiture, nothing more is paid back or claimed', () => {
    const after = [opened, toppedUp(usd('30')), closedAtT0, ev('PurchasedCreditForfeited', { amount: usd('30'), reason: 'claim_period_over' }, day(360))];
    given(after)
      .when(cmd('RecordPayout', { payoutId: 'p1', method: 'bank_transfer', reference: 'TR-1', amount: usd('1'), reason: 'late' }, day(361)))
      .thenRejectedWith('claim_period_over');
    given(after)
      .when(claim('cl-1', null, day(361)))
      .thenRejectedWith('claim_period_over');
  });
});

// ---------------------------------------------------------------------------------------------
// Property: whatever the order (refund, payout, claim, dispute, close, forfeiture; before and after
// the period), the credit paid back plus forfeited never exceeds what was bought less what was
// spent or lost, each id pays once, nothing is forfeited that was claimed in time, and the journal
// stays balanced and owes the customer exactly the decider's balance.

type Step =
  | { kind: 'card' | 'payout' | 'claim'; id: number; amount: bigint | null; late: boolean }
  | { kind: 'spend'; id: number; amount: bigint }
  | { kind: 'dispute'; id: number; amount: bigint; outcome: 'won' | 'lost' | 'open' }
  | { kind: 'close' | 'forfeit'; late: boolean };

const amountArb = fc.option(fc.bigInt(1n, usd('40')), { nil: null });
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constantFrom('card' as const, 'payout' as const, 'claim' as const), id: fc.nat(3), amount: amountArb, late: fc.boolean() }),
  fc.record({ kind: fc.constant('spend' as const), id: fc.nat(1000), amount: fc.bigInt(0n, usd('20')) }),
  fc.record({
    kind: fc.constant('dispute' as const),
    id: fc.nat(2),
    amount: fc.bigInt(1n, usd('25')),
    outcome: fc.constantFrom('won' as const, 'lost' as const, 'open' as const),
  }),
  fc.record({ kind: fc.constantFrom('close' as const, 'forfeit' as const), late: fc.boolean() }),
);

function commandsOf(s: Step, i: number, state: ReturnType<typeof initialAccountState>, now: string): AccountCommand[] {
  switch (s.kind) {
    case 'card':
      return [cmd('IssueRefund', { refundId: `rf-${s.id}`, amount: s.amount ?? refundableOf(state), paymentReferences: ['pay-1'] }, now)];
    case 'payout':
      return [
        cmd(
          'RecordPayout',
          { payoutId: `payout-${s.id}`, method: 'bank_transfer', reference: `TR-${s.id}`, amount: s.amount ?? outstandingClaimOf(state), reason: 'r' },
          now,
        ),
      ];
    case 'claim':
      return [cmd('ClaimRefund', { claimId: `cl-${s.id}`, amount: s.amount }, now)];
    case 'spend':
      return [
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
    case 'dispute':
      return s.outcome === 'open'
        ? [cmd('OpenDispute', { disputeId: `dp-${s.id}`, paymentReference: 'pay-1', amount: s.amount }, now)]
        : [cmd('CloseDispute', { disputeId: `dp-${s.id}`, paymentReference: 'pay-1', amount: s.amount, outcome: s.outcome }, now)];
    case 'close':
      return [cmd('CloseAccount', { reason: 'customer_request' }, now)];
    case 'forfeit':
      return [cmd('ForfeitUnclaimedCredit', {}, now)];
  }
}

test('property: card refunds, payouts, claims and the forfeiture never pay back or take the same credit twice', () => {
  fc.assert(
    fc.property(fc.array(stepArb, { maxLength: 30 }), (steps) => {
      const stream = accountStreamId('acc-1');
      const history: AccountEvent[] = [opened, toppedUp(usd('50'))];
      let state = history.reduce(evolveAccount, initialAccountState());
      let clock = 0;
      let claimedBeforeTheEnd = 0n;
      steps.forEach((s, i) => {
        // Most steps move a few minutes on; a `late` one jumps 400 days (past any claim period).
        clock += 'late' in s && s.late ? 400 * DAY : 1;
        const now = minutesAfterT0(clock);
        for (const command of commandsOf(s, i, state, now)) {
          const before = state;
          const decision = decideAccount(command, state);
          if (!decision.ok) break;
          for (const event of decision.events) {
            state = evolveAccount(state, event);
            history.push(event);
            if (event.type === 'RefundClaimed') claimedBeforeTheEnd += event.data.amount;
            if (event.type === 'PurchasedCreditForfeited') {
              // Only the unclaimed part: what was claimed in time stays owed.
              expect(event.data.amount).toBe(unclaimedOf(before));
              expect(outstandingClaimOf(state)).toBe(outstandingClaimOf(before));
            }
          }
          // Paying back, claiming and forfeiting never dig into a debt or a disputed hold.
          if (decision.events.length > 0 && ['IssueRefund', 'RecordPayout', 'ClaimRefund', 'ForfeitUnclaimedCredit'].includes(command.type)) {
            expect(state.purchased - state.disputeHeld >= 0n).toBe(true);
            expect(outstandingClaimOf(state) <= refundableOf(state)).toBe(true);
          }
        }
      });
      const spent = history.reduce((sum, e) => sum + (e.type === 'ReservationSettled' ? e.data.fromPurchased : 0n), 0n);
      const lost = history.reduce((sum, e) => sum + (e.type === 'DisputeClosed' ? e.data.debited : 0n), 0n);
      const paidBack = history.reduce((sum, e) => sum + (e.type === 'RefundIssued' || e.type === 'PayoutRecorded' ? e.data.amount : 0n), 0n);
      const forfeited = history.reduce((sum, e) => sum + (e.type === 'PurchasedCreditForfeited' ? e.data.amount : 0n), 0n);
      expect(state.purchased).toBe(usd('50') - spent - lost - paidBack - forfeited);
      if (state.purchased >= 0n) expect(paidBack + forfeited <= usd('50') - spent - lost).toBe(true);
      expect(state.totalClaimed).toBe(claimedBeforeTheEnd);
      // Each id pays or claims once.
      const ids = history.flatMap((e) =>
        e.type === 'RefundIssued' ? [e.data.refundId] : e.type === 'PayoutRecorded' ? [e.data.payoutId] : e.type === 'RefundClaimed' ? [e.data.claimId] : [],
      );
      expect(new Set(ids).size).toBe(ids.length);
      // The journal stays balanced and owes the customer what the decider says.
      const postings = history.flatMap((e) => postingsOf(stream, e));
      expect(sumOfPostings(postings)).toBe(0n);
      expect(customerBalanceOf(postings, 'acc-1')).toBe(state.purchased);
    }),
    { numRuns: 500 },
  );
});
