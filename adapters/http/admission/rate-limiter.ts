import { performance } from 'node:perf_hooks';
import { fullBucket, levelAt, msUntil, refill, type TokenBucket } from './token-bucket';
import { shareOf } from './share';
import { type ApiError, type RateLimitKind, type RateLimitScope, formatResetDuration, rateLimited } from '../openai/errors';

/**
 * Request and token rate limits per account and per key, in memory: a token bucket per scope
 * (the account, the key) and per kind, holding up to one minute's allowance and refilling
 * continuously. A burst of a whole minute's allowance is allowed, then requests flow at the
 * per-minute rate. A request is admitted only when every scope has room (the key's limit is within
 * the account's, and a fresh key does not bring a fresh allowance: the account's bucket is shared
 * by all its keys).
 *
 * Shared across gateway instances without a database round trip: each instance enforces its share
 * of every limit (limit / live instances, see share.ts), told by `instances` (the lease heartbeat's
 * count of live leases). The tolerance is stated in share.ts.
 *
 * A plain function the route calls, not a middleware, because the token cost is known only
 * after the body is parsed and the prompt counted:
 *
 *   const admission = limiter.admit(key.id, keyLimits, promptTokens + maxOutputTokens, { id: accountId, limits: accountLimits });
 *   res.set(admission.headers);
 *   if (!admission.ok) return sendApiError(res, admission.error);
 *   ... and when the upstream reports usage: limiter.reconcileTokens(key.id, keyLimits, estimate, actual, account)
 */

export interface RateLimits {
  /** null: no requests-per-minute limit for this key. */
  readonly requestsPerMinute: number | null;
  /** null: no tokens-per-minute limit for this key. */
  readonly tokensPerMinute: number | null;
}

/** OpenAI's x-ratelimit-* headers, for the kinds that are limited. */
export type RateLimitHeaders = Readonly<Record<string, string>>;

export type Admission =
  | { readonly ok: true; readonly headers: RateLimitHeaders }
  | { readonly ok: false; readonly error: ApiError; readonly headers: RateLimitHeaders };

/** A second scope the request is limited by as well: its account. */
export interface AccountScope {
  readonly id: string;
  readonly limits: RateLimits;
}

export interface RateLimiterOptions {
  /** Monotonic milliseconds; inject a fake one in tests. */
  readonly now?: () => number;
  /** How many gateway instances share the limits (live leases, this one included); 1 when absent. */
  readonly instances?: () => number;
  /** Forget keys whose buckets are full again every this many admissions, to bound memory. */
  readonly sweepEvery?: number;
}

// Refill arithmetic is floating point; a bucket this close to the cost counts as holding it,
// so a client that waits exactly the advertised time is admitted.
const EPSILON = 1e-9;

interface ScopeBuckets {
  requests?: TokenBucket;
  tokens?: TokenBucket;
}

/** One scope's buckets for this request, with the whole limits they are shares of. */
interface Checked {
  readonly scope: RateLimitScope;
  readonly limits: RateLimits;
  readonly requests: TokenBucket | undefined;
  readonly tokens: TokenBucket | undefined;
}

export class RateLimiter {
  private readonly now: () => number;
  private readonly instances: () => number;
  private readonly sweepEvery: number;
  private readonly scopes = new Map<string, ScopeBuckets>();
  private admissionsSinceSweep = 0;

  constructor(options: RateLimiterOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.instances = options.instances ?? (() => 1);
    this.sweepEvery = options.sweepEvery ?? 10_000;
  }

  /**
   * Admits one request costing `tokens` (its prompt plus the output it may produce) or
   * refuses it with a 429; a refusal consumes nothing. Every kind of every scope must have room.
   */
  admit(key: string, limits: RateLimits, tokens: number, account?: AccountScope): Admission {
    if (!Number.isFinite(tokens) || tokens < 0) throw new RangeError('admit: tokens must be a non-negative number');
    const now = this.now();
    this.maybeSweep(now);
    const instances = this.instances();
    const checked: Checked[] = [this.check('key', `k:${key}`, limits, instances, now)];
    if (account) checked.push(this.check('account', `a:${account.id}`, account.limits, instances, now));

    for (const scope of checked) {
      const refusal =
        refuse(scope.requests, 'requests', scope.limits.requestsPerMinute, 1) ?? refuse(scope.tokens, 'tokens', scope.limits.tokensPerMinute, tokens);
      if (refusal === undefined) continue;
      const headers = headersFor(checked, instances);
      // Every kind of every scope must have room, so a retry waits for the slowest.
      const waits = checked.flatMap((c) => [waitFor(c.requests, c.limits.requestsPerMinute, 1), waitFor(c.tokens, c.limits.tokensPerMinute, tokens)]);
      const retryAfterMs = waits.includes(undefined) ? undefined : Math.max(...(waits as number[]));
      return { ok: false, headers, error: rateLimited(refusal.kind, { limit: refusal.limit, retryAfterMs, headers, scope: scope.scope }) };
    }
    for (const scope of checked) {
      // A request larger than the share (never larger than the whole limit) is admitted into a full
      // bucket, which goes into debt: the level may fall below zero.
      if (scope.requests) scope.requests.level -= 1;
      if (scope.tokens) scope.tokens.level -= tokens;
    }
    return { ok: true, headers: headersFor(checked, instances) };
  }

