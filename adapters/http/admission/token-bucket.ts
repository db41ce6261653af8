/**
 * The token bucket both admission limiters use (rate-limiter.ts per key, auth-failures.ts per
 * client address): it holds up to `capacity` and refills continuously at `capacity` per minute,
 * so a whole minute's allowance may come in one burst, then at the per-minute rate.
 */

export const MINUTE_MS = 60_000;

export interface TokenBucket {
  /** the most it holds, and what it refills per minute */
  capacity: number;
  level: number;
  /** monotonic milliseconds of the last refill */
  updatedAt: number;
}

/** A full bucket. */
export function fullBucket(capacity: number, now: number): TokenBucket {
  return { capacity, level: capacity, updatedAt: now };
}

/** What the bucket holds at `now`, without changing it. */
export function levelAt(bucket: TokenBucket, now: number): number {
  return bucket.level + ((now - bucket.updatedAt) * bucket.capacity) / MINUTE_MS;
}

/** Brings the bucket up to `now`: adds what refilled since, up to its capacity. */
export function refill(bucket: TokenBucket, now: number): void {
  bucket.level = Math.min(bucket.capacity, levelAt(bucket, now));
  bucket.updatedAt = now;
}

/** Milliseconds of refill until the bucket holds `amount` (negative when it already does). */
export function msUntil(bucket: TokenBucket, amount: number): number {
  return ((amount - bucket.level) * MINUTE_MS) / bucket.capacity;
}
