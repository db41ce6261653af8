import { performance } from 'node:perf_hooks';
import type { RequestHandler } from 'express';
import { sendApiError } from '../openai/error-handler';
import { ApiError, formatResetDuration } from '../openai/errors';
import { fullBucket, msUntil, refill, type TokenBucket } from './token-bucket';

/**
 * Repeated authentication failures from one client are rate-limited: each client address has
 * a bucket of failures (a minute's allowance, refilling continuously); every 401 takes one.
 * While the bucket is empty, a request from that address that carries a key this process has
 * not already verified is refused with 429 before the key is checked, so guessing keys, and
 * making the gateway run bcrypt for each guess, stops. Keys already verified here (a constant
 * time hash comparison) keep working, so a customer behind the same address as an attacker is
 * not locked out. Requests without a key cost nothing to refuse and are not blocked (they
 * still count as failures). Per process, in memory, like the per-key rate limits.
 */

export interface AuthFailureLimiterOptions {
  /** Failures allowed per client per minute (also the burst). */
  readonly failuresPerMinute: number;
  readonly now?: () => number;
  /** Most client addresses remembered; the oldest is forgotten past it. */
  readonly maxClients?: number;
}

export class AuthFailureLimiter {
  private readonly clients = new Map<string, TokenBucket>();
  private readonly now: () => number;
  private readonly maxClients: number;

  constructor(private readonly options: AuthFailureLimiterOptions) {
    this.now = options.now ?? (() => performance.now());
    this.maxClients = options.maxClients ?? 100_000;
  }

  /** Milliseconds until the client may try an unverified key again; 0 when it may now. */
  blockedFor(client: string): number {
    const bucket = this.sync(client);
    if (!bucket || bucket.level >= 1) return 0;
    return msUntil(bucket, 1);
  }

  recordFailure(client: string): void {
    const bucket = this.sync(client) ?? fullBucket(this.options.failuresPerMinute, this.now());
    bucket.level = Math.max(0, bucket.level - 1);
    this.clients.delete(client); // re-insert: Map order is our recency order
    this.clients.set(client, bucket);
    if (this.clients.size > this.maxClients) this.clients.delete(this.clients.keys().next().value as string);
  }

  private sync(client: string): TokenBucket | undefined {
    const bucket = this.clients.get(client);
    if (!bucket) return undefined;
    refill(bucket, this.now());
    if (bucket.level >= bucket.capacity) this.clients.delete(client);
    return bucket;
  }
}

/** 429 for a client over its authentication-failure allowance; waiting helps, so no x-should-retry. */
export function tooManyAuthFailures(retryAfterMs: number): ApiError {
  const wait = Math.max(1, Math.ceil(retryAfterMs));
  return new ApiError(
    429,
    'requests',
    'rate_limit_exceeded',
    null,
    `Too many requests with an invalid API key from this client. Please try again in ${formatResetDuration(wait)}.`,
    { 'retry-after': String(Math.max(1, Math.ceil(wait / 1_000))), 'retry-after-ms': String(wait) },
  );
}

/** Middleware, mounted before every route: refuses blocked clients, counts every 401. */
export function limitAuthFailures(limiter: AuthFailureLimiter, keys: { isVerified(token: string): boolean }): RequestHandler {
  return (req, res, next) => {
    const client = req.socket.remoteAddress ?? 'unknown';
    const header = req.get('authorization');
    if (header !== undefined) {
      const waitMs = limiter.blockedFor(client);
      if (waitMs > 0) {
        const token = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
        if (token === undefined || !keys.isVerified(token)) return sendApiError(res, tooManyAuthFailures(waitMs));
      }
    }
    res.once('finish', () => {
      if (res.statusCode === 401) limiter.recordFailure(client);
    });
    next();
  };
}
