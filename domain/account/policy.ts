import type { MicroUsd } from '../money/money';

/** Limits from the service terms; configurable per deployment, passed to the decider. */
export interface AccountPolicy {
  readonly minimumTopUp: MicroUsd;
  readonly maximumBalance: MicroUsd;
  /** a reservation not ended within this time is expired by the reservation-expiry process */
  readonly reservationTtlMs: number;
}

export const DEFAULT_ACCOUNT_POLICY: AccountPolicy = Object.freeze({
  minimumTopUp: 10_000_000n, // USD 10
  maximumBalance: 10_000_000_000n, // USD 10,000
  reservationTtlMs: 10 * 60 * 1000,
});
