import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { accountStreamId, type AccountError, type RequestMetadata } from '../../domain/account';
import { isModelAllowed } from '../../domain/api-key';
import { chargeFor, type RequestOutcome } from '../../domain/charge-policy';
import type { CommandMetadata } from '../../domain/events/metadata';
import { estimateReservation } from '../../domain/estimate';
import type { MicroUsd } from '../../domain/money';
import {
  PRICE_BOOK_STREAM_ID,
  priceInForce,
  type Operation as AnyOperation,
  type PriceInForce,
  type TokenOperation as Operation,
} from '../../domain/price-book';
import { countPromptTokens, type ClientError, type InferenceAdapter, type InferenceOutcome, type StreamSink } from '../../adapters/inference';
import type { VerifiedKey } from '../api-keys';
import type { HistoricalCosts } from '../historical-costs';
import type { Ledger } from '../ledger';
import type { SettlementTracker } from '../settlements';

/**
 * The inference use case: price, estimate, reserve, dispatch, settle (with its retry), the
 * maximum request duration and the release of an abandoned placement. The HTTP route parses
 * the request, calls serveInference() and turns what it reports into answers; everything
 * HTTP (headers, status codes, the response stream) stays behind {@link InferenceExchange}.
 */
export interface ServeRequestDeps {
  readonly ledger: Ledger;
  readonly inference: InferenceAdapter;
  /** the historical average per model and operation, shared by all instances */
  readonly historicalCosts: Pick<HistoricalCosts, 'historicalAverage'>;
  readonly metrics: {
    readonly reservationsOpen: { inc(): void; dec(): void };
    observeUpstreamLatency(model: string, latencyMs: number): void;
  };
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
  /** wall clock for the price and retirement in force; the real clock when absent (tests inject one) */
  readonly now?: () => Date;
}

/** A validated inference request, as the route parsed it. */
export interface ServeInput {
  readonly operation: Operation;
  readonly key: VerifiedKey;
  readonly body: Readonly<Record<string, unknown>> & { readonly model: string; readonly stream?: boolean | null | undefined };
  /** the request's own output limit (max_tokens or its kin), if it set one */
  readonly requestedMaxOutputTokens: number | undefined;
  /** completions answer one output per prompt: the output limit counts once per output */
  readonly outputsPerRequest: number;
}

/** What a reservation was computed from: token counts and settings, never content. */
export interface ReservationBasis {
  /** prompt tokens counted locally */
  readonly promptTokens: number;
  /** the most output tokens the request may produce (0 for embeddings) */
  readonly maxOutputTokens: number;
  /** where that limit came from: the request's max_tokens, or the model's own limit */
  readonly outputLimit: 'max_tokens' | 'model_limit';
  readonly marginBasisPoints: bigint;
  /** the request's maximum possible cost, margin included: the reservation's cap */
  readonly maximumCost: MicroUsd;
}

/** Why a request was turned away before any upstream work: the route words the answer. */
export type Refusal =
  | { readonly kind: 'model_not_found'; readonly model: string }
  /** the key's model allowlist does not name it */
  | { readonly kind: 'model_not_allowed'; readonly model: string }
  /** the model was retired (at `retiredAt`, when known): named so the client knows it is gone for good */
  | { readonly kind: 'model_retired'; readonly model: string; readonly retiredAt: string | undefined }
  | { readonly kind: 'upstream_unavailable' }
  | { readonly kind: 'max_tokens_too_large'; readonly cap: number }
  | { readonly kind: 'at_capacity'; readonly retryAfterSeconds: number }
  | { readonly kind: 'reservation_refused'; readonly error: AccountError; readonly needed: MicroUsd; readonly basis: ReservationBasis };

/** How the finished dispatch is answered (nothing is answered once the client is gone). */
export type Answer =
  /** the stream was relayed: end it */
  | { readonly kind: 'end_stream' }
  /**
   * the stream was being relayed when the maximum request duration ended it: a last error event
   * (as for other mid-stream failures, so an SDK raises instead of taking a short answer for a
   * whole one), then the end
   */
  | { readonly kind: 'stream_timed_out'; readonly maxRequestDurationMs: number }
  /** nothing was relayed before the maximum request duration ended the request */
  | { readonly kind: 'timed_out'; readonly maxRequestDurationMs: number }
  | { readonly kind: 'client_error'; readonly error: ClientError }
  | { readonly kind: 'body'; readonly body: unknown }
  /** the gateway itself failed */
  | { readonly kind: 'failed' };

/** The route's side of one request: everything the flow needs from HTTP, and nothing else. */
export interface InferenceExchange {
  readonly requestId: string;
  /** facts for the request's log line */
  annotate(facts: { model?: string; inputTokens?: number; outputTokens?: number }): void;
  /** rate limits: throws the route's refusal when the tokens do not fit */
  admit(tokens: number): void;
  /** the request used `actual` tokens where `estimated` were admitted */
  reconcile(estimated: number, actual: number): void;
  /** where a streamed answer goes */
  sink(): StreamSink;
  /** calls `listener` if the client leaves before the answer is complete; returns the unsubscribe */
  onClientGone(listener: () => void): () => void;
  /** keeps the request's log line open until the returned function is called */
  holdLog(): () => void;
  answer(answer: Answer): void;
}

