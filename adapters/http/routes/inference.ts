import type { ServerResponse } from 'node:http';
import type { Request, Response, Router } from 'express';
import type { AccountError } from '../../../domain/account';
import type { MicroUsd } from '../../../domain/money';
import type { TokenOperation as Operation } from '../../../domain/price-book';
import type { ApiKeys, VerifiedKey } from '../../../src/api-keys';
import { serveInference, type Answer, type InferenceExchange, type Refusal, type ServeRequestDeps } from '../../../src/inference/serve-request';
import { responseSink } from '../../inference';
import type { RateLimiter, RateLimits } from '../admission/rate-limiter';
import { authenticate, keyOf } from '../auth';
import { writeCommonAnswer } from './answers';
import {
  ApiError,
  insufficientQuota,
  keySpendLimitReached,
  modelNotAllowed,
  type ReservationBasis,
  invalidRequest,
  modelNotFound,
  modelRetired,
  upstreamAtCapacity,
  upstreamUnavailable,
} from '../openai/errors';
import {
  completionPromptCount,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  requestedMaxOutputTokens,
  type ParsedRequest,
} from '../openai/requests';
import { annotateRequest, holdRequestLog } from '../observability/request-log';
import { requestIdOf } from '../observability/request-id';
import { writeJson } from '../json-response';

export interface InferenceRouteDeps extends ServeRequestDeps {
  readonly keys: ApiKeys;
  readonly limiter: RateLimiter;
  /** each key's own limits */
  readonly limits: RateLimits;
  /** each account's limits, shared by all its keys */
  readonly accountLimits: RateLimits;
}

type AnyRequestBody = Record<string, unknown> & { model: string; stream?: boolean | null | undefined };

/** Each route's operation, for the lean /v1 path. */
export const INFERENCE_ROUTES: Readonly<Record<string, Operation>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completion',
  '/v1/embeddings': 'embedding',
};

const parsers: Record<Operation, (body: unknown) => ParsedRequest<AnyRequestBody>> = {
  chat: parseChatCompletionRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
  completion: parseCompletionRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
  embedding: parseEmbeddingRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
};

/**
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings. Each request: authenticate,
 * validate (nothing is reserved for a malformed body), then the use case
 * (src/inference/serve-request.ts): price, rate-limit, take an upstream slot, reserve the
 * estimate (declined before any GPU work if it does not fit), dispatch, answer, then settle or
 * release by the charge policy. This route only parses, and words the answers.
 */
export function mountInferenceRoutes(router: Router, deps: InferenceRouteDeps): void {
  const auth = authenticate(deps.keys, 'inference');
  for (const [path, operation] of Object.entries(INFERENCE_ROUTES)) router.post(path, auth, (req, res) => serve(operation, req, res, deps));
}

function serve(operation: Operation, req: Request, res: Response, deps: InferenceRouteDeps): Promise<void> {
  return serveOperation(operation, req.body, keyOf(res), res, deps);
}

/**
 * One authenticated request with its parsed JSON body, on any node response: the express route
 * and the lean /v1 path (adapters/http/lean-v1.ts) both end here. Throws what the error handler
 * answers.
 */
export async function serveOperation(
  operation: Operation,
  requestBody: unknown,
  key: VerifiedKey,
  res: ServerResponse,
  deps: InferenceRouteDeps,
): Promise<void> {
  annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
  const parsed = parsers[operation](requestBody);
  if (!parsed.ok) throw parsed.error;
  const body = parsed.body;
  const refused = await serveInference(
    deps,
    {
      operation,
      key,
      body,
      requestedMaxOutputTokens: operation === 'embedding' ? undefined : requestedMaxOutputTokens(body as never),
      outputsPerRequest: operation === 'completion' ? completionPromptCount(body as never) : 1,
    },
    exchangeOver(res, deps, key.keyId, key.accountId),
  );
  if (refused) throw refusalError(refused);
}

/** The use case's view of this HTTP exchange. */
function exchangeOver(res: ServerResponse, deps: InferenceRouteDeps, keyId: string, accountId: string): InferenceExchange {
  const account = { id: accountId, limits: deps.accountLimits };
  return {
    requestId: requestIdOf(res),
    annotate: (facts) => annotateRequest(res, facts),
    admit(tokens) {
      const admission = deps.limiter.admit(keyId, deps.limits, tokens, account);
      for (const name in admission.headers) res.setHeader(name, admission.headers[name]!);
      if (!admission.ok) throw admission.error;
    },
    reconcile: (estimated, actual) => deps.limiter.reconcileTokens(keyId, deps.limits, estimated, actual, account),
    sink: () => responseSink(res),
    onClientGone(listener) {
      const onClose = () => {
        if (!res.writableFinished) listener();
      };
      res.on('close', onClose);
      return () => res.off('close', onClose);
    },
    holdLog: () => holdRequestLog(res),
    answer: (answer) => writeAnswer(res, answer),
  };
}

function writeAnswer(res: ServerResponse, answer: Answer): void {
  if (answer.kind !== 'body') writeCommonAnswer(res, answer);
  else if (!res.destroyed) writeJson(res, res.statusCode, answer.body);
}

function refusalError(refused: Refusal): ApiError {
  switch (refused.kind) {
    case 'model_not_found':
      return modelNotFound(refused.model);
    case 'model_not_allowed':
      return modelNotAllowed(refused.model);
    case 'model_retired':
      return modelRetired(refused.model, refused.retiredAt);
    case 'upstream_unavailable':
      return upstreamUnavailable();
    case 'max_tokens_too_large':
      return invalidRequest(`max_tokens is larger than this model's limit of ${refused.cap} output tokens.`, 'max_tokens', 'invalid_value');
    case 'at_capacity':
      return upstreamAtCapacity(refused.retryAfterSeconds);
    case 'reservation_refused':
      return refusal(refused.error, refused.needed, refused.basis);
  }
}

/** The answer to a reservation the account refused (shared with the audio routes). */
export function refusal(error: AccountError, needed: MicroUsd, basis: ReservationBasis | undefined): ApiError {
  switch (error.error) {
    case 'exceeds_available_balance':
      return insufficientQuota({ available: error.available, needed: error.needed, basis });
    case 'negative_balance':
      return insufficientQuota({ available: error.balance, needed, basis });
    case 'key_spend_limit_reached':
      return keySpendLimitReached(error);
    case 'account_suspended':
      return new ApiError(
        403,
        'invalid_request_error',
        'account_suspended',
        null,
        `This account is suspended (${error.reason.replaceAll('_', ' ')}). ${
          error.reason === 'negative_balance' || error.reason === 'auto_top_up_failed' ? 'Top up to settle the balance and continue.' : 'Contact support.'
        }`,
        { 'x-should-retry': 'false' },
      );
    case 'account_closed':
      return new ApiError(403, 'invalid_request_error', 'account_closed', null, 'This account is closed.', { 'x-should-retry': 'false' });
    default:
      return new ApiError(403, 'invalid_request_error', error.error, null, `The request was refused: ${error.error.replaceAll('_', ' ')}.`, {
        'x-should-retry': 'false',
      });
  }
}