  /**
   * Corrects the token buckets once the real usage is known: gives back what the estimate
   * over-counted, or takes the shortfall (a bucket may go below zero, delaying the next request).
   */
  reconcileTokens(key: string, limits: RateLimits, estimated: number, actual: number, account?: AccountScope): void {
    const now = this.now();
    const instances = this.instances();
    const scopes: [string, RateLimits][] = [[`k:${key}`, limits]];
    if (account) scopes.push([`a:${account.id}`, account.limits]);
    for (const [id, scopeLimits] of scopes) {
      const buckets = this.scopes.get(id);
      if (!buckets) continue;
      const bucket = sync(buckets, 'tokens', scopeLimits.tokensPerMinute, instances, now);
      if (bucket) bucket.level = Math.min(bucket.capacity, bucket.level + estimated - actual);
    }
  }

  /** How many scopes (keys and accounts) are tracked; for tests of the sweep. */
  get trackedKeys(): number {
    return this.scopes.size;
  }

  private check(scope: RateLimitScope, id: string, limits: RateLimits, instances: number, now: number): Checked {
    let buckets = this.scopes.get(id);
    if (!buckets) {
      buckets = {};
      this.scopes.set(id, buckets);
    }
    return {
      scope,
      limits,
      requests: sync(buckets, 'requests', limits.requestsPerMinute, instances, now),
      tokens: sync(buckets, 'tokens', limits.tokensPerMinute, instances, now),
    };
  }

  private maybeSweep(now: number): void {
    if (++this.admissionsSinceSweep < this.sweepEvery) return;
    this.admissionsSinceSweep = 0;
    for (const [id, buckets] of this.scopes) {
      if (isFull(buckets.requests, now) && isFull(buckets.tokens, now)) this.scopes.delete(id);
    }
  }
}

/**
 * Brings a scope's bucket of one kind up to date: applies a changed limit or number of instances
 * (its capacity is this instance's share), refills for the time passed.
 */
function sync(buckets: ScopeBuckets, kind: RateLimitKind, limit: number | null, instances: number, now: number): TokenBucket | undefined {
  if (limit === null) {
    delete buckets[kind];
    return undefined;
  }
  if (!Number.isFinite(limit) || limit <= 0) throw new RangeError(`rate limit for ${kind} must be a positive number or null`);
  const share = shareOf(limit, instances);
  let bucket = buckets[kind];
  if (!bucket) {
    bucket = fullBucket(share, now);
    buckets[kind] = bucket;
    return bucket;
  }
  // Refill at the rate in force since the last update, then resize (a shrunk share cuts the level).
  refill(bucket, now);
  bucket.capacity = share;
  bucket.level = Math.min(bucket.level, share);
  return bucket;
}

/** Whether the bucket can take `cost`: it holds it, or it is full and the cost is within the whole limit. */
function fits(bucket: TokenBucket, limit: number, cost: number): boolean {
  if (bucket.level + EPSILON >= cost) return true;
  return cost <= limit && cost > bucket.capacity && bucket.level + EPSILON >= bucket.capacity;
}

function refuse(bucket: TokenBucket | undefined, kind: RateLimitKind, limit: number | null, cost: number): { kind: RateLimitKind; limit: number } | undefined {
  if (!bucket || limit === null || fits(bucket, limit, cost)) return undefined;
  return { kind, limit };
}

/** Milliseconds until the bucket can take `cost`; 0 if it can now; undefined if it never can. */
function waitFor(bucket: TokenBucket | undefined, limit: number | null, cost: number): number | undefined {
  if (!bucket || limit === null || fits(bucket, limit, cost)) return 0;
  if (cost > limit) return undefined;
  return msUntil(bucket, Math.min(cost, bucket.capacity));
}

function isFull(bucket: TokenBucket | undefined, now: number): boolean {
  if (!bucket) return true;
  return levelAt(bucket, now) >= bucket.capacity;
}

/**
 * OpenAI's x-ratelimit-* headers for each limited kind, from the scope with the least room: the
 * whole limit, and what remains of it as this instance sees it (its share's level times the
 * instances, an estimate when traffic is uneven).
 */
function headersFor(checked: readonly Checked[], instances: number): RateLimitHeaders {
  const headers: Record<string, string> = {};
  for (const kind of ['requests', 'tokens'] as const) {
    let tightest: { bucket: TokenBucket; limit: number } | undefined;
    for (const scope of checked) {
      const bucket = scope[kind];
      const limit = kind === 'requests' ? scope.limits.requestsPerMinute : scope.limits.tokensPerMinute;
      if (!bucket || limit === null) continue;
      if (!tightest || bucket.level / bucket.capacity < tightest.bucket.level / tightest.bucket.capacity) tightest = { bucket, limit };
    }
    if (!tightest) continue;
    const { bucket, limit } = tightest;
    // "reset" in OpenAI's sense: the time until the bucket is back to its full allowance.
    headers[`x-ratelimit-limit-${kind}`] = String(limit);
    headers[`x-ratelimit-remaining-${kind}`] = String(Math.max(0, Math.floor(bucket.level * Math.max(1, Math.floor(instances)) + EPSILON)));
    headers[`x-ratelimit-reset-${kind}`] = formatResetDuration(msUntil(bucket, bucket.capacity));
  }
  return headers;
}
