import { formatUsd, type MicroUsd } from '../../../domain/money';
import type { ReservationBasis } from '../../../src/inference/serve-request';

export type { ReservationBasis };

/**
 * Errors as OpenAI's API sends them: `{"error": {"message", "type", "param", "code"}}` with the
 * status the official SDKs map to their error classes (400 BadRequestError, 401
 * AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx InternalServerError).
 *
 * No message here ever contains a prompt, a completion, a secret or a full API key: the
 * constructors take only metadata, and callers never pass request values into `message`.
 */

export type ApiErrorType = 'invalid_request_error' | 'insufficient_quota' | 'requests' | 'tokens' | 'server_error';

export interface ApiErrorBody {
  readonly error: {
    readonly message: string;
    readonly type: ApiErrorType;
    readonly param: string | null;
    readonly code: string | null;
  };
}

export class ApiError extends Error {
  override readonly name = 'ApiError';

  constructor(
    readonly status: number,
    readonly type: ApiErrorType,
    readonly code: string | null,
    readonly param: string | null,
    message: string,
    /** Extra response headers, e.g. Retry-After, x-should-retry, x-ratelimit-*. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }

  toBody(): ApiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

export function isApiError(value: unknown): value is ApiError {
  return value instanceof ApiError;
}

/** Why a body was refused; the names OpenAI uses where it uses any. */
export type InvalidRequestCode = 'missing_required_parameter' | 'invalid_type' | 'invalid_value' | 'unsupported_value' | 'invalid_json' | 'request_too_large';

/** 400: malformed body or parameter. `message` must name the problem, never quote the value. */
export function invalidRequest(message: string, param: string | null = null, code: InvalidRequestCode | null = null): ApiError {
  return new ApiError(400, 'invalid_request_error', code, param, message);
}

/** 401: no key, or a key that does not verify (unknown, revoked, malformed). */
export function invalidApiKey(reason: 'missing' | 'invalid'): ApiError {
  const message =
    reason === 'missing'
      ? "You didn't provide an API key. Provide it in the Authorization header as 'Bearer YOUR_KEY'."
      : // Never quote the key, not even masked: a prefix of a mistyped key is still most of a secret.
        'Incorrect API key provided. Check the key, or ask your administrator for a new one.';
  return new ApiError(401, 'invalid_request_error', 'invalid_api_key', null, message);
}

/** 401: a real key whose expiry time has passed (its time is the key's own setting, no secret). */
export function apiKeyExpired(expiresAt: string): ApiError {
  return new ApiError(401, 'invalid_request_error', 'api_key_expired', null, `This API key expired at ${expiresAt}. Use another key, or create a new one.`);
}

/** 403: the key's model allowlist does not name the model (the key works for the others). */
export function modelNotAllowed(model: string): ApiError {
  // The model id is a price book id the client sent and the gateway knows: not content.
  return new ApiError(
    403,
    'invalid_request_error',
    'model_not_allowed',
    'model',
    `This API key may not use the model '${model}': it is not in the key's model allowlist.`,
    { 'x-should-retry': 'false' },
  );
}

/**
 * 429: the reservation would take the key past its spend limit. As for insufficient credit,
 * `x-should-retry: false` stops the SDKs' retries: only the next window, a higher limit, or a
 * cheaper request helps. The code tells it apart from the account's credit running out.
 */
export function keySpendLimitReached(details: {
  readonly period: 'day' | 'month' | 'total';
  readonly limit: MicroUsd;
  readonly spent: MicroUsd;
  readonly held: MicroUsd;
  readonly needed: MicroUsd;
  readonly resetsAt: string | null;
}): ApiError {
  const window = details.period === 'day' ? 'daily' : details.period === 'month' ? 'monthly' : 'total';
  const held = details.held > 0n ? ` and USD ${formatUsd(details.held)} is held by its requests in flight` : '';
  const resets = details.resetsAt === null ? ' The limit does not reset: raise it to continue.' : ` The limit resets at ${details.resetsAt}.`;
  const message =
    `This API key reached its ${window} spend limit of USD ${formatUsd(details.limit)}: it has spent USD ${formatUsd(details.spent)}${held}, ` +
    `and this request needs up to USD ${formatUsd(details.needed)}.${resets}`;
  return new ApiError(429, 'insufficient_quota', 'key_spend_limit_reached', null, message, { 'x-should-retry': 'false' });
}

/**
 * The reservation does not fit the available credit.
 *
 * Why 429 + `insufficient_quota` + `x-should-retry: false` rather than 402: it is what OpenAI
 * itself answers, so every client that handles OpenAI's "out of credit" already recognises it
 * (openai-node surfaces it as RateLimitError with code 'insufficient_quota'); a 402 would come
 * out as a bare APIError that no client code checks for. The SDKs retry a 429 by default, but
 * openai-node's `shouldRetry` (node_modules/openai/client.js) obeys `x-should-retry: false`
 * before looking at the status, and so do the Python and other Stainless SDKs, so the
 * header stops futile retries. No Retry-After: waiting does not add credit.
 */
export function insufficientQuota(amounts: { readonly available: MicroUsd; readonly needed: MicroUsd; readonly basis?: ReservationBasis }): ApiError {
  const why = amounts.basis ? ` (${reservationReason(amounts.needed, amounts.basis)})` : '';
  const message =
    `Insufficient credit: this request needs up to USD ${formatUsd(amounts.needed)}${why} ` +
    `but the available balance is USD ${formatUsd(amounts.available)}. Top up your account to continue.`;
  return new ApiError(429, 'insufficient_quota', 'insufficient_quota', null, message, { 'x-should-retry': 'false' });
}

/** Why a reservation is what it is, in words a customer can check against the price list. */
export function reservationReason(needed: MicroUsd, basis: ReservationBasis): string {
  const output =
    basis.maxOutputTokens === 0
      ? ''
      : ` + up to ${basis.maxOutputTokens} output tokens (${basis.outputLimit === 'max_tokens' ? 'max_tokens' : "the model's limit; set max_tokens to reserve less"})`;
  const maximum = `${basis.promptTokens} prompt tokens${output} at the price in force, plus ${percent(basis.marginBasisPoints)} margin`;
  return needed >= basis.maximumCost
    ? `the most it can cost: ${maximum}`
    : `the historical average cost of this model, plus ${percent(basis.marginBasisPoints)} margin; at most USD ${formatUsd(basis.maximumCost)}: ${maximum}`;
}

function percent(basisPoints: bigint): string {
  const whole = basisPoints / 100n;
  const hundredths = basisPoints % 100n;
  return hundredths === 0n ? `${whole}%` : `${whole}.${hundredths.toString().padStart(2, '0').replace(/0$/, '')}%`;
}

// Model ids are metadata, not content, and OpenAI quotes them; anything not shaped like an id
// is left out of the message rather than echoed.
const modelIdPattern = /^[A-Za-z0-9._:/@+-]{1,128}$/;

/** 404: the model is not in the price book (or retired). */
export function modelNotFound(model: string): ApiError {
  const named = modelIdPattern.test(model) ? `The model \`${model}\`` : 'The requested model';
  return new ApiError(404, 'invalid_request_error', 'model_not_found', 'model', `${named} does not exist or you do not have access to it.`);
}

/** 404: the model was retired; says so and when, so a client does not retry or look for a typo. */
export function modelRetired(model: string, retiredAt: string | undefined): ApiError {
  const named = modelIdPattern.test(model) ? `The model \`${model}\`` : 'The requested model';
  const when = retiredAt ? ` on ${retiredAt}` : '';
  return new ApiError(
    404,
    'invalid_request_error',
    'model_retired',
    'model',
    `${named} was retired${when} and is no longer served. See /pricing for the models on sale.`,
    { 'x-should-retry': 'false' },
  );
}

export type RateLimitKind = 'requests' | 'tokens';
/** Whose limit was reached: the key's own, or its account's (shared by all its keys). */
export type RateLimitScope = 'key' | 'account';

/**
 * 429 for a key's or its account's requests or tokens limit. `retryAfterMs` undefined means waiting cannot
 * help (one request larger than the whole per-minute budget), so the SDKs are told not to retry.
 */
export function rateLimited(
  kind: RateLimitKind,
  details: {
    readonly limit: number;
    readonly retryAfterMs: number | undefined;
    readonly headers?: Readonly<Record<string, string>>;
    readonly scope?: RateLimitScope;
  },
): ApiError {
  const whose = details.scope === 'account' ? "this key's account" : 'this key';
  const whosePossessive = details.scope === 'account' ? "this key's account's" : "this key's";
  const per = kind === 'requests' ? 'requests per minute (RPM)' : 'tokens per minute (TPM)';
  const base = details.headers ?? {};
  if (details.retryAfterMs === undefined) {
    return new ApiError(
      429,
      kind,
      'rate_limit_exceeded',
      null,
      `Request too large for ${whosePossessive} ${per}: Limit ${details.limit}. Reduce max_tokens or the input.`,
      { ...base, 'x-should-retry': 'false' },
    );
  }
  const wait = Math.max(0, Math.ceil(details.retryAfterMs));
  return new ApiError(
    429,
    kind,
    'rate_limit_exceeded',
    null,
    `Rate limit reached for ${whose} on ${per}: Limit ${details.limit}. Please try again in ${formatResetDuration(wait)}.`,
    {
      ...base,
      // Retry-After must be whole seconds; retry-after-ms (read by the OpenAI SDKs) is precise.
      'retry-after': String(Math.max(1, Math.ceil(wait / 1000))),
      'retry-after-ms': String(wait),
    },
  );
}

/** 429: every upstream serving the model is at its concurrency capacity; refuse rather than queue. */
export function upstreamAtCapacity(retryAfterSeconds = 1): ApiError {
  return new ApiError(429, 'requests', 'model_at_capacity', null, 'The model is at capacity. Please retry shortly.', {
    'retry-after': String(Math.max(1, Math.ceil(retryAfterSeconds))),
  });
}

/** 503: no upstream for the model answered. The SDKs retry it, which is right here. */
export function upstreamUnavailable(): ApiError {
  return new ApiError(503, 'server_error', 'upstream_unavailable', null, 'The model is temporarily unavailable. Please retry shortly.');
}

/** 500: anything unexpected. The detail goes to the log under the request id, never to the client. */
export function internal(requestId?: string): ApiError {
  const quote = requestId ? ` (request id ${requestId})` : '';
  return new ApiError(500, 'server_error', 'internal_error', null, `The server had an error while processing your request${quote}. Please retry.`);
}

/** 404 for a path no route serves, phrased like OpenAI's. */
export function unknownRoute(method: string, path: string): ApiError {
  // The path is the client's own input; cut it so a huge URL does not come back whole.
  const shown = path.length > 200 ? `${path.slice(0, 200)}...` : path;
  return new ApiError(404, 'invalid_request_error', 'unknown_url', null, `Invalid URL (${method} ${shown})`);
}

/**
 * Formats a wait like OpenAI's x-ratelimit-reset-* headers (Go durations): "0s", "120ms",
 * "1s", "8.64s", "6m0s", "1h2m3s". Milliseconds are rounded up so the client never retries early.
 */
export function formatResetDuration(ms: number): string {
  const total = Math.max(0, Math.ceil(ms));
  if (total === 0) return '0s';
  if (total < 1000) return `${total}ms`;
  const hours = Math.floor(total / 3_600_000);
  const minutes = Math.floor((total % 3_600_000) / 60_000);
  const millis = total % 60_000;
  const seconds = `${Math.floor(millis / 1000)}${fraction(millis % 1000)}s`;
  if (hours > 0) return `${hours}h${minutes}m${seconds}`;
  if (minutes > 0) return `${minutes}m${seconds}`;
  return seconds;
}

function fraction(ms: number): string {
  if (ms === 0) return '';
  return `.${String(ms).padStart(3, '0').replace(/0+$/, '')}`;
}

/** 503: the ledger's database cannot be reached; nothing was reserved or charged. The SDKs retry it. */
export function databaseUnavailable(retryAfterSeconds = 1): ApiError {
  return new ApiError(503, 'server_error', 'service_unavailable', null, 'The service is temporarily unavailable; nothing was charged. Please retry shortly.', {
    'retry-after': String(retryAfterSeconds),
  });
}
