import { RejectedError, type Result, ok } from '../decider/decision';

/**
 * Money is integer micro-USD in a bigint: 1 USD = 1_000_000n. Never a JS number, so no
 * amount is ever rounded by floating point.
 */
export type MicroUsd = bigint;

export const MICRO_PER_USD = 1_000_000n;
/** Prices are quoted per this many tokens. */
export const TOKENS_PER_PRICE_UNIT = 1_000_000n;

export type InvalidUsdAmount = { readonly error: 'invalid_usd_amount'; readonly input: string };

// Optional minus, digits, optional dot followed by 1..6 digits. No exponent, no spaces,
// no "+", no thousands separators, no bare "." : anything else is junk, not a guess.
const USD_PATTERN = /^(-?)(\d+)(?:\.(\d{1,6}))?$/;

/** Parses a decimal USD string ("10", "10.5", "-0.000001") into micro-USD. */
export function parseUsd(input: string): Result<MicroUsd, InvalidUsdAmount> {
  const m = USD_PATTERN.exec(input);
  if (!m) return { ok: false, error: { error: 'invalid_usd_amount', input } };
  const [, sign, whole, fraction = ''] = m;
  const magnitude = BigInt(whole!) * MICRO_PER_USD + BigInt(fraction.padEnd(6, '0'));
  return ok(sign === '-' ? -magnitude : magnitude);
}

/** `parseUsd` for literals in code and tests: throws RejectedError on junk. */
export function usd(input: string): MicroUsd {
  const r = parseUsd(input);
  if (!r.ok) throw new RejectedError(r.error);
  return r.value;
}

/**
 * Formats micro-USD as a plain decimal with exactly six fraction digits and a leading "-"
 * when negative: 10_500_000n -> "10.500000", -1n -> "-0.000001". No currency sign, no
 * grouping, so the output parses back with `parseUsd` to the same amount.
 */
export function formatUsd(amount: MicroUsd): string {
  const negative = amount < 0n;
  const magnitude = negative ? -amount : amount;
  const whole = magnitude / MICRO_PER_USD;
  const fraction = (magnitude % MICRO_PER_USD).toString().padStart(6, '0');
  return `${negative ? '-' : ''}${whole}.${fraction}`;
}

/** Division rounding towards +infinity, for non-negative numerators (every cost here). */
export function ceilDiv(numerator: bigint, denominator: bigint): bigint {
  if (denominator <= 0n) throw new RangeError('ceilDiv: denominator must be positive');
  if (numerator < 0n) throw new RangeError('ceilDiv: numerator must not be negative');
  return (numerator + denominator - 1n) / denominator;
}

export function minMicro(a: MicroUsd, b: MicroUsd): MicroUsd {
  return a < b ? a : b;
}

export function maxMicro(a: MicroUsd, b: MicroUsd): MicroUsd {
  return a > b ? a : b;
}

/**
 * The single rounding rule: cost of `tokens` at a per-million price, rounded up to the next
 * micro-USD. Use `requestCost` for a request: it rounds input and output together, once.
 */
export function costOf(tokens: bigint, pricePerMillionMicroUsd: MicroUsd): MicroUsd {
  if (tokens < 0n || pricePerMillionMicroUsd < 0n) throw new RangeError('costOf: tokens and price must not be negative');
  return ceilDiv(tokens * pricePerMillionMicroUsd, TOKENS_PER_PRICE_UNIT);
}

export interface TokenPrice {
  readonly inputPerMillion: MicroUsd;
  readonly outputPerMillion: MicroUsd;
  /** micro-USD per second of audio (transcription, translation); absent: 0 */
  readonly perAudioSecond?: MicroUsd | undefined;
  /** micro-USD per million input characters (speech); absent: 0 */
  readonly perMillionCharacters?: MicroUsd | undefined;
}

export interface TokenCounts {
  readonly inputTokens: bigint;
  readonly outputTokens: bigint;
  /** audio seconds, in milliseconds (transcription, translation); absent: 0 */
  readonly audioMilliseconds?: bigint | undefined;
  /** input characters (speech); absent: 0 */
  readonly inputCharacters?: bigint | undefined;
}

/** A millisecond of audio at a per-second price is 1/1000 of it: 1000 in units of 1e-6 micro-USD. */
const PER_SECOND_IN_MILLIONTHS_PER_MS = TOKENS_PER_PRICE_UNIT / 1_000n;

/**
 * A request's cost: input and output are summed as exact fractions of a micro-USD first
 * (in units of 1e-6 micro-USD), then rounded up ONCE. Rounding each part separately could
 * overcharge by up to one micro-USD per request; this never does.
 */
export function requestCost(tokens: TokenCounts, price: TokenPrice): MicroUsd {
  const audioMs = tokens.audioMilliseconds ?? 0n;
  const characters = tokens.inputCharacters ?? 0n;
  const perSecond = price.perAudioSecond ?? 0n;
  const perMillionCharacters = price.perMillionCharacters ?? 0n;
  if (tokens.inputTokens < 0n || tokens.outputTokens < 0n || audioMs < 0n || characters < 0n)
    throw new RangeError('requestCost: quantities must not be negative');
  if (price.inputPerMillion < 0n || price.outputPerMillion < 0n || perSecond < 0n || perMillionCharacters < 0n)
    throw new RangeError('requestCost: prices must not be negative');
  // Every term in millionths of a micro-USD, summed exactly, rounded up once.
  const exact =
    tokens.inputTokens * price.inputPerMillion +
    tokens.outputTokens * price.outputPerMillion +
    audioMs * perSecond * PER_SECOND_IN_MILLIONTHS_PER_MS +
    characters * perMillionCharacters;
  return ceilDiv(exact, TOKENS_PER_PRICE_UNIT);
}
