import fc from 'fast-check';
import { accountStreamId, balanceOf, decideAccount, evolveAccount, initialAccountState, type AccountEvent } from '../../../domain/account';
import type { EventMetadata } from '../../../domain/events/metadata';
import { usd } from '../../../domain/money';
import { customerBalanceOf, postingsOf, sumOfPostings, type Posting } from '../../../projections/journal/journal';
import { runScriptInMemory, sampleAccountScript } from '../../../src/finance/sample-history';

const stream = accountStreamId('acc');
const metadata: EventMetadata = { correlationId: 'c', causationId: 'c', actor: { kind: 'system', process: 't' }, occurredAt: '2025-01-01T00:00:00.000Z' };
const ev = <T extends AccountEvent['type']>(type: T, data: Extract<AccountEvent, { type: T }>['data']) => ({ type, data, metadata }) as AccountEvent;

const moneyEvents: AccountEvent[] = [
  ev('TopUpCompleted', { paymentReference: 'pi_1', amount: usd('25'), autoTopUpAttemptId: null }),
  ev('PromoCreditGranted', { grantId: 'g', amount: usd('5'), expiresAt: '2025-02-01T00:00:00.000Z', reason: 'welcome' }),
  ev('ReservationSettled', {
    requestId: 'r',
    keyId: 'k',
    model: 'm',
    operation: 'chat',
    reservedAmount: usd('1'),
    actualCost: usd('6.5'),
    fromPromo: [{ grantId: 'g', amount: usd('5') }],
    fromPurchased: usd('1.5'),
    usage: { inputTokens: 10n, outputTokens: 20n, estimated: false },
    priceVersion: 1,
    outcome: 'completed',
  }),
  ev('PromoCreditExpired', { grantId: 'g2', amount: usd('2') }),
  ev('RefundIssued', { refundId: 'rf', amount: usd('3'), paymentReferences: ['pi_1'] }),
];

describe('journal postings', () => {
  test.each(moneyEvents.map((e) => [e.type, e] as const))('%s posts balanced lines', (_type, event) => {
    const postings = postingsOf(stream, event);
    expect(postings.length).toBeGreaterThanOrEqual(2);
    expect(sumOfPostings(postings)).toBe(0n);
    expect(postings.every((p) => p.accountId === 'acc' && p.amount !== 0n)).toBe(true);
  });

  test('each money event debits and credits the ledger accounts the design names', () => {
    const lines = (e: AccountEvent) => postingsOf(stream, e).map((p) => `${p.ledgerAccount}:${p.amount}`);
    expect(lines(moneyEvents[0]!)).toEqual(['payment_clearing:25000000', 'customer_purchased_credit:-25000000']);
    expect(lines(moneyEvents[1]!)).toEqual(['promo_expense:5000000', 'customer_promo_credit:-5000000']);
    expect(lines(moneyEvents[2]!)).toEqual(['customer_promo_credit:5000000', 'customer_purchased_credit:1500000', 'revenue:-6500000']);
    expect(lines(moneyEvents[3]!)).toEqual(['customer_promo_credit:2000000', 'promo_expense:-2000000']);
    expect(lines(moneyEvents[4]!)).toEqual(['customer_purchased_credit:3000000', 'refunds_payable:-3000000']);
  });

  test('reservations are holds, not movements: placing, releasing and expiring post nothing', () => {
    expect(
      postingsOf(
        stream,
        ev('ReservationPlaced', {
          requestId: 'r',
          keyId: 'k',
          model: 'm',
          operation: 'chat',
          amount: usd('1'),
          priceVersion: 1,
          expiresAt: metadata.occurredAt,
          instanceId: null,
        }),
      ),
    ).toEqual([]);
    expect(postingsOf(stream, ev('ReservationReleased', { requestId: 'r', amount: usd('1'), reason: 'gateway_error' }))).toEqual([]);
    expect(postingsOf(stream, ev('ReservationExpired', { requestId: 'r', amount: usd('1') }))).toEqual([]);
  });

  test('zero-amount lines are left out: a promo that lapses fully spent posts nothing', () => {
    expect(postingsOf(stream, ev('PromoCreditExpired', { grantId: 'g', amount: 0n }))).toEqual([]);
  });

  test('events of other streams post nothing', () => {
    expect(postingsOf('price-book', moneyEvents[0]!)).toEqual([]);
  });

  test('property: over any account history the postings sum to zero after every event, and the journal owes the customer exactly balanceOf', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 200 }), (seed, steps) => {
        const script = sampleAccountScript('acc', { seed, steps, startAt: '2025-01-01T00:00:00.000Z' });
        const { events } = runScriptInMemory(script, (c, s) => decideAccount(c, s), evolveAccount, initialAccountState());
        let state = initialAccountState();
        let total = 0n;
        let owed = 0n;
        for (const event of events) {
          state = evolveAccount(state, event);
          const postings: Posting[] = postingsOf(stream, event);
          total += sumOfPostings(postings);
          owed += customerBalanceOf(postings, 'acc');
          if (total !== 0n || owed !== balanceOf(state)) return false;
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });
});
