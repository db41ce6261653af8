import type { RequestMetadata } from '../../domain/account';
import type { AccountError } from '../../domain/account';
import { estimateReservation } from '../../domain/estimate';
import type { MicroUsd } from '../../domain/money';
import type { TokenOperation as Operation } from '../../domain/price-book';
import type { RequestOutcome } from '../../domain/charge-policy';
import type { Logger } from 'pino';
import {
  countPromptTokens,
  dispatchGate,
  type ClientError,
  type DispatchResult,
  type InferenceAdapter,
  type InferenceOutcome,
  type Lease,
  type StreamSink,
} from '../../adapters/inference';
import type { VerifiedKey } from '../api-keys';
import type { HistoricalCosts } from '../historical-costs';
import {
  modelInForce,
  openDispatchWindow,
  overranOutcome,
  placeReservation,
  serveReserved,
  type ModelRefusal,
  type ReservationDeps,
  type Speculation,
} from './reservation';

export { commandMetadata, endReservation, releaseAbandonedReservation, type LoggedRequest } from './reservation';

/**
 * The inference use case: price, estimate, reserve, dispatch, settle, for requests priced by the
 * token. What every priced request shares (the gates, the placement, the dispatch window, the
 * settlement with its retries) is src/inference/reservation.ts. The HTTP route parses the
 * request, calls serveInference() and turns what it reports into answers; everything HTTP
 * (headers, status codes, the response stream) stays behind {@link InferenceExchange}.
 */
export interface ServeRequestDeps extends ReservationDeps {
  readonly inference: InferenceAdapter;
  /** the historical average per model and operation, shared by all instances */
  readonly historicalCosts: Pick<HistoricalCosts, 'historicalAverage'>;
  /** added to every estimate, in basis points (1000 = +10%) */
  readonly marginBasisPoints: bigint;
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
  | ModelRefusal
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
  const gate = await modelInForce(deps, key, body.model, operation);
  if (!gate.ok) return gate.refusal;
  const { price, book, spec } = gate.value;
  exchange.annotate({ model: body.model });

  const cap = Math.min(Number(book.models.get(body.model)!.maxOutputTokens), spec.maxOutputTokens);
  const requested = operation === 'embedding' ? 0 : input.requestedMaxOutputTokens;
  if (requested !== undefined && requested > cap) return { kind: 'max_tokens_too_large', cap };
  const maxOutputTokens = operation === 'embedding' ? 0 : (requested ?? cap) * input.outputsPerRequest;
  const promptTokens = countPromptTokens(operation, body);

  exchange.admit(promptTokens + maxOutputTokens);

  // Capped at the request's maximum possible cost, whatever the historical average.
  const { amount, maximumCost } = estimateReservation({
    promptTokens: BigInt(promptTokens),
    maxOutputTokens: BigInt(maxOutputTokens),
    price,
    historicalAverage: deps.historicalCosts.historicalAverage(body.model, operation),
    marginBasisPoints: deps.marginBasisPoints,
  });
  const wantsStream = operation !== 'embedding' && body.stream === true;
  const logged = { accountId: key.accountId, keyId: key.keyId, model: body.model, operation, stream: wantsStream };
  const request = { operation, body, promptTokens };
  // Opened before the placement: a dispatch started while the reservation commits stops when
  // the client leaves too.
  const window = openDispatchWindow(deps, exchange);
  const dispatch = (lease: Lease, options: { signal: AbortSignal; sink?: StreamSink }): Promise<DispatchResult> =>
    deps.inference.dispatch(lease, request, { signal: options.signal, requestId: exchange.requestId, ...(options.sink ? { sink: options.sink } : {}) });
  // The reservation is decided in memory; while its commit is in flight the request already goes
  // to the upstream, and nothing it answers reaches the client until the commit is durable: a
  // stream's first write is held behind the gate (and the relay waits on it), a whole body waits
  // in memory until it is answered below. If the commit fails, the upstream request is cancelled
  // at once (src/inference/reservation.ts).
  const speculate = (lease: Lease): Speculation<DispatchResult> => {
    const gate = dispatchGate();
    const result = dispatch(lease, {
      signal: AbortSignal.any([window.signal, gate.cancelled]),
      ...(wantsStream ? { sink: gate.sink(exchange.sink()) } : {}),
    });
    // Handled where it is awaited; never left unobserved.
    result.catch(() => undefined);
    return {
      result,
      open: () => gate.open(),
      cancel: async () => {
        gate.cancel();
        await result.catch(() => undefined);
      },
    };
  };
  let placement;
  try {
    placement = await placeReservation(deps, {
      key,
      model: body.model,
      operation,
      amount,
      price,
      requestId: exchange.requestId,
      speculative: { start: speculate, logged },
    });
  } catch (error) {
    window.close();
    throw error;
  }
  if (!placement.ok) {
    window.close();
    if (placement.refusal.kind !== 'reservation_refused') return placement.refusal;
    const basis: ReservationBasis = {
      promptTokens,
      maxOutputTokens,
      outputLimit: requested === undefined ? 'model_limit' : 'max_tokens',
      marginBasisPoints: deps.marginBasisPoints,
      maximumCost,
    };
    return { kind: 'reservation_refused', error: placement.refusal.error, needed: amount, basis };
  }
  const { placed, speculation } = placement;

  const fail = () => exchange.answer({ kind: 'failed' });
  await serveReserved(
    deps,
    { ...exchange, requestId: exchange.requestId, fail },
    placed,
    logged,
    async () => {
      const result = await (speculation
        ? speculation.result
        : dispatch(placed.lease, { signal: window.signal, ...(wantsStream ? { sink: exchange.sink() } : {}) }));
      const observed = result.outcome;
      let outcome = toRequestOutcome(billedAtMost(observed, maxOutputTokens, deps.logger, exchange.requestId), window.signal.aborted);
      if (window.overran()) {
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
      else if (window.overran() && !result.clientError && result.body === undefined)
        exchange.answer({ kind: 'timed_out', maxRequestDurationMs: deps.maxRequestDurationMs ?? 0 });
      else if (result.clientError) exchange.answer({ kind: 'client_error', error: result.clientError });
      else exchange.answer({ kind: 'body', body: result.body });

      deps.metrics.observeUpstreamLatency(body.model, observed.latencyMs);
      exchange.annotate({ inputTokens: observed.usage.inputTokens, outputTokens: observed.usage.outputTokens });
      exchange.reconcile(promptTokens + maxOutputTokens, observed.usage.inputTokens + observed.usage.outputTokens);
      const request: RequestMetadata = {
        upstream: observed.upstream,
        httpStatus: observed.httpStatus,
        stream: wantsStream,
        latencyMs: Math.round(observed.latencyMs),
        timeToFirstTokenMs: observed.timeToFirstTokenMs === undefined ? null : Math.round(observed.timeToFirstTokenMs),
      };
      return { outcome, request };
    },
    window,
  );
  return undefined;
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
