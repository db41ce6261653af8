import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { RequestHandler } from 'express';
import { sendApiError } from '../openai/error-handler';
import { ApiError, formatResetDuration } from '../openai/errors';
import { fullBucket, msUntil, refill, type TokenBucket } from './token-bucket';
import { shareOf } from './share';

/**
 * Repeated authentication failures from one client are rate-limited: each client address has
 * a bucket of failures (a minute's allowance, refilling continuously); every 401 takes one.
 * While the bucket is empty, a request from that address that carries a key this process has
 * not already verified is refused with 429 before the key is checked, so guessing keys, and
 * making the gateway run bcrypt for each guess, stops. Keys already verified here (a constant
 * time hash comparison) keep working, so a customer behind the same address as an attacker is
 * not locked out. Requests without a key cost nothing to refuse and are not blocked (they
 * still count as failures).
 *
 * Shared across gateway instances as the rate limits are (share.ts): each instance allows its
 * share of the failures, failuresPerMinute / live instances, so a client spread over the
 * instances by a load balancer gets the allowance once, not once per instance. Behind a load
 * balancer the connection comes from the balancer: for a connection from a trusted proxy
 * (TOLLGATE_TRUSTED_PROXIES) the client is the rightmost X-Forwarded-For address that is not
 * itself a trusted proxy.
 */

export interface AuthFailureLimiterOptions {
  /** Failures allowed per client per minute (also the burst). */
  readonly failuresPerMinute: number;
  readonly now?: () => number;
  /** Most client addresses remembered; the oldest is forgotten past it. */
  readonly maxClients?: number;
  /** How many gateway instances share the allowance (live leases, this one included); 1 when absent. */
  readonly instances?: () => number;
  /** Addresses of load balancers whose X-Forwarded-For names the client. */
  readonly trustedProxies?: readonly string[];
}

export class AuthFailureLimiter {
  private readonly clients = new Map<string, TokenBucket>();
  private readonly now: () => number;
  private readonly maxClients: number;
  private readonly instances: () => number;
  private readonly trusted: ReadonlySet<string>;

  constructor(private readonly options: AuthFailureLimiterOptions) {
    this.now = options.now ?? (() => performance.now());
    this.maxClients = options.maxClients ?? 100_000;
    this.instances = options.instances ?? (() => 1);
    this.trusted = new Set((options.trustedProxies ?? []).map(normalizeAddress));
  }

  /** The client a request comes from: the peer, or what a trusted proxy says it forwarded for. */
  clientOf(remoteAddress: string | undefined, forwardedFor: string | undefined): string {
    let client = normalizeAddress(remoteAddress ?? 'unknown');
    if (!this.trusted.has(client) || forwardedFor === undefined) return client;
    const hops = forwardedFor
      .split(',')
      .map((hop) => normalizeAddress(hop.trim()))
      .filter((hop) => hop !== '');
    while (this.trusted.has(client) && hops.length > 0) client = hops.pop()!;
    return client;
  }

  /** Milliseconds until the client may try an unverified key again; 0 when it may now. */
  blockedFor(client: string): number {
    const bucket = this.sync(client);
    if (!bucket || bucket.level >= 1) return 0;
    return msUntil(bucket, 1);
  }

  recordFailure(client: string): void {
    const bucket = this.sync(client) ?? fullBucket(this.share(), this.now());
    bucket.level = Math.max(0, bucket.level - 1);
    this.clients.delete(client); // re-insert: Map order is our recency order
    this.clients.set(client, bucket);
    if (this.clients.size > this.maxClients) this.clients.delete(this.clients.keys().next().value as string);
  }

  private share(): number {
    return shareOf(this.options.failuresPerMinute, this.instances());
  }

  private sync(client: string): TokenBucket | undefined {
    const bucket = this.clients.get(client);
    if (!bucket) return undefined;
    refill(bucket, this.now());
    // Resized to the current share (instances joined or left); a shrunk share cuts the level.
    bucket.capacity = this.share();
    bucket.level = Math.min(bucket.level, bucket.capacity);
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
    const refused = screenClient(limiter, keys, req.socket.remoteAddress, req.get('x-forwarded-for'), req.get('authorization'), res);
    if (refused) return sendApiError(res, refused);
    next();
  };
}

/**
 * The middleware's work on any node response (shared with the lean /v1 path): the refusal for
 * a blocked client carrying an unverified key, else undefined, with the response's 401 (if it
 * ends in one) counted against the client.
 */
export function screenClient(
  limiter: AuthFailureLimiter,
  keys: { isVerified(token: string): boolean },
  remoteAddress: string | undefined,
  forwardedFor: string | undefined,
  authorization: string | undefined,
  res: ServerResponse,
): ApiError | undefined {
  const client = limiter.clientOf(remoteAddress, forwardedFor);
  if (authorization !== undefined) {
    const waitMs = limiter.blockedFor(client);
    if (waitMs > 0) {
      const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
      if (token === undefined || !keys.isVerified(token)) return tooManyAuthFailures(waitMs);
    }
  }
  res.once('finish', () => {
    if (res.statusCode === 401) limiter.recordFailure(client);
  });
  return undefined;
}

/** "::ffff:127.0.0.1" (an IPv4 peer on a dual-stack socket) is 127.0.0.1. */
function normalizeAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}
