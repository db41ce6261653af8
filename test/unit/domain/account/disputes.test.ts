import fc from 'fast-check';
import type { AccountCommand } from '../../../../domain/account/commands';
import { decideAccount } from '../../../../domain/account/decide';
import { accountDecider, accountStreamId } from '../../../../domain/account/decider';
import type { AccountEvent, DisputeOutcome } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import { availableOf, initialAccountState, refundableOf, type AccountState } from '../../../../domain/account/state';
import { domainEventCodec } from '../../../../domain/events/codec';
import { usd } from '../../../../domain/money/money';
import { applyBalanceChange, balanceChange, type BalanceRow } from '../../../../projections/balances/balances';
import { customerBalanceOf, postingsOf, sumOfPostings } from '../../../../projections/journal/journal';
import { deciderSpec } from '../decider-spec';
import { PRICE_V1, cmd, ev, minutesAfterT0, opened, reservationPlaced, toppedUp } from './fixtures';

/**
 * Card disputes (Stripe charge.dispute.created / .closed): the disputed amount is held and the
 * account suspended for `payment_dispute`; won, the hold ends and the suspension is lifted unless
 * another reason keeps it; lost, the amount leaves the purchased credit (possibly into debt).
 * Suspension reasons are a set: the account is active only when it is empty.
 */

const given = deciderSpec(accountDecider());

const open = (disputeId = 'dp-1', amount = usd('20'), paymentReference = 'pay-1') => cmd('OpenDispute', { disputeId, paymentReference, amount });
const close = (outcome: DisputeOutcome, disputeId = 'dp-1', amount = usd('20'), paymentReference = 'pay-1') =>
  cmd('CloseDispute', { disputeId, paymentReference, amount, outcome });
const opened1 = (disputeId = 'dp-1', amount = usd('20')) => ev('DisputeOpened', { disputeId, paymentReference: 'pay-1', amount });
const suspendedForDispute = ev('AccountSuspended', { reason: 'payment_dispute' });

describe('OpenDispute', () => {
  it('holds the amount and suspends the account for payment_dispute', () =>
    given([opened, toppedUp(usd('50'))])
      .when(open())
      .then([opened1(), suspendedForDispute]));
  it('the held amount is neither spendable nor refundable', () => {
    const state = given([opened, toppedUp(usd('50'))])
      .when(open())
      .thenState();
    expect([state.status, state.suspensionReason, availableOf(state), refundableOf(state)]).toEqual(['suspended', 'payment_dispute', usd('30'), usd('30')]);
  });
  it('a refund of the held amount is refused', () =>
    given([opened, toppedUp(usd('50')), opened1(), suspendedForDispute])
      .when(cmd('IssueRefund', { refundId: 'rf-1', amount: usd('31'), paymentReferences: ['pay-1'] }))
      .then({ error: 'exceeds_refundable_credit', refundable: usd('30'), requested: usd('31') }));
  it('created twice: once', () =>
    given([opened, toppedUp(usd('50')), opened1(), suspendedForDispute])
      .when(open())
      .then([]));
  it('a second dispute holds its amount without suspending again', () =>
    given([opened, toppedUp(usd('50'), 'pay-1'), opened1(), suspendedForDispute])
      .when(open('dp-2', usd('5')))
      .then([opened1('dp-2', usd('5'))]));
  it('an account suspended for another reason gains payment_dispute in its set', () => {
    const state = given([opened, toppedUp(usd('50')), ev('AccountSuspended', { reason: 'terms_violation' })])
      .when(open())
      .thenState();
    expect([...state.suspensionReasons]).toEqual(['terms_violation', 'payment_dispute']);
  });
  it('on a closed account: the hold is recorded, the account stays closed', () => {
    const state = given([opened, toppedUp(usd('50')), ev('AccountClosed', { reason: 'customer_request' })])
      .when(open())
      .thenState();
    expect([state.status, refundableOf(state)]).toEqual(['closed', usd('30')]);
  });
  it('unknown_payment_reference: a payment this account never received', () =>
    given([opened, toppedUp(usd('50'))])
      .when(open('dp-1', usd('20'), 'pay-other'))
      .then({ error: 'unknown_payment_reference', paymentReference: 'pay-other' }));
  it('amount_must_be_positive', () =>
    given([opened, toppedUp(usd('50'))])
      .when(open('dp-1', 0n))
      .then({ error: 'amount_must_be_positive', amount: 0n }));
});

