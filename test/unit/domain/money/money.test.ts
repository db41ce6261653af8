import fc from 'fast-check';
import { RejectedError } from '../../../../domain/decider/decision';
import { ceilDiv, costOf, formatUsd, parseUsd, requestCost, usd } from '../../../../domain/money/money';

describe('usd / parseUsd', () => {
  it.each([
    ['10', 10_000_000n],
    ['10.5', 10_500_000n],
    ['10.50', 10_500_000n],
    ['0.000001', 1n],
    ['-0.000001', -1n],
    ['10000', 10_000_000_000n],
    ['123456789012345.123456', 123456789012345123456n],
  ])('parses %s exactly', (input, expected) => expect(usd(input)).toBe(expected));

  it.each(['', '.5', '10.', '1.0000001', '1e3', ' 10', '10 ', '+10', '1,000', 'ten', '0x10', '--1', 'NaN', 'Infinity'])(
    'refuses junk %j with invalid_usd_amount',
    (input) => expect(parseUsd(input)).toEqual({ ok: false, error: { error: 'invalid_usd_amount', input } }),
  );

  it('usd throws a RejectedError carrying the named error', () => {
    expect(() => usd('1.2.3')).toThrow(RejectedError);
    try {
      usd('abc');
    } catch (e) {
      expect((e as RejectedError).rejection).toEqual({ error: 'invalid_usd_amount', input: 'abc' });
    }
  });
});

describe('formatUsd', () => {
  it.each([
    [10_500_000n, '10.500000'],
    [0n, '0.000000'],
    [1n, '0.000001'],
    [-1n, '-0.000001'],
    [-10_500_000n, '-10.500000'],
  ])('formats %p as %s', (micro, text) => expect(formatUsd(micro)).toBe(text));

  it('round-trips with parseUsd for any amount', () =>
    fc.assert(
      fc.property(fc.bigInt(-(10n ** 20n), 10n ** 20n), (m) => expect(usd(formatUsd(m))).toBe(m)),
      { numRuns: 500 },
    ));
});

describe('costOf and requestCost: the single rounding rule', () => {
  it('rounds up to the next micro-USD', () => {
    expect(costOf(1n, 1n)).toBe(1n);
    expect(costOf(1_000_000n, 1n)).toBe(1n);
    expect(costOf(1_000_001n, 1n)).toBe(2n);
    expect(costOf(0n, 5_000_000n)).toBe(0n);
    expect(costOf(1234n, usd('0.15'))).toBe(186n); // 185.1 micro-USD
  });

  it('sums input and output exactly, then rounds up once', () => {
    // 0.5 + 0.5 micro-USD = 1, where rounding each part would charge 2
    expect(requestCost({ inputTokens: 1n, outputTokens: 1n }, { inputPerMillion: 500_000n, outputPerMillion: 500_000n })).toBe(1n);
  });

  it('is the exact cost rounded up: never less, less than one micro-USD more, never more than rounding each part', () =>
    fc.assert(
      fc.property(fc.bigInt(0n, 10n ** 9n), fc.bigInt(0n, 10n ** 9n), fc.bigInt(0n, 10n ** 9n), fc.bigInt(0n, 10n ** 9n), (i, o, pi, po) => {
        const c = requestCost({ inputTokens: i, outputTokens: o }, { inputPerMillion: pi, outputPerMillion: po });
        const exactTimesMillion = i * pi + o * po;
        expect(c * 1_000_000n).toBeGreaterThanOrEqual(exactTimesMillion);
        expect(c * 1_000_000n - exactTimesMillion).toBeLessThan(1_000_000n);
        expect(c).toBeLessThanOrEqual(costOf(i, pi) + costOf(o, po));
      }),
      { numRuns: 500 },
    ));

  it('refuses negative inputs', () => {
    expect(() => costOf(-1n, 1n)).toThrow(RangeError);
    expect(() => ceilDiv(1n, 0n)).toThrow(RangeError);
  });
});
