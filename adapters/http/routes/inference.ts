import { randomUUID } from 'node:crypto';
import type { Request, Response, Router } from 'express';
import type { Logger } from 'pino';
import { accountStreamId, type AccountError, type RequestMetadata } from '../../../domain/account';
import { chargeFor, type RequestOutcome } from '../../../domain/charge-policy';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { estimateReservation } from '../../../domain/estimate';
import type { MicroUsd } from '../../../domain/money';
import { PRICE_BOOK_STREAM_ID, priceInForce, type Operation } from '../../../domain/price-book';
import type { ApiKeys, VerifiedKey } from '../../../src/api-keys';
import type { Ledger } from '../../../src/ledger';
import type { HistoricalCosts } from '../../../src/historical-costs';
import type { SettlementTracker } from '../../../src/settlements';
import { countPromptTokens, responseSink, type InferenceAdapter, type InferenceOutcome } from '../../inference';
import type { RateLimiter, RateLimits } from '../admission/rate-limiter';
import { authenticate, keyOf } from '../auth';
import { ApiError, insufficientQuota, internal, type ReservationBasis, invalidRequest, modelNotFound, upstreamAtCapacity, upstreamUnavailable } from '../openai/errors';
import {
  completionPromptCount,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  requestedMaxOutputTokens,
  type ParsedRequest,
} from '../openai/requests';
import type { GatewayMetrics } from '../observability/metrics';
import { annotateRequest, holdRequestLog } from '../observability/request-log';
import { requestIdOf } from '../observability/request-id';

export interface InferenceRouteDeps {
  readonly ledger: Ledger;
  readonly keys: ApiKeys;
  readonly inference: InferenceAdapter;
  /** the historical average per model and operation, shared by all instances */
  readonly historicalCosts: Pick<HistoricalCosts, 'historicalAverage'>;
  readonly limiter: RateLimiter;
  readonly limits: RateLimits;
  readonly metrics: GatewayMetrics;
  readonly settlements: SettlementTracker;
  readonly logger: Logger;
  /** added to every estimate, in basis points (1000 = +10%) */
  readonly marginBasisPoints: bigint;
  /** this gateway instance (src/instances/lease.ts): recorded on each reservation it places */
  readonly instanceId?: string;
  /**
   * The gateway ends a request at this age and settles what was produced, before its
   * reservation's deadline lets the expiry process return the hold. Unset: no limit here.
   */
  readonly maxRequestDurationMs?: number;
}

type AnyRequestBody = Record<string, unknown> & { model: string; stream?: boolean | null | undefined };

const parsers: Record<Operation, (body: unknown) => ParsedRequest<AnyRequestBody>> = {
  chat: parseChatCompletionRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
  completion: parseCompletionRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
  embedding: parseEmbeddingRequest as (body: unknown) => ParsedRequest<AnyRequestBody>,
};

/**
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings. Each request: authenticate,
 * validate (nothing is reserved for a malformed body), price, rate-limit, take an upstream
 * slot, reserve the estimate (declined before any GPU work if it does not fit), dispatch,
 * answer, then settle or release by the charge policy.
 */
export function mountInferenceRoutes(router: Router, deps: InferenceRouteDeps): void {
  const auth = authenticate(deps.keys, 'inference');
  router.post('/v1/chat/completions', auth, (req, res) => serve('chat', req, res, deps));
  router.post('/v1/completions', auth, (req, res) => serve('completion', req, res, deps));
  router.post('/v1/embeddings', auth, (req, res) => serve('embedding', req, res, deps));
}