describe('CloseDispute', () => {
  const disputed = [opened, toppedUp(usd('50')), opened1(), suspendedForDispute];
  it('won: the hold ends and the account is reinstated', () =>
    given(disputed)
      .when(close('won'))
      .then([
        ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'won', debited: 0n }),
        ev('AccountReinstated', { reason: 'dispute_won', lifted: ['payment_dispute'] }),
      ]));
  it('won, but another reason keeps the account suspended', () => {
    const state = given([...disputed, ev('AccountSuspended', { reason: 'terms_violation' })])
      .when(close('won'))
      .thenState();
    expect([state.status, [...state.suspensionReasons], availableOf(state)]).toEqual(['suspended', ['terms_violation'], usd('50')]);
  });
  it('won, but another dispute is still open: still suspended, only this hold ends', () => {
    const state = given([...disputed, opened1('dp-2', usd('5'))])
      .when(close('won'))
      .thenState();
    expect([state.status, refundableOf(state)]).toEqual(['suspended', usd('45')]);
  });
  it('lost: the amount leaves the purchased credit; the account stays suspended for an operator to decide', () => {
    const state = given(disputed).when(close('lost')).thenState();
    expect([state.status, state.purchased, refundableOf(state), state.totalDisputeLosses]).toEqual(['suspended', usd('30'), usd('30'), usd('20')]);
  });
  it('lost after the credit was spent: the purchased credit goes negative', () =>
    given([
      opened,
      toppedUp(usd('50')),
      reservationPlaced('r1', usd('45')),
      ev('ReservationSettled', {
        requestId: 'r1',
        keyId: 'key-1',
        model: 'llama-3.1-8b',
        operation: 'chat',
        reservedAmount: usd('45'),
        actualCost: usd('45'),
        fromPromo: [],
        fromPurchased: usd('45'),
        usage: { inputTokens: 45_000_000n, outputTokens: 0n, estimated: false },
        priceVersion: PRICE_V1.version,
        outcome: 'completed',
      }),
      opened1(),
      suspendedForDispute,
    ])
      .when(close('lost'))
      .then([ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'lost', debited: usd('20') })]));
  it('closed twice: once', () =>
    given([...disputed, ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'lost', debited: usd('20') })])
      .when(close('lost'))
      .then([]));
  it('closed before created: opened and closed at once, without a suspension', () =>
    given([opened, toppedUp(usd('50'))])
      .when(close('lost'))
      .then([opened1(), ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'lost', debited: usd('20') })]));
  it('created after closed: nothing', () =>
    given([opened, toppedUp(usd('50')), opened1(), ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'won', debited: 0n })])
      .when(open())
      .then([]));
});

describe('suspension reasons are a set', () => {
  it('a top-up lifts only the money reasons; a dispute keeps the account suspended', () =>
    given([opened, toppedUp(usd('50')), opened1(), suspendedForDispute, ev('AccountSuspended', { reason: 'auto_top_up_failed' }, minutesAfterT0(1))])
      .when(cmd('CompleteTopUp', { paymentReference: 'pay-2', amount: usd('10') }))
      .then([
        ev('TopUpCompleted', { paymentReference: 'pay-2', amount: usd('10'), autoTopUpAttemptId: null }),
        ev('AccountReinstated', { reason: 'balance_restored', lifted: ['auto_top_up_failed'] }),
      ]));
  it('an operator lifts every reason but an open dispute', () =>
    given([opened, toppedUp(usd('50')), opened1(), suspendedForDispute, ev('AccountSuspended', { reason: 'terms_violation' })])
      .when(cmd('ReinstateAccount', {}))
      .then([ev('AccountReinstated', { reason: 'admin_decision', lifted: ['terms_violation'] })]));
  it('dispute_open: an operator cannot lift a suspension only an open dispute holds', () =>
    given([opened, toppedUp(usd('50')), opened1(), suspendedForDispute])
      .when(cmd('ReinstateAccount', {}))
      .then({ error: 'dispute_open', openDisputes: 1 }));
  it('an operator can lift payment_dispute once the dispute was lost', () => {
    const state = given([
      opened,
      toppedUp(usd('50')),
      opened1(),
      suspendedForDispute,
      ev('DisputeClosed', { disputeId: 'dp-1', outcome: 'lost', debited: usd('20') }),
    ])
      .when(cmd('ReinstateAccount', {}))
      .thenState();
    expect([state.status, state.suspensionReasons.size]).toEqual(['open', 0]);
  });
  it('old events decode: an AccountReinstated without `lifted` lifts the single reason it had', () => {
    const encoded = domainEventCodec.encode(ev('AccountReinstated', { reason: 'admin_decision', lifted: null }));
    const payload = JSON.parse(JSON.stringify(encoded.data)) as Record<string, unknown>;
    delete payload['lifted'];
    const decoded = domainEventCodec.decode({ ...encoded, data: payload }) as AccountEvent;
    expect(decoded.data).toEqual({ reason: 'admin_decision', lifted: null });
    const state = [opened, ev('AccountSuspended', { reason: 'negative_balance' }), decoded].reduce(evolveAccount, initialAccountState());
    expect([state.status, state.suspensionReason]).toEqual(['open', null]);
  });
  it('a suspended account is not charged by auto top-up', () =>
    given([opened, ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('5'), amount: usd('20') } }), opened1('dp-1', usd('1')), suspendedForDispute])
      .when(cmd('RecordAutoTopUpTriggered', { attemptId: 'att-1' }))
      .thenRejectedWith('account_suspended'));
});

/**
 * Every webhook of a dispute (created, closed) in any order, any number of times, interleaved
 * with top-ups: the result is the same as created-then-closed once, and the journal balances.
 */
