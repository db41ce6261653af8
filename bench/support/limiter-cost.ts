import { performance } from 'node:perf_hooks';
import { RateLimiter, type RateLimits } from '../../adapters/http/admission/rate-limiter';

/**
 * What the admission limiter costs per request, in this process (no I/O: the limits are shared
 * across instances without a database round trip; each instance learns the number of live
 * instances from its lease heartbeat, one COUNT in the renewal it already sends every third of the
 * lease time). Measured: admit() + reconcileTokens() per request, over 10,000 keys in 1,000
 * accounts, for no limits, per-key limits, per-key and per-account limits, and the same shared over
 * 3 instances (each enforcing a third). Limits are high enough that nothing is refused.
 */
export function limiterCost(iterations = 400_000): string[][] {
  const keyLimits: RateLimits = { requestsPerMinute: 1e9, tokensPerMinute: 1e12 };
  const none: RateLimits = { requestsPerMinute: null, tokensPerMinute: null };
  const cases: [string, RateLimits, boolean, number][] = [
    ['no limits', none, false, 1],
    ['per key (RPM + TPM)', keyLimits, false, 1],
    ['per key + per account', keyLimits, true, 1],
    ['per key + per account, shared by 3 instances', keyLimits, true, 3],
  ];
  const rows = [['admission limiter, per request (admit + reconcile)', 'ns', 'vs no limits']];
  const runs = cases.map(([, limits, withAccount, instances]) => {
    const limiter = new RateLimiter({ instances: () => instances });
    return (n: number) => {
      const started = performance.now();
      for (let i = 0; i < n; i++) {
        const key = `key-${i % 10_000}`;
        const account = withAccount ? { id: `acct-${i % 1_000}`, limits } : undefined;
        const admission = limiter.admit(key, limits, 300, account);
        if (!admission.ok) throw new Error('the bench limits must not refuse');
        limiter.reconcileTokens(key, limits, 300, 120, account);
      }
      return ((performance.now() - started) * 1e6) / n;
    };
  });
  for (const run of runs) run(iterations / 4); // warm-up
  // Rounds interleaved, best of five each: drift in a shared machine's load hits every case alike.
  const best = runs.map(() => Number.POSITIVE_INFINITY);
  for (let round = 0; round < 5; round++) {
    for (const [i, run] of runs.entries()) best[i] = Math.min(best[i]!, run(iterations / 5));
  }
  for (const [i, [label]] of cases.entries()) rows.push([label, best[i]!.toFixed(0), `${(best[i]! / best[0]!).toFixed(2)}x`]);
  return rows;
}

if (require.main === module) {
  for (const row of limiterCost()) console.log(row.join('\t'));
}