/**
 * Serves one inference request. Returns a refusal when it was turned away before any
 * upstream work (nothing reserved); otherwise it answers through the exchange and hands the
 * reservation's ending to the settlement tracker. Throws what the ledger throws at placement.
 */
export async function serveInference(deps: ServeRequestDeps, input: ServeInput, exchange: InferenceExchange): Promise<Refusal | undefined> {
  const { operation, key, body } = input;
  const now = (deps.now?.() ?? new Date()).toISOString();
  if (!isModelAllowed(key.limits, body.model)) return { kind: 'model_not_allowed', model: body.model };

  const { state: book } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
  const price = priceInForce(book, body.model, operation, now);
  if (!price.ok) {
    if (price.error.error === 'model_retired') return { kind: 'model_retired', model: body.model, retiredAt: price.error.retiredAt };
    return { kind: 'model_not_found', model: body.model };
  }
  const spec = deps.inference.model(body.model);
  if (!spec || !spec.operations.includes(operation)) return { kind: 'upstream_unavailable' };
  exchange.annotate({ model: body.model });

  const cap = Math.min(Number(book.models.get(body.model)!.maxOutputTokens), spec.maxOutputTokens);
  const requested = operation === 'embedding' ? 0 : input.requestedMaxOutputTokens;
  if (requested !== undefined && requested > cap) return { kind: 'max_tokens_too_large', cap };
  const maxOutputTokens = operation === 'embedding' ? 0 : (requested ?? cap) * input.outputsPerRequest;
  const promptTokens = countPromptTokens(operation, body);

  exchange.admit(promptTokens + maxOutputTokens);

  const slot = deps.inference.tryAcquire(body.model);
  if (slot.kind === 'unknown_model') return { kind: 'upstream_unavailable' };
  if (slot.kind === 'at_capacity') return { kind: 'at_capacity', retryAfterSeconds: slot.retryAfterSeconds };
  const lease = slot.lease;

  // Our own id: the client's x-request-id correlates, but may repeat; a reservation may not.
  const reservationId = `req_${randomUUID()}`;
  const metadata = commandMetadata(key, exchange.requestId, reservationId);
  // Capped at the request's maximum possible cost, whatever the historical average.
  const { amount, maximumCost } = estimateReservation({
    promptTokens: BigInt(promptTokens),
    maxOutputTokens: BigInt(maxOutputTokens),
    price: price.value,
    historicalAverage: deps.historicalCosts.historicalAverage(body.model, operation),
    marginBasisPoints: deps.marginBasisPoints,
  });
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
        ...(key.limits.spendLimit === null ? {} : { keySpendLimit: key.limits.spendLimit }),
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
    const basis: ReservationBasis = {
      promptTokens,
      maxOutputTokens,
      outputLimit: requested === undefined ? 'model_limit' : 'max_tokens',
      marginBasisPoints: deps.marginBasisPoints,
      maximumCost,
    };
    return { kind: 'reservation_refused', error: placed.error, needed: amount, basis };
  }
  deps.metrics.reservationsOpen.inc();
  const placedEvent = placed.events.find((e) => e.event.type === 'ReservationPlaced')?.event;
  const expiresAt = placedEvent?.type === 'ReservationPlaced' ? Date.parse(placedEvent.data.expiresAt) : Date.now();

  const finished = deps.settlements.begin(key.accountId);
  const releaseLog = exchange.holdLog();
  const abort = new AbortController();
  const stopWatching = exchange.onClientGone(() => abort.abort());
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
      { signal: abort.signal, requestId: exchange.requestId, ...(wantsStream ? { sink: exchange.sink() } : {}) },
    );
    observed = result.outcome;
    outcome = toRequestOutcome(billedAtMost(result.outcome, maxOutputTokens, deps.logger, exchange.requestId), abort.signal.aborted);
    if (overran) {
      outcome = overranOutcome(outcome);
      deps.logger.warn(
        { requestId: exchange.requestId, maxRequestDurationMs: deps.maxRequestDurationMs },
        'request ended at the maximum request duration; charged for what was produced',
      );
    }
    if (result.streamStarted)
      // Only when the timer cut the stream: one that finished as the timer fired has had its [DONE].
      exchange.answer(
        outcome.kind === 'max_duration_reached' ? { kind: 'stream_timed_out', maxRequestDurationMs: deps.maxRequestDurationMs ?? 0 } : { kind: 'end_stream' },
      );
    else if (overran && !result.clientError && result.body === undefined)
      exchange.answer({ kind: 'timed_out', maxRequestDurationMs: deps.maxRequestDurationMs ?? 0 });
    else if (result.clientError) exchange.answer({ kind: 'client_error', error: result.clientError });
    else exchange.answer({ kind: 'body', body: result.body });
  } catch (error) {
    // Our fault, not the upstream's: the customer pays nothing.
    outcome = { kind: 'gateway_error' };
    deps.logger.error({ requestId: exchange.requestId, err: { name: (error as Error).name } }, 'dispatch failed inside the gateway');
    exchange.answer({ kind: 'failed' });
  } finally {
    stopWatching();
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
    exchange.annotate({ inputTokens: observed.usage.inputTokens, outputTokens: observed.usage.outputTokens });
    exchange.reconcile(promptTokens + maxOutputTokens, observed.usage.inputTokens + observed.usage.outputTokens);
  }
  releaseLog();
  const logged = { accountId: key.accountId, keyId: key.keyId, model: body.model, operation, stream: wantsStream };
  finished(endReservation(deps, stream, reservationId, outcome, price.value, request, logged, metadata, expiresAt));
  return undefined;
}

