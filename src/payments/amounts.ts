import type { MicroUsd } from '../../domain/money';

/** Stripe amounts are integer cents of USD; the ledger's are micro-USD. 1 cent = 10,000 micro-USD. */
export const MICRO_USD_PER_CENT = 10_000n;

export function microUsdOfCents(cents: number): MicroUsd {
  if (!Number.isSafeInteger(cents)) throw new RangeError('cents must be a safe integer');
  return BigInt(cents) * MICRO_USD_PER_CENT;
}

/** Whole cents, or null when the amount has a fraction of a cent (a card cannot be charged that). */
export function centsOf(amount: MicroUsd): number | null {
  if (amount % MICRO_USD_PER_CENT !== 0n) return null;
  return Number(amount / MICRO_USD_PER_CENT);
}

/** Whole cents rounded up, so a card charge covers the whole amount. */
export function centsRoundedUp(amount: MicroUsd): number {
  return Number((amount + MICRO_USD_PER_CENT - 1n) / MICRO_USD_PER_CENT);
}

/** Rounded down to whole cents: what of an amount can go back to a card. */
export function wholeCentsOf(amount: MicroUsd): MicroUsd {
  return amount <= 0n ? 0n : amount - (amount % MICRO_USD_PER_CENT);
}
