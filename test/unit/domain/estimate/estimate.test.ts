import fc from 'fast-check';
import { averageCost, estimateReservation } from '../../../../domain/estimate/estimate';
import { requestCost, usd } from '../../../../domain/money/money';

const price = { inputPerMillion: usd('1'), outputPerMillion: usd('2') };

describe('estimateReservation', () => {
  it('is the upstream estimate (prompt + max output at the price) plus margin when there is no history', () =>
    // 1000 * 1 + 500 * 2 = 2000 micro-USD, +10%
    expect(estimateReservation({ promptTokens: 1000n, maxOutputTokens: 500n, price, marginBasisPoints: 1000n })).toEqual({
      amount: 2200n,
      maximumCost: 2200n,
    }));

  it('a historical average above the maximum possible cost is capped at it (issue 12: USD 1 refused a max_tokens 10 request)', () => {
    // 12 prompt + 10 output tokens at USD 20 / 60 per million: at most USD 0.00084, +10%.
    const cheap = { inputPerMillion: usd('20'), outputPerMillion: usd('60') };
    const estimate = estimateReservation({
      promptTokens: 12n,
      maxOutputTokens: 10n,
      price: cheap,
      historicalAverage: usd('0.960609'),
      marginBasisPoints: 1000n,
    });
    expect(estimate).toEqual({ amount: 924n, maximumCost: 924n });
  });

  it('ignores a lower historical average', () =>
    expect(estimateReservation({ promptTokens: 1000n, maxOutputTokens: 500n, price, historicalAverage: 10n, marginBasisPoints: 0n }).amount).toBe(2000n));

  it('rounds the margin up to the next micro-USD', () =>
    expect(
      estimateReservation({ promptTokens: 1n, maxOutputTokens: 0n, price: { inputPerMillion: usd('3'), outputPerMillion: 0n }, marginBasisPoints: 1n }).amount,
    ).toBe(4n));

  it('an embedding (no output tokens) can cost at most its prompt, plus the margin', () =>
    expect(estimateReservation({ promptTokens: 5000n, maxOutputTokens: 0n, price, historicalAverage: usd('9'), marginBasisPoints: 1000n })).toEqual({
      amount: 5500n,
      maximumCost: 5500n,
    }));

  it('refuses a negative margin or a negative average', () => {
    expect(() => estimateReservation({ promptTokens: 1n, maxOutputTokens: 1n, price, marginBasisPoints: -1n })).toThrow(RangeError);
    expect(() => estimateReservation({ promptTokens: 1n, maxOutputTokens: 1n, price, historicalAverage: -1n, marginBasisPoints: 0n })).toThrow(RangeError);
  });

  // The property issue 12 asks for: whatever the request, the prices, the history and the margin,
  // the reservation never exceeds what the request can cost (prompt + max output at the price,
  // plus the margin), and never falls below the upstream estimate plus the margin (which is
  // itself within the cap), so the settlement's only shortfall is the prompt count's error.
  it('never exceeds the maximum possible cost, and never falls below the upstream estimate plus margin', () =>
    fc.assert(
      fc.property(
        fc.bigInt(0n, 2_000_000n), // prompt tokens
        fc.bigInt(0n, 1_000_000n), // max output tokens (0: an embedding)
        fc.bigInt(0n, usd('1000')), // input price per million
        fc.bigInt(0n, usd('1000')), // output price per million
        fc.option(fc.bigInt(0n, usd('100000')), { nil: undefined }), // any historical average
        fc.bigInt(0n, 100_000n), // margin, basis points
        (promptTokens, maxOutputTokens, inputPerMillion, outputPerMillion, historicalAverage, marginBasisPoints) => {
          const p = { inputPerMillion, outputPerMillion };
          const { amount, maximumCost } = estimateReservation({ promptTokens, maxOutputTokens, price: p, historicalAverage, marginBasisPoints });
          const upstream = requestCost({ inputTokens: promptTokens, outputTokens: maxOutputTokens }, p);
          // maximumCost is the upstream estimate plus the margin, rounded up once:
          expect(maximumCost * 10_000n).toBeGreaterThanOrEqual(upstream * (10_000n + marginBasisPoints));
          expect(maximumCost * 10_000n - upstream * (10_000n + marginBasisPoints)).toBeLessThan(10_000n);
          expect(amount).toBeLessThanOrEqual(maximumCost);
          expect(amount).toBeGreaterThanOrEqual(upstream);
          // below the cap, the higher of the two estimates with its margin is what is reserved
          const base = historicalAverage !== undefined && historicalAverage > upstream ? historicalAverage : upstream;
          const uncapped = (base * (10_000n + marginBasisPoints) + 9_999n) / 10_000n;
          expect(amount).toBe(uncapped < maximumCost ? uncapped : maximumCost);
        },
      ),
      { numRuns: 1_000 },
    ));
});

describe('averageCost', () => {
  it('is exact, rounded up to the next micro-USD', () => {
    expect(averageCost(21n, 2n)).toBe(11n); // 10.5 -> 11
    expect(averageCost(1000n, 1n)).toBe(1000n);
    expect(averageCost(0n, 3n)).toBe(0n);
  });
  it('is undefined without requests', () => expect(averageCost(0n, 0n)).toBeUndefined());
});
