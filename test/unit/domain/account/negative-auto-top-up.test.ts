import { accountDecider } from '../../../../domain/account/decider';
import { usd } from '../../../../domain/money/money';
import { deciderSpec } from '../decider-spec';
import { PRICE_V1, cmd, ev, opened, reservationPlaced, toppedUp } from './fixtures';

/** Negative balance with auto top-up (IMG.LY §6): the debt and the configured amount in one charge. */

const given = deciderSpec(accountDecider());
const configured = ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('5'), amount: usd('20') } });
const trigger = cmd('RecordAutoTopUpTriggered', { attemptId: 'att-1' });
/** USD 1 reserved, USD 3.5 charged (3.5M input tokens at USD 1 per million): USD 2.5 short on USD 1 of credit. */
const shortSettlement = ev('ReservationSettled', {
  requestId: 'r1',
  keyId: 'key-1',
  model: 'llama-3.1-8b',
  operation: 'chat',
  reservedAmount: usd('1'),
  actualCost: usd('3.5'),
  fromPromo: [],
  fromPurchased: usd('3.5'),
  usage: { inputTokens: 3_500_000n, outputTokens: 0n, estimated: false },
  priceVersion: PRICE_V1.version,
  outcome: 'completed',
});

describe('RecordAutoTopUpTriggered with a negative balance', () => {
  it('charges the debt together with the configured amount, in one attempt', () =>
    given([opened, toppedUp(usd('1')), configured, reservationPlaced('r1', usd('1')), shortSettlement])
      .when(trigger)
      .then([ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('22.5'), debt: usd('2.5') })]));

  it('no debt: the configured amount alone', () =>
    given([opened, toppedUp(usd('1')), configured])
      .when(trigger)
      .then([ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('20'), debt: 0n })]));

  it('once paid, the debt is gone and the configured amount is left; a negative_balance suspension ends', () => {
    const state = given([
      opened,
      toppedUp(usd('1')),
      configured,
      reservationPlaced('r1', usd('1')),
      shortSettlement,
      ev('AccountSuspended', { reason: 'negative_balance' }),
      ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('22.5'), debt: usd('2.5') }),
    ])
      .when(cmd('CompleteTopUp', { paymentReference: 'pi_1', amount: usd('22.5'), autoTopUpAttemptId: 'att-1' }))
      .thenState();
    expect([state.purchased, state.pendingAutoTopUp, state.status]).toEqual([usd('20'), null, 'open']);
  });

  it('the balance limit sees the balance after the charge (the configured amount), so a top-up at the ceiling still takes the debt', () =>
    given([
      opened,
      toppedUp(usd('1')),
      ev('AutoTopUpConfigured', { autoTopUp: { threshold: usd('5'), amount: usd('9995') } }),
      reservationPlaced('r1', usd('1')),
      shortSettlement,
    ])
      .when(trigger)
      .then([ev('AutoTopUpTriggered', { attemptId: 'att-1', amount: usd('9997.5'), debt: usd('2.5') })]));

  it('a suspended account is not charged, debt or not (a decline suspends as before)', () =>
    given([
      opened,
      toppedUp(usd('1')),
      configured,
      reservationPlaced('r1', usd('1')),
      shortSettlement,
      ev('AccountSuspended', { reason: 'auto_top_up_failed' }),
    ])
      .when(trigger)
      .thenRejectedWith('account_suspended'));
});
