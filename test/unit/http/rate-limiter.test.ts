import { type RateLimits, RateLimiter } from '../../../adapters/http/admission/rate-limiter';
import { clusterAdmissionBound, shareOf } from '../../../adapters/http/admission/share';

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

describe('per-account limits: every key of an account draws on one allowance', () => {
  const account = (id: string, requestsPerMinute: number | null, tokensPerMinute: number | null) => ({
    id,
    limits: limits(requestsPerMinute, tokensPerMinute),
  });

  it('a fresh key brings no fresh allowance: the account is refused once its limit is spent, whichever key asks', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    const acme = account('acme', 5, null);
    for (let i = 0; i < 5; i++) expect(limiter.admit(`key-${i}`, limits(3, null), 0, acme).ok).toBe(true);
    for (let i = 5; i < 20; i++) {
      const refused = limiter.admit(`key-${i}`, limits(3, null), 0, acme);
      if (refused.ok) throw new Error(`fresh key ${i} passed the account's limit`);
      expect(refused.error.message).toContain("this key's account");
      expect(refused.error.headers['x-ratelimit-limit-requests']).toBe('5');
    }
    // Another account is untouched.
    expect(limiter.admit('other-key', limits(3, null), 0, account('globex', 5, null)).ok).toBe(true);
  });

  it("a key's own limit within the account's still applies", () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    const acme = account('acme', 100, null);
    for (let i = 0; i < 3; i++) expect(limiter.admit('k', limits(3, null), 0, acme).ok).toBe(true);
    const refused = limiter.admit('k', limits(3, null), 0, acme);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error.message).toContain('for this key on');
    expect(limiter.admit('k2', limits(3, null), 0, acme).ok).toBe(true);
  });

  it("a refusal by the key's limit takes nothing from the account's, and tokens reconcile in both", () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now });
    const acme = account('acme', null, 1000);
    expect(limiter.admit('k', limits(null, 600), 600, acme).ok).toBe(true);
    expect(limiter.admit('k', limits(null, 600), 100, acme).ok).toBe(false); // the key is out, the account is not charged for it
    expect(limiter.admit('k2', limits(null, 600), 400, acme).ok).toBe(true); // 1000 - 600 = 400 left on the account
    expect(limiter.admit('k3', limits(null, 600), 1, acme).ok).toBe(false);
    limiter.reconcileTokens('k', limits(null, 600), 600, 100, acme); // 500 over-estimated, back to both
    expect(limiter.admit('k3', limits(null, 600), 500, acme).ok).toBe(true);
  });

  it('retry-after waits for the slowest scope', () => {
    const limiter = new RateLimiter({ now: fakeClock().now });
    const acme = account('acme', 6, null); // one request per 10 s
    for (let i = 0; i < 6; i++) limiter.admit(`k${i}`, limits(60, null), 0, acme);
    const refused = limiter.admit('k0', limits(60, null), 0, acme);
    if (refused.ok) throw new Error('expected a refusal');
    expect(refused.error.headers['retry-after-ms']).toBe('10000');
  });
});

describe('limits shared across instances: each enforces its share', () => {
  it('shareOf divides the limit by the live instances (never by less than one)', () => {
    expect(shareOf(60, 1)).toBe(60);
    expect(shareOf(60, 3)).toBe(20);
    expect(shareOf(10, 4)).toBe(2.5);
    expect(shareOf(60, 0)).toBe(60);
    expect(shareOf(60, Number.NaN)).toBe(60);
    expect(() => shareOf(0, 2)).toThrow(RangeError);
  });

  it('three instances together admit the whole limit, not three times it', () => {
    const clock = fakeClock();
    const instances = [0, 1, 2].map(() => new RateLimiter({ now: clock.now, instances: () => 3 }));
    let admitted = 0;
    for (let i = 0; i < 300; i++) if (instances[i % 3]!.admit('k', limits(60, null), 0, { id: 'acme', limits: limits(90, null) }).ok) admitted++;
    expect(admitted).toBe(60);
    // and they refill at the whole rate together: 30 s later, 30 more
    clock.advance(30_000);
    admitted = 0;
    for (let i = 0; i < 300; i++) if (instances[i % 3]!.admit('k', limits(60, null), 0, { id: 'acme', limits: limits(90, null) }).ok) admitted++;
    expect(admitted).toBe(30);
  });

  it('rebalances when an instance joins (share cut at once) or leaves (share grows and refills faster)', () => {
    const clock = fakeClock();
    let live = 2;
    const limiter = new RateLimiter({ now: clock.now, instances: () => live });
    expect(limiter.admit('k', limits(60, null), 0).headers['x-ratelimit-remaining-requests']).toBe('58'); // share 30, 29 left, seen as 58 of 60
    live = 3; // share 20: the level of 29 is cut to 20
    let admitted = 0;
    while (limiter.admit('k', limits(60, null), 0).ok) admitted++;
    expect(admitted).toBe(20);
    live = 1; // share 60, refilling 60 per minute from when this instance learns it
    expect(limiter.admit('k', limits(60, null), 0).ok).toBe(false);
    clock.advance(10_000);
    admitted = 0;
    while (limiter.admit('k', limits(60, null), 0).ok) admitted++;
    expect(admitted).toBe(10);
  });

  it('a request larger than the share but within the whole limit passes into a full bucket, which goes into debt', () => {
    const clock = fakeClock();
    const limiter = new RateLimiter({ now: clock.now, instances: () => 4 });
    // TPM 1000 over 4 instances: a share of 250; a 400-token request passes when the bucket is full
    expect(limiter.admit('k', limits(null, 1000), 400).ok).toBe(true);
    const refused = limiter.admit('k', limits(null, 1000), 400);
    if (refused.ok) throw new Error('expected a refusal');
    // debt of 150 plus a full share again: 400 tokens at 250 per minute
    expect(refused.error.headers['retry-after-ms']).toBe('96000');
    clock.advance(96_000);
    expect(limiter.admit('k', limits(null, 1000), 400).ok).toBe(true);
    // larger than the whole limit: never, and the client is told not to retry
    const tooLarge = limiter.admit('k2', limits(null, 1000), 1001);
    if (tooLarge.ok) throw new Error('expected a refusal');
    expect(tooLarge.error.headers['x-should-retry']).toBe('false');
  });

  it('clusterAdmissionBound states the tolerance: the burst, the refill, and one oversize request per instance', () => {
    expect(clusterAdmissionBound(60, 0, 3)).toBe(60);
    expect(clusterAdmissionBound(60, 30_000, 3)).toBe(90);
    expect(clusterAdmissionBound(2, 0, 3)).toBe(2 + 3); // a share of 2/3 request: each instance may take one into debt
    expect(clusterAdmissionBound(1000, 0, 4, 400)).toBe(1000 + 1600);
  });
});
