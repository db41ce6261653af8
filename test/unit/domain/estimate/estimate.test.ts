import fc from 'fast-check';
import { estimateReservation, evolveHistoricalCosts, historicalAverage, initialHistoricalCosts } from '../../../../domain/estimate/estimate';
import { requestCost, usd } from '../../../../domain/money/money';
import { ev, opened } from '../account/fixtures';

const price = { inputPerMillion: usd('1'), outputPerMillion: usd('2') };

describe('estimateReservation', () => {
  it('is the upstream estimate (prompt + max output at the price) plus margin when there is no history', () =>
    // 1000 * 1 + 500 * 2 = 2000 micro-USD, +10%
    expect(estimateReservation({ promptTokens: 1000n, maxOutputTokens: 500n, price, marginBasisPoints: 1000n })).toBe(2200n));
  it('uses the historical average when it is higher, with the margin applied to it', () =>
    expect(estimateReservation({ promptTokens: 1000n, maxOutputTokens: 500n, price, historicalAverage: 5000n, marginBasisPoints: 1000n })).toBe(5500n));
  it('ignores a lower historical average', () =>
    expect(estimateReservation({ promptTokens: 1000n, maxOutputTokens: 500n, price, historicalAverage: 10n, marginBasisPoints: 0n })).toBe(2000n));
  it('rounds the margin up to the next micro-USD', () =>
    expect(estimateReservation({ promptTokens: 0n, maxOutputTokens: 0n, price, historicalAverage: 3n, marginBasisPoints: 1n })).toBe(4n));
  it('is never below either source, and margin applies once to the max', () =>
    fc.assert(
      fc.property(fc.bigInt(0n, 200_000n), fc.bigInt(0n, 200_000n), fc.option(fc.bigInt(0n, usd('5')), { nil: undefined }), fc.bigInt(0n, 5000n), (p, m, h, margin) => {
        const upstream = requestCost({ inputTokens: p, outputTokens: m }, price);
        const base = h !== undefined && h > upstream ? h : upstream;
        const e = estimateReservation({ promptTokens: p, maxOutputTokens: m, price, historicalAverage: h, marginBasisPoints: margin });
        expect(e * 10_000n).toBeGreaterThanOrEqual(base * (10_000n + margin));
        expect(e * 10_000n - base * (10_000n + margin)).toBeLessThan(10_000n);
      }),
      { numRuns: 300 },
    ));
});

describe('historical average reducer', () => {
  const settled = (model: string, actualCost: bigint) =>
    ev('ReservationSettled', {
      requestId: 'r', keyId: 'k', model, operation: 'chat', reservedAmount: 0n, actualCost, fromPromo: [], fromPurchased: actualCost,
      usage: { inputTokens: 0n, outputTokens: 0n, estimated: false }, priceVersion: 1, outcome: 'completed', request: null,
    });
  it('averages actual costs per model and operation, exactly, rounded up', () => {
    const history = [opened, settled('a', 10n), settled('a', 11n), settled('b', 1000n)].reduce(evolveHistoricalCosts, initialHistoricalCosts());
    expect(historicalAverage(history, 'a', 'chat')).toBe(11n); // 10.5 -> 11
    expect(historicalAverage(history, 'b', 'chat')).toBe(1000n);
    expect(historicalAverage(history, 'a', 'embedding')).toBeUndefined();
  });
});
