import { type RateLimits, RateLimiter } from '../../../adapters/http/admission/rate-limiter';

function fakeClock(start = 1_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const limits = (requestsPerMinute: number | null, tokensPerMinute: number | null): RateLimits => ({ requestsPerMinute, tokensPerMinute });

describe('per-key rate limits', () => {
  it('admits up to the requests-per-minute limit, then refuses with 429 rate_limit_exceeded', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    for (let i = 0; i < 3; i++) expect(limiter.admit('k1', limits(3, null), 0).ok).toBe(true);
    const refused = limiter.admit('k1', limits(3, null), 0);
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    expect(refused.error).toMatchObject({ status: 429, type: 'requests', code: 'rate_limit_exceeded' });
    // One request refills every 20 s at 3 RPM.
    expect(refused.error.headers['retry-after']).toBe('20');
    expect(refused.error.headers['retry-after-ms']).toBe('20000');
    expect(refused.error.headers['x-should-retry']).toBeUndefined();
    expect(refused.error.headers['x-ratelimit-remaining-requests']).toBe('0');
  });

  it('keeps keys apart', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    expect(limiter.admit('a', limits(1, null), 0).ok).toBe(true);
    expect(limiter.admit('a', limits(1, null), 0).ok).toBe(false);
    expect(limiter.admit('b', limits(1, null), 0).ok).toBe(true);
  });

  it('refills continuously: admitted again exactly after the advertised wait, not before', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    limiter.admit('k', limits(7, null), 0);
    for (let i = 0; i < 6; i++) limiter.admit('k', limits(7, null), 0);
    const refused = limiter.admit('k', limits(7, null), 0);
    if (refused.ok) throw new Error('expected a refusal');
    const waitMs = Number(refused.error.headers['retry-after-ms']);
    clock.advance(waitMs - 5);
    expect(limiter.admit('k', limits(7, null), 0).ok).toBe(false);
    clock.advance(5);
    expect(limiter.admit('k', limits(7, null), 0).ok).toBe(true);
  });

  it('limits tokens per minute by the estimate, and a refusal consumes nothing', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    expect(limiter.admit('k', limits(100, 1000), 700).ok).toBe(true);
    const refused = limiter.admit('k', limits(100, 1000), 400);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error).toMatchObject({ status: 429, type: 'tokens', code: 'rate_limit_exceeded' });
    // 100 tokens short at 1000 TPM: 6 s.
    expect(refused.error.headers['retry-after-ms']).toBe('6000');
    expect(refused.error.headers['retry-after']).toBe('6');
    // The refused request did not take a request slot: 98 remain after the next admission.
    const next = limiter.admit('k', limits(100, 1000), 300);
    expect(next).toMatchObject({ ok: true, headers: { 'x-ratelimit-remaining-requests': '98', 'x-ratelimit-remaining-tokens': '0' } });
  });

  it('a request larger than the whole per-minute token budget is told not to retry', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    const refused = limiter.admit('k', limits(null, 1000), 1001);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error).toMatchObject({ status: 429, type: 'tokens' });
    expect(refused.error.headers['x-should-retry']).toBe('false');
    expect(refused.error.headers['retry-after']).toBeUndefined();
  });

  it('waits for the slower kind when both are short', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    limiter.admit('k', limits(60, 600), 600); // 1 request per s, 10 tokens per s
    limiter.admit('k', limits(60, 600), 0);
    // ...59 requests left, so exhaust them
    for (let i = 0; i < 58; i++) limiter.admit('k', limits(60, 600), 0);
    const refused = limiter.admit('k', limits(60, 600), 50);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error.type).toBe('requests');
    expect(refused.error.headers['retry-after-ms']).toBe('5000'); // 50 tokens at 10/s, longer than 1 s for a request
  });

  it("sends OpenAI's x-ratelimit headers, with reset as the time back to full", () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    const admitted = limiter.admit('k', limits(60, 150_000), 15_000);
    expect(admitted).toEqual({
      ok: true,
      headers: {
        'x-ratelimit-limit-requests': '60',
        'x-ratelimit-remaining-requests': '59',
        'x-ratelimit-reset-requests': '1s',
        'x-ratelimit-limit-tokens': '150000',
        'x-ratelimit-remaining-tokens': '135000',
        'x-ratelimit-reset-tokens': '6s',
      },
    });
  });

  it('omits the headers of a kind that is not limited', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    const admitted = limiter.admit('k', limits(10, null), 5);
    expect(Object.keys(admitted.headers).sort()).toEqual(['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests']);
  });

  it('never refills above the limit', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    limiter.admit('k', limits(2, null), 0);
    clock.advance(10 * 60_000);
    expect(limiter.admit('k', limits(2, null), 0).ok).toBe(true);
    expect(limiter.admit('k', limits(2, null), 0).ok).toBe(true);
    expect(limiter.admit('k', limits(2, null), 0).ok).toBe(false);
  });

  it('reconciling gives back an over-estimate and takes a shortfall', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    limiter.admit('k', limits(null, 1000), 1000);
    limiter.reconcileTokens('k', limits(null, 1000), 1000, 200);
    expect(limiter.admit('k', limits(null, 1000), 800).ok).toBe(true);
    limiter.reconcileTokens('k', limits(null, 1000), 800, 1000); // used 200 more than estimated: bucket at -200
    const refused = limiter.admit('k', limits(null, 1000), 100);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error.headers['retry-after-ms']).toBe('18000'); // 300 tokens at 1000/min
  });

  it('a lowered limit takes effect at once', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    limiter.admit('k', limits(100, null), 0);
    expect(limiter.admit('k', limits(1, null), 0).ok).toBe(true);
    expect(limiter.admit('k', limits(1, null), 0).ok).toBe(false);
  });

  it('forgets keys whose buckets are full again', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now, sweepEvery: 3 });
    limiter.admit('a', limits(10, null), 0);
    limiter.admit('b', limits(10, null), 0);
    clock.advance(60_000);
    limiter.admit('c', limits(10, null), 0); // third admission sweeps a and b before c is added
    expect(limiter.trackedKeys).toBe(1);
  });
});