async function serve(operation: Operation, req: Request, res: Response, deps: InferenceRouteDeps): Promise<void> {
  const key = keyOf(res);
  annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
  const parsed = parsers[operation](req.body);
  if (!parsed.ok) throw parsed.error;
  const body = parsed.body;
  const now = new Date().toISOString();

  const { state: book } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
  const price = priceInForce(book, body.model, operation, now);
  if (!price.ok) throw modelNotFound(body.model);
  const spec = deps.inference.model(body.model);
  if (!spec || !spec.operations.includes(operation)) throw upstreamUnavailable();
  annotateRequest(res, { model: body.model });

  const outputsPerRequest = operation === 'completion' ? completionPromptCount(body as never) : 1;
  const cap = Math.min(Number(book.models.get(body.model)!.maxOutputTokens), spec.maxOutputTokens);
  const requested = operation === 'embedding' ? 0 : requestedMaxOutputTokens(body as never);
  if (requested !== undefined && requested > cap) {
    throw invalidRequest(`max_tokens is larger than this model's limit of ${cap} output tokens.`, 'max_tokens', 'invalid_value');
  }
  const maxOutputTokens = operation === 'embedding' ? 0 : (requested ?? cap) * outputsPerRequest;
  const promptTokens = countPromptTokens(operation, body);

  const admission = deps.limiter.admit(key.keyId, deps.limits, promptTokens + maxOutputTokens);
  res.set(admission.headers);
  if (!admission.ok) throw admission.error;

  const slot = deps.inference.tryAcquire(body.model);
  if (slot.kind === 'unknown_model') throw upstreamUnavailable();
  if (slot.kind === 'at_capacity') throw upstreamAtCapacity(slot.retryAfterSeconds);
  const lease = slot.lease;

  // Our own id: the client's x-request-id correlates, but may repeat; a reservation may not.
  const reservationId = `req_${randomUUID()}`;
  const metadata = commandMetadata(key, requestIdOf(res), reservationId);
  // Capped at the request's maximum possible cost, whatever the historical average.
  const { amount, maximumCost } = estimateReservation({
    promptTokens: BigInt(promptTokens),
    maxOutputTokens: BigInt(maxOutputTokens),
    price: price.value,
    historicalAverage: deps.historicalCosts.historicalAverage(body.model, operation),
    marginBasisPoints: deps.marginBasisPoints,
  });
  const basis: ReservationBasis = {
    promptTokens,
    maxOutputTokens,
    outputLimit: requested === undefined ? 'model_limit' : 'max_tokens',
    marginBasisPoints: deps.marginBasisPoints,
    maximumCost,
  };
  const stream = accountStreamId(key.accountId);
  let placed;
  try {
    placed = await deps.ledger.accounts.handle(stream, {
      type: 'PlaceReservation',
      data: {
        requestId: reservationId,
        keyId: key.keyId,
        model: body.model,
        operation,
        amount,
        priceVersion: price.value.version,
        ...(deps.instanceId === undefined ? {} : { instanceId: deps.instanceId }),
      },
      metadata,
    });
  } catch (error) {
    lease.release();
    // The append may have committed before the error reached us (a connection lost mid-commit).
    // This instance lives on, so nothing else would end that hold before its deadline: release it.
    // Not tracked for shutdown: a stopping instance ends its lease, and the hold is expired at once.
    void releaseAbandonedReservation(deps, stream, reservationId, metadata);
    throw error;
  }
  if (!placed.ok) {
    lease.release();
    throw refusal(placed.error, amount, basis);
  }
  deps.metrics.reservationsOpen.inc();
  const placedEvent = placed.events.find((e) => e.event.type === 'ReservationPlaced')?.event;
  const expiresAt = placedEvent?.type === 'ReservationPlaced' ? Date.parse(placedEvent.data.expiresAt) : Date.now();

  const finished = deps.settlements.begin(key.accountId);
  const releaseLog = holdRequestLog(res);
  const abort = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) abort.abort();
  };
  res.on('close', onClose);
  // The maximum request duration: end the upstream request ourselves, well before the deadline.
  let overran = false;
  const maxDuration =
    deps.maxRequestDurationMs === undefined
      ? undefined
      : setTimeout(() => {
          overran = true;
          abort.abort();
        }, deps.maxRequestDurationMs);
  const wantsStream = operation !== 'embedding' && body.stream === true;
  let outcome: RequestOutcome;
  let observed: InferenceOutcome | undefined;
  try {
    const result = await deps.inference.dispatch(
      lease,
      { operation, body, promptTokens },
      { signal: abort.signal, requestId: requestIdOf(res), ...(wantsStream ? { sink: responseSink(res) } : {}) },
    );
    observed = result.outcome;
    outcome = toRequestOutcome(billedAtMost(result.outcome, maxOutputTokens, deps.logger, requestIdOf(res)), abort.signal.aborted);
    if (overran) {
      outcome = overranOutcome(outcome);
      deps.logger.warn({ requestId: requestIdOf(res), maxRequestDurationMs: deps.maxRequestDurationMs }, 'request ended at the maximum request duration; charged for what was produced');
    }
    if (!res.destroyed) {
      if (result.streamStarted) res.end();
      else if (overran && !result.clientError && result.body === undefined) {
        const seconds = Math.round((deps.maxRequestDurationMs ?? 0) / 1_000);
        const error = new ApiError(504, 'server_error', 'request_timeout', null, `The request ran longer than this gateway's maximum request duration (${seconds} s) and was ended.`);
        res.status(error.status).json(error.toBody());
      } else if (result.clientError) {
        if (result.clientError.retryAfterSeconds !== undefined) res.set('retry-after', String(result.clientError.retryAfterSeconds));
        res.status(result.clientError.status).json(result.clientError.body);
      } else res.json(result.body);
    }
  } catch (error) {
    // Our fault, not the upstream's: the customer pays nothing.
    outcome = { kind: 'gateway_error' };
    deps.logger.error({ requestId: requestIdOf(res), err: { name: (error as Error).name } }, 'dispatch failed inside the gateway');
    if (!res.headersSent && !res.destroyed) res.status(500).json(internal(requestIdOf(res)).toBody());
    else if (!res.destroyed) res.destroy();
  } finally {
    res.off('close', onClose);
    clearTimeout(maxDuration);
  }

  const request: RequestMetadata | undefined = observed && {
    upstream: observed.upstream,
    httpStatus: observed.httpStatus,
    stream: wantsStream,
    latencyMs: Math.round(observed.latencyMs),
    timeToFirstTokenMs: observed.timeToFirstTokenMs === undefined ? null : Math.round(observed.timeToFirstTokenMs),
  };
  if (observed) {
    deps.metrics.observeUpstreamLatency(body.model, observed.latencyMs);
    annotateRequest(res, { inputTokens: observed.usage.inputTokens, outputTokens: observed.usage.outputTokens });
    deps.limiter.reconcileTokens(key.keyId, deps.limits, promptTokens + maxOutputTokens, observed.usage.inputTokens + observed.usage.outputTokens);
  }
  releaseLog();
  finished(endReservation(deps, stream, reservationId, outcome, price.value, request, metadata, expiresAt));
}

