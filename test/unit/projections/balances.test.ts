import fc from 'fast-check';
import { accountStreamId, decideAccount, evolveAccount, initialAccountState, promoBalanceOf } from '../../../domain/account';
import { accountIdOfStream, applyBalanceChange, availableOfRow, balanceChange, isNegative, type BalanceRow } from '../../../projections/balances/balances';
import { runScriptInMemory, sampleAccountScript } from '../../../src/finance/sample-history';

describe('balances reducer', () => {
  test('only account streams have a balance', () => {
    expect(accountIdOfStream('account-a1')).toBe('a1');
    expect(accountIdOfStream('price-book')).toBeNull();
    // An account's members stream (domain/user) is not an account stream: verify would fold MemberAdded into an account.
    expect(accountIdOfStream('account-members-a1')).toBeNull();
    expect(accountIdOfStream('api-key-k1')).toBeNull();
  });

  test('property: folding the changes gives the domain state: purchased, recorded promo, open reservations, available, debt', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 200 }), (seed, steps) => {
        const script = sampleAccountScript('acc', { seed, steps, startAt: '2025-03-01T00:00:00.000Z' });
        const { events } = runScriptInMemory(script, (c, s) => decideAccount(c, s), evolveAccount, initialAccountState());
        let state = initialAccountState();
        let row: BalanceRow | undefined;
        for (const event of events) {
          state = evolveAccount(state, event);
          row = applyBalanceChange(row, balanceChange(accountStreamId('acc'), event)!);
          const promo = promoBalanceOf(state);
          if (row.purchased !== state.purchased || row.promo !== promo || row.reserved !== state.reserved) return false;
          if (availableOfRow(row) !== state.purchased + promo - state.reserved) return false;
          if (isNegative(row) !== state.purchased < 0n) return false;
        }
        return true;
      }),
      { numRuns: 200 },
    );
  });

  test('the sample histories do reach debt, promo lapse and refunds (the property above is not vacuous)', () => {
    const seen = new Set<string>();
    let debt = false;
    for (let seed = 0; seed < 40; seed++) {
      const { events } = runScriptInMemory(
        sampleAccountScript('acc', { seed, steps: 150, startAt: '2025-03-01T00:00:00.000Z' }),
        (c, s) => decideAccount(c, s),
        evolveAccount,
        initialAccountState(),
      );
      let state = initialAccountState();
      for (const e of events) {
        seen.add(e.type);
        state = evolveAccount(state, e);
        if (state.purchased < 0n) debt = true;
      }
    }
    expect(debt).toBe(true);
    expect([...seen].sort()).toEqual(
      [
        'AccountOpened',
        'PromoCreditExpired',
        'PromoCreditGranted',
        'RefundIssued',
        'ReservationExpired',
        'ReservationPlaced',
        'ReservationReleased',
        'ReservationSettled',
        'TopUpCompleted',
      ].sort(),
    );
  });
});
