import { match } from 'ts-pattern';
import type { AccountEvent } from '../account/events';
import { ceilDiv, requestCost, type MicroUsd, type TokenPrice } from '../money/money';
import type { Operation } from '../price-book/operation';

export const BASIS_POINTS = 10_000n;

export interface EstimateInput {
  /** prompt tokens counted locally */
  readonly promptTokens: bigint;
  /** the request's max_tokens, or the model's cap when it sets none */
  readonly maxOutputTokens: bigint;
  readonly price: TokenPrice;
  /** average actual cost of this model and operation, when there is history */
  readonly historicalAverage?: MicroUsd;
  /** margin in basis points (1/100 of a percent): 1000 = +10% */
  readonly marginBasisPoints: bigint;
}

/**
 * The reservation amount: max(upstream estimate, historical average), then plus the margin.
 * The margin applies to the larger of the two (after the max, once), and the result rounds
 * up to the next micro-USD so the reservation never falls short by rounding.
 */
export function estimateReservation(input: EstimateInput): MicroUsd {
  if (input.marginBasisPoints < 0n) throw new RangeError('estimateReservation: margin must not be negative');
  const upstream = requestCost({ inputTokens: input.promptTokens, outputTokens: input.maxOutputTokens }, input.price);
  const history = input.historicalAverage ?? 0n;
  const base = upstream > history ? upstream : history;
  return ceilDiv(base * (BASIS_POINTS + input.marginBasisPoints), BASIS_POINTS);
}

/** Running count and sum of actual costs per (model, operation). */
export type HistoricalCosts = ReadonlyMap<string, { readonly count: bigint; readonly sum: MicroUsd }>;

export function initialHistoricalCosts(): HistoricalCosts {
  return new Map();
}

function historyKey(model: string, operation: Operation): string {
  // JSON keeps the key unambiguous whatever characters a model id contains.
  return JSON.stringify([model, operation]);
}

/** Folds settlements into the history; every other account event leaves it unchanged. */
export function evolveHistoricalCosts(state: HistoricalCosts, event: AccountEvent): HistoricalCosts {
  return match(event)
    .with({ type: 'ReservationSettled' }, ({ data }) => {
      const key = historyKey(data.model, data.operation);
      const prev = state.get(key) ?? { count: 0n, sum: 0n };
      return new Map(state).set(key, { count: prev.count + 1n, sum: prev.sum + data.actualCost });
    })
    .otherwise(() => state);
}

/** Exact average rounded up to the next micro-USD; undefined with no history. */
export function historicalAverage(state: HistoricalCosts, model: string, operation: Operation): MicroUsd | undefined {
  const entry = state.get(historyKey(model, operation));
  if (!entry || entry.count === 0n) return undefined;
  return ceilDiv(entry.sum, entry.count);
}
