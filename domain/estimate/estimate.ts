import { ceilDiv, requestCost, type MicroUsd, type TokenPrice } from '../money/money';

export const BASIS_POINTS = 10_000n;

export interface EstimateInput {
  /** prompt tokens counted locally */
  readonly promptTokens: bigint;
  /** the request's max_tokens, or the model's cap when it sets none; 0 for embeddings */
  readonly maxOutputTokens: bigint;
  /** transcription, translation: the audio's duration read from its header, in milliseconds */
  readonly audioMilliseconds?: bigint;
  /** speech: the input's characters */
  readonly inputCharacters?: bigint;
  readonly price: TokenPrice;
  /**
   * average actual cost of this model and operation, when there is history; shared by every
   * instance (the caller reads it from the usage projection), any value
   */
  readonly historicalAverage?: MicroUsd | undefined;
  /** margin in basis points (1/100 of a percent): 1000 = +10% */
  readonly marginBasisPoints: bigint;
}

export interface ReservationEstimate {
  /** what to reserve: never above `maximumCost` */
  readonly amount: MicroUsd;
  /**
   * the most the request can cost: the prompt plus its maximum output at the price, plus the
   * margin, rounded up. Output beyond max_tokens is never billed, so only the local prompt
   * count's error can take a settlement past it.
   */
  readonly maximumCost: MicroUsd;
}

function withMargin(amount: MicroUsd, marginBasisPoints: bigint): MicroUsd {
  return ceilDiv(amount * (BASIS_POINTS + marginBasisPoints), BASIS_POINTS);
}

/**
 * The reservation: the higher of (a) the upstream estimate (prompt tokens plus the maximum
 * output at the price) and (b) the historical average, plus the margin, CAPPED at the request's
 * maximum possible cost (a plus the margin). The margin applies once, after the max; the result
 * rounds up to the next micro-USD so it never falls short by rounding.
 *
 * The cap is what keeps one account's large requests (a high average) from refusing another
 * account's small one. Since (a) is itself the maximum output, the cap binds whenever (b) is
 * higher: the average can no longer raise a reservation, only an estimate (a) below the maximum
 * would let it.
 */
export function estimateReservation(input: EstimateInput): ReservationEstimate {
  if (input.marginBasisPoints < 0n) throw new RangeError('estimateReservation: margin must not be negative');
  if (input.historicalAverage !== undefined && input.historicalAverage < 0n)
    throw new RangeError('estimateReservation: a historical average must not be negative');
  const upstream = requestCost(
    {
      inputTokens: input.promptTokens,
      outputTokens: input.maxOutputTokens,
      audioMilliseconds: input.audioMilliseconds,
      inputCharacters: input.inputCharacters,
    },
    input.price,
  );
  const maximumCost = withMargin(upstream, input.marginBasisPoints);
  const history = input.historicalAverage ?? 0n;
  const estimate = withMargin(upstream > history ? upstream : history, input.marginBasisPoints);
  return { amount: estimate < maximumCost ? estimate : maximumCost, maximumCost };
}

/** Exact average of `requests` costs summing to `cost`, rounded up; undefined with no requests. */
export function averageCost(cost: MicroUsd, requests: bigint): MicroUsd | undefined {
  if (requests <= 0n) return undefined;
  return ceilDiv(cost, requests);
}