describe('property: delivery order and redelivery', () => {
  interface Delivery {
    readonly dispute: number;
    readonly kind: 'created' | 'closed';
  }
  const stream = accountStreamId('acc-1');

  function run(
    deliveries: readonly Delivery[],
    outcomes: readonly DisputeOutcome[],
    amounts: readonly bigint[],
  ): { state: AccountState; events: AccountEvent[]; journal: bigint; owed: bigint; row: BalanceRow | undefined } {
    let state = [opened, toppedUp(usd('50'))].reduce(evolveAccount, initialAccountState());
    const events: AccountEvent[] = [];
    let journal = 0n;
    let owed = 0n;
    let row: BalanceRow | undefined;
    for (const e of [opened, toppedUp(usd('50'))]) {
      row = applyBalanceChange(row, balanceChange(stream, e)!);
      owed += customerBalanceOf(postingsOf(stream, e), 'acc-1');
    }
    deliveries.forEach(({ dispute, kind }, i) => {
      const data = { disputeId: `dp-${dispute}`, paymentReference: 'pay-1', amount: amounts[dispute]! };
      const command: AccountCommand =
        kind === 'created'
          ? cmd('OpenDispute', data, minutesAfterT0(i + 1))
          : cmd('CloseDispute', { ...data, outcome: outcomes[dispute]! }, minutesAfterT0(i + 1));
      const decision = decideAccount(command, state);
      expect(decision.ok).toBe(true);
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
    return { state, events, journal, owed, row };
  }

  it('each dispute opens once and closes once; what is lost is debited once; status follows the open disputes', () => {
    const arb = fc
      .record({
        outcomes: fc.array(fc.constantFrom<DisputeOutcome>('won', 'lost'), { minLength: 3, maxLength: 3 }),
        amounts: fc.array(fc.bigInt(1n, usd('30')), { minLength: 3, maxLength: 3 }),
        deliveries: fc.array(fc.record({ dispute: fc.nat(2), kind: fc.constantFrom<'created' | 'closed'>('created', 'closed') }), { maxLength: 20 }),
      })
      // every dispute mentioned at all is closed at the end at least once (Stripe always closes)
      .map(({ deliveries, ...rest }) => ({
        ...rest,
        deliveries: [...deliveries, ...[...new Set(deliveries.map((d) => d.dispute))].map((dispute) => ({ dispute, kind: 'closed' as const }))],
      }));
    fc.assert(
      fc.property(arb, ({ outcomes, amounts, deliveries }) => {
        const { state, events, journal, owed, row } = run(deliveries, outcomes, amounts);
        const mentioned = new Set(deliveries.map((d) => d.dispute));
        for (const d of mentioned) {
          expect(events.filter((e) => e.type === 'DisputeOpened' && e.data.disputeId === `dp-${d}`)).toHaveLength(1);
          expect(events.filter((e) => e.type === 'DisputeClosed' && e.data.disputeId === `dp-${d}`)).toHaveLength(1);
        }
        const lost = [...mentioned].filter((d) => outcomes[d] === 'lost').reduce((sum, d) => sum + amounts[d]!, 0n);
        expect(state.purchased).toBe(usd('50') - lost);
        expect(state.disputeHeld).toBe(0n);
        // Status follows the set of reasons, and only payment_dispute is ever given here.
        expect(state.status === 'suspended').toBe(state.suspensionReasons.has('payment_dispute'));
        expect(journal).toBe(0n);
        expect(owed).toBe(state.purchased);
        expect(row?.purchased).toBe(state.purchased);
        const suspensions = events.filter((e) => e.type === 'AccountSuspended').length;
        const reinstatements = events.filter((e) => e.type === 'AccountReinstated').length;
        expect(suspensions - reinstatements).toBe(state.status === 'suspended' ? 1 : 0);
      }),
      { numRuns: 500 },
    );
  });

  it('any order gives the same balance as created then closed in order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom<DisputeOutcome>('won', 'lost'), { minLength: 3, maxLength: 3 }),
        fc.array(fc.bigInt(1n, usd('30')), { minLength: 3, maxLength: 3 }),
        fc.array(fc.record({ dispute: fc.nat(2), kind: fc.constantFrom<'created' | 'closed'>('created', 'closed') }), { maxLength: 20 }),
        (outcomes, amounts, shuffled) => {
          const all = [0, 1, 2].flatMap((dispute) => [
            { dispute, kind: 'created' as const },
            { dispute, kind: 'closed' as const },
          ]);
          const inOrder = run(all, outcomes, amounts);
          const anyOrder = run([...shuffled, ...all, ...shuffled], outcomes, amounts);
          expect([anyOrder.state.purchased, anyOrder.state.totalDisputeLosses, anyOrder.state.disputeHeld]).toEqual([
            inOrder.state.purchased,
            inOrder.state.totalDisputeLosses,
            inOrder.state.disputeHeld,
          ]);
        },
      ),
      { numRuns: 300 },
    );
  });
});
