import { performance } from 'node:perf_hooks';
import { fullBucket, levelAt, msUntil, refill, type TokenBucket } from './token-bucket';
import { type ApiError, type RateLimitKind, formatResetDuration, rateLimited } from '../openai/errors';

/**
 * Per-key request and token rate limits, in memory per process: a token bucket per key and
 * per kind, holding up to one minute's allowance and refilling continuously. A burst of a
 * whole minute's allowance is allowed, then requests flow at the per-minute rate.
 *
 * A plain function the route calls, not a middleware, because the token cost is known only
 * after the body is parsed and the prompt counted:
 *
 *   const admission = limiter.admit(key.id, key.limits, promptTokens + maxOutputTokens);
 *   res.set(admission.headers);
 *   if (!admission.ok) return sendApiError(res, admission.error);
 *   ... and when the upstream reports usage: limiter.reconcileTokens(key.id, key.limits, estimate, actual)
 *
 * Several gateway processes each enforce the full limit on their own share of the traffic; a
 * limit shared across processes would need the database and is not what this is.
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

export interface RateLimiterOptions {
  /** Monotonic milliseconds; inject a fake one in tests. */
  readonly now?: () => number;
  /** Forget keys whose buckets are full again every this many admissions, to bound memory. */
  readonly sweepEvery?: number;
}

// Refill arithmetic is floating point; a bucket this close to the cost counts as holding it,
// so a client that waits exactly the advertised time is admitted.
const EPSILON = 1e-9;

interface KeyBuckets {
  requests?: TokenBucket;
  tokens?: TokenBucket;
}

export class RateLimiter {
  private readonly now: () => number;
  private readonly sweepEvery: number;
  private readonly keys = new Map<string, KeyBuckets>();
  private admissionsSinceSweep = 0;

  constructor(options: RateLimiterOptions = {}) {
    this.now = options.now ?? (() => performance.now());
    this.sweepEvery = options.sweepEvery ?? 10_000;
  }

  /**
   * Admits one request costing `tokens` (its prompt plus the output it may produce) or
   * refuses it with a 429; a refusal consumes nothing. Both kinds must have room.
   */
  admit(key: string, limits: RateLimits, tokens: number): Admission {
    if (!Number.isFinite(tokens) || tokens < 0) throw new RangeError('admit: tokens must be a non-negative number');
    const now = this.now();
    this.maybeSweep(now);
    const buckets = this.bucketsFor(key);
    const requests = sync(buckets, 'requests', limits.requestsPerMinute, now);
    const tokenBucket = sync(buckets, 'tokens', limits.tokensPerMinute, now);

    const refusal = refuse(requests, 'requests', 1) ?? refuse(tokenBucket, 'tokens', tokens);
    if (refusal !== undefined) {
      const headers = headersFor(requests, tokenBucket);
      // Both kinds must have room, so a retry waits for the slower one.
      const waits = [waitFor(requests, 1), waitFor(tokenBucket, tokens)];
      const retryAfterMs = waits.includes(undefined) ? undefined : Math.max(...(waits as number[]));
      return { ok: false, headers, error: rateLimited(refusal.kind, { limit: refusal.limit, retryAfterMs, headers }) };
    }
    if (requests) requests.level = Math.max(0, requests.level - 1);
    if (tokenBucket) tokenBucket.level -= tokens;
    return { ok: true, headers: headersFor(requests, tokenBucket) };
  }

  /**
   * Corrects a key's token bucket once the real usage is known: gives back what the estimate
   * over-counted, or takes the shortfall (the bucket may go below zero, delaying the next request).
   */
  reconcileTokens(key: string, limits: RateLimits, estimated: number, actual: number): void {
    const buckets = this.keys.get(key);
    if (!buckets) return;
    const bucket = sync(buckets, 'tokens', limits.tokensPerMinute, this.now());
    if (!bucket) return;
    bucket.level = Math.min(bucket.capacity, bucket.level + estimated - actual);
  }

  /** How many keys are tracked; for tests of the sweep. */
  get trackedKeys(): number {
    return this.keys.size;
  }

  private bucketsFor(key: string): KeyBuckets {
    let buckets = this.keys.get(key);
    if (!buckets) {
      buckets = {};
      this.keys.set(key, buckets);
    }
    return buckets;
  }

  private maybeSweep(now: number): void {
    if (++this.admissionsSinceSweep < this.sweepEvery) return;
    this.admissionsSinceSweep = 0;
    for (const [key, buckets] of this.keys) {
      if (isFull(buckets.requests, now) && isFull(buckets.tokens, now)) this.keys.delete(key);
    }
  }
}

/** Brings a key's bucket of one kind up to date: applies a changed limit, refills for the time passed. */
function sync(buckets: KeyBuckets, kind: RateLimitKind, limit: number | null, now: number): TokenBucket | undefined {
  if (limit === null) {
    delete buckets[kind];
    return undefined;
  }
  if (!Number.isFinite(limit) || limit <= 0) throw new RangeError(`rate limit for ${kind} must be a positive number or null`);
  let bucket = buckets[kind];
  if (!bucket) {
    bucket = fullBucket(limit, now);
    buckets[kind] = bucket;
    return bucket;
  }
  bucket.capacity = limit;
  refill(bucket, now);
  return bucket;
}

function refuse(bucket: TokenBucket | undefined, kind: RateLimitKind, cost: number): { kind: RateLimitKind; limit: number } | undefined {
  if (!bucket || bucket.level + EPSILON >= cost) return undefined;
  return { kind, limit: bucket.capacity };
}

/** Milliseconds until the bucket holds `cost`; 0 if it does now; undefined if it never can. */
function waitFor(bucket: TokenBucket | undefined, cost: number): number | undefined {
  if (!bucket || bucket.level + EPSILON >= cost) return 0;
  if (cost > bucket.capacity) return undefined;
  return msUntil(bucket, cost);
}

function isFull(bucket: TokenBucket | undefined, now: number): boolean {
  if (!bucket) return true;
  return levelAt(bucket, now) >= bucket.capacity;
}

function headersFor(requests: TokenBucket | undefined, tokens: TokenBucket | undefined): RateLimitHeaders {
  return { ...headersOf('requests', requests), ...headersOf('tokens', tokens) };
}

function headersOf(kind: RateLimitKind, bucket: TokenBucket | undefined): Record<string, string> {
  if (!bucket) return {};
  // "reset" in OpenAI's sense: the time until the bucket is back to its full allowance.
  const untilFull = msUntil(bucket, bucket.capacity);
  return {
    [`x-ratelimit-limit-${kind}`]: String(bucket.capacity),
    [`x-ratelimit-remaining-${kind}`]: String(Math.max(0, Math.floor(bucket.level))),
    [`x-ratelimit-reset-${kind}`]: formatResetDuration(untilFull),
  };
}