/** What the request log records of a request beside its money. */
export interface LoggedRequest {
  readonly accountId: string;
  readonly keyId: string;
  readonly model: string;
  readonly operation: AnyOperation;
  readonly stream: boolean;
}

/**
 * Settles or releases by the charge policy; retried, since the answer has already gone out,
 * until the reservation's deadline (epoch ms): a database outage must not
 * turn a served request into an expired, uncharged one.
 */
export async function endReservation(
  deps: Pick<ServeRequestDeps, 'ledger' | 'logger' | 'metrics'>,
  stream: string,
  requestId: string,
  outcome: RequestOutcome,
  price: PriceInForce,
  request: RequestMetadata | undefined,
  logged: LoggedRequest,
  metadata: CommandMetadata,
  expiresAt: number,
): Promise<void> {
  const charge = chargeFor(outcome);
  const command =
    charge.decision === 'settle'
      ? ({
          type: 'SettleReservation',
          data: { requestId, usage: charge.usage, price, outcome: charge.outcome },
          metadata: { ...metadata, now: new Date().toISOString() },
        } as const)
      : charge.decision === 'release'
        ? ({
            type: 'ReleaseReservation',
            data: { requestId, reason: charge.reason },
            metadata: { ...metadata, now: new Date().toISOString() },
          } as const)
        : undefined;
  if (!command) return;
  for (let attempt = 1; ; attempt++) {
    try {
      const result = await deps.ledger.accounts.handle(stream, command);
      if (!result.ok) deps.logger.error({ requestId, error: result.error.error }, 'reservation could not be ended');
      deps.metrics.reservationsOpen.dec();
      if (result.ok && result.events.length > 0) await logRequest(deps, requestId, charge, request, logged, command.metadata);
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
 * The request's entry in the request log (metadata, kept for the retention days), once its money
 * is recorded. Not retried: losing a log entry to an outage loses no money, only a row of the
 * request list.
 */
async function logRequest(
  deps: Pick<ServeRequestDeps, 'ledger' | 'logger'>,
  requestId: string,
  charge: ReturnType<typeof chargeFor>,
  request: RequestMetadata | undefined,
  logged: LoggedRequest,
  metadata: CommandMetadata,
): Promise<void> {
  if (charge.decision === 'no_reservation') return;
  try {
    await deps.ledger.requestLog.record(
      {
        requestId,
        accountId: logged.accountId,
        keyId: logged.keyId,
        model: logged.model,
        operation: logged.operation,
        ended: charge.decision === 'settle' ? 'settled' : 'released',
        outcome: charge.decision === 'settle' ? charge.outcome : charge.reason,
        usage: charge.decision === 'settle' ? { ...charge.usage } : null,
        upstream: request?.upstream ?? null,
        httpStatus: request?.httpStatus ?? null,
        stream: request?.stream ?? logged.stream,
        latencyMs: request?.latencyMs ?? null,
        timeToFirstTokenMs: request?.timeToFirstTokenMs ?? null,
      },
      metadata,
    );
  } catch (error) {
    deps.logger.error({ requestId, err: { name: (error as Error).name } }, 'request log entry could not be written');
  }
}

/**
 * Releases a reservation whose placement failed with an unknown outcome. Usually it was never
 * written (reservation_not_found, nothing to do); if it was, this returns the hold. Retried
 * through a database outage until the reservation's latest possible deadline.
 */
export async function releaseAbandonedReservation(
  deps: Pick<ServeRequestDeps, 'ledger' | 'logger' | 'maxRequestDurationMs'>,
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
  logger.warn(
    { requestId, model: o.model, upstream: o.upstream, outputTokens: o.usage.outputTokens, maxOutputTokens },
    'upstream produced more output than max_tokens; billed the limit',
  );
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

export function commandMetadata(key: VerifiedKey, correlationId: string, causationId: string): CommandMetadata {
  return { now: new Date().toISOString(), correlationId, causationId, actor: { kind: 'customer_key', keyId: key.keyId } };
}
