import type { MicroUsd } from '../money/money';

/** Limits from the service terms; configurable per deployment, passed to the decider. */
export interface AccountPolicy {
  readonly minimumTopUp: MicroUsd;
  readonly maximumBalance: MicroUsd;
  /**
   * A reservation's hard deadline (its expiresAt) after placement: the gateway's maximum request
   * duration plus time to settle. Sooner, only a lapsed instance lease lets it be expired.
   */
  readonly reservationTtlMs: number;
}

export const DEFAULT_ACCOUNT_POLICY: AccountPolicy = Object.freeze({
  minimumTopUp: 10_000_000n, // USD 10
  maximumBalance: 10_000_000_000n, // USD 10,000
  reservationTtlMs: 10 * 60 * 1000,
});
