import Stripe from 'stripe';

export type StripeClient = Stripe;

export interface StripeClientOptions {
  readonly secretKey: string;
  /** e.g. http://127.0.0.1:12111 for a local stand-in; absent means https://api.stripe.com */
  readonly apiBase?: string | undefined;
}

/**
 * The one way Tollgate makes a Stripe client. Retries are safe because every mutating call
 * carries an idempotency key.
 */
export function createStripeClient(options: StripeClientOptions): StripeClient {
  const base = options.apiBase === undefined ? undefined : new URL(options.apiBase);
  return new Stripe(options.secretKey, {
    maxNetworkRetries: 2,
    timeout: 20_000,
    ...(base
      ? {
          host: base.hostname,
          port: base.port || (base.protocol === 'https:' ? 443 : 80),
          protocol: base.protocol === 'https:' ? ('https' as const) : ('http' as const),
        }
      : {}),
  });
}

/** From the gateway's config; null when STRIPE_SECRET_KEY is not set (payments are then off). */
export function stripeClientFromConfig(config: {
  readonly STRIPE_SECRET_KEY?: string | undefined;
  readonly STRIPE_API_BASE?: string | undefined;
}): StripeClient | null {
  if (!config.STRIPE_SECRET_KEY) return null;
  return createStripeClient({ secretKey: config.STRIPE_SECRET_KEY, apiBase: config.STRIPE_API_BASE });
}