/**
 * Settles or releases by the charge policy; retried, since the answer has already gone out,
 * until the reservation's deadline (epoch ms): a database outage must not
 * turn a served request into an expired, uncharged one.
 */
async function endReservation(
  deps: InferenceRouteDeps,
  stream: string,
  requestId: string,
  outcome: RequestOutcome,
  price: { version: number; inputPerMillion: MicroUsd; outputPerMillion: MicroUsd },
  request: RequestMetadata | undefined,
  metadata: CommandMetadata,
  expiresAt: number,
): Promise<void> {
  const charge = chargeFor(outcome);
  const command =
    charge.decision === 'settle'
      ? ({
          type: 'SettleReservation',
          data: { requestId, usage: charge.usage, price, outcome: charge.outcome, ...(request ? { request } : {}) },
          metadata: { ...metadata, now: new Date().toISOString() },
        } as const)
      : charge.decision === 'release'
        ? ({
            type: 'ReleaseReservation',
            data: { requestId, reason: charge.reason, ...(request ? { request } : {}) },
            metadata: { ...metadata, now: new Date().toISOString() },
          } as const)
        : undefined;
  if (!command) return;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await deps.ledger.accounts.handle(stream, command);
      if (!result.ok) deps.logger.error({ requestId, error: result.error.error }, 'reservation could not be ended');
      deps.metrics.reservationsOpen.dec();
      return;
    } catch (error) {
      const wait = Math.min(100 * 2 ** attempt, 2_000);
      if (Date.now() + wait >= expiresAt) {
        // The expiry process returns the hold at its deadline (or once this instance is gone).
        deps.logger.error({ requestId, attempts: attempt, err: { name: (error as Error).name } }, 'settlement failed; the reservation will expire');
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

/**
 * Releases a reservation whose placement failed with an unknown outcome. Usually it was never
 * written (reservation_not_found, nothing to do); if it was, this returns the hold. Retried
 * through a database outage until the reservation's latest possible deadline.
 */
export async function releaseAbandonedReservation(
  deps: Pick<InferenceRouteDeps, 'ledger' | 'logger' | 'maxRequestDurationMs'>,
  stream: string,
  requestId: string,
  metadata: CommandMetadata,
): Promise<void> {
  const giveUpAt = Date.now() + (deps.maxRequestDurationMs ?? 600_000);
  for (let attempt = 1; ; attempt++) {
    // First wait: a commit in flight when the error came has landed or failed by then.
    await new Promise((resolve) => setTimeout(resolve, Math.min(500 * 2 ** attempt, 5_000)).unref());
    try {
      const result = await deps.ledger.accounts.handle(stream, {
        type: 'ReleaseReservation',
        data: { requestId, reason: 'gateway_error' },
        metadata: { ...metadata, now: new Date().toISOString() },
      });
      if (result.ok && result.events.length > 0) deps.logger.warn({ requestId }, 'released a reservation whose placement seemed to fail');
      return;
    } catch {
      if (Date.now() >= giveUpAt) {
        deps.logger.error({ requestId }, 'could not release a reservation whose placement seemed to fail; it expires at its deadline');
        return;
      }
    }
  }
}

/**
 * Output beyond the request's max_tokens (or the model's cap) is never billed: the upstream was
 * told the limit, and one that ignores it must not turn a 100-token request into a bill for
 * hundreds of thousands. It also bounds the settlement shortfall to the input estimate's error.
 * Logs and metrics keep what the upstream really produced.
 */
export function billedAtMost(o: InferenceOutcome, maxOutputTokens: number, logger: Pick<Logger, 'warn'>, requestId: string): InferenceOutcome {
  if (o.operation === 'embedding' || o.usage.outputTokens <= maxOutputTokens) return o;
  logger.warn({ requestId, model: o.model, upstream: o.upstream, outputTokens: o.usage.outputTokens, maxOutputTokens }, 'upstream produced more output than max_tokens; billed the limit');
  return { ...o, usage: { ...o.usage, outputTokens: maxOutputTokens }, tokensProduced: Math.min(o.tokensProduced, maxOutputTokens) };
}

export function toRequestOutcome(o: InferenceOutcome, clientLeft: boolean): RequestOutcome {
  const usage = { inputTokens: BigInt(o.usage.inputTokens), outputTokens: BigInt(o.usage.outputTokens), estimated: o.usage.estimated };
  switch (o.kind) {
    case 'completed':
      return clientLeft ? { kind: 'completed_after_disconnect', usage } : { kind: 'completed', usage };
    case 'client_disconnected':
      return { kind: 'client_disconnected', producedSoFar: usage };
    case 'upstream_error':
    case 'cut':
      return { kind: 'upstream_error', tokens: o.tokensProduced > 0 ? usage : null };
    case 'upstream_unavailable':
      return { kind: 'upstream_error', tokens: null };
    case 'moderation_refusal':
      // Charged only for what the upstream itself reports.
      return { kind: 'moderation_refusal', reported: o.usage.estimated ? null : usage };
  }
}

/** The gateway, not the client, ended the request: record it so (a finish that raced the timer is a plain completion). */
function overranOutcome(outcome: RequestOutcome): RequestOutcome {
  switch (outcome.kind) {
    case 'client_disconnected':
      return { kind: 'max_duration_reached', producedSoFar: outcome.producedSoFar };
    case 'completed_after_disconnect':
      return { kind: 'completed', usage: outcome.usage };
    default:
      return outcome;
  }
}

function commandMetadata(key: VerifiedKey, correlationId: string, causationId: string): CommandMetadata {
  return { now: new Date().toISOString(), correlationId, causationId, actor: { kind: 'customer_key', keyId: key.keyId } };
}

function refusal(error: AccountError, needed: MicroUsd, basis: ReservationBasis): ApiError {
  switch (error.error) {
    case 'exceeds_available_balance':
      return insufficientQuota({ available: error.available, needed: error.needed, basis });
    case 'negative_balance':
      return insufficientQuota({ available: error.balance, needed, basis });
    case 'account_suspended':
      return new ApiError(403, 'invalid_request_error', 'account_suspended', null, `This account is suspended (${error.reason.replaceAll('_', ' ')}). ${
        error.reason === 'negative_balance' || error.reason === 'auto_top_up_failed' ? 'Top up to settle the balance and continue.' : 'Contact support.'
      }`, { 'x-should-retry': 'false' });
    case 'account_closed':
      return new ApiError(403, 'invalid_request_error', 'account_closed', null, 'This account is closed.', { 'x-should-retry': 'false' });
    default:
      return new ApiError(403, 'invalid_request_error', error.error, null, `The request was refused: ${error.error.replaceAll('_', ' ')}.`, {
        'x-should-retry': 'false',
      });
  }
}

