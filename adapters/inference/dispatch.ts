import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import { CapacityTable } from './capacity';
import type { AcquireResult, Lease, UpstreamSlot } from './capacity';
import type { ModelSpec, Operation } from './models-file';
import { clientError } from './outcome';
import type { ClientError, DispatchResult, InferenceOutcome, OutcomeKind } from './outcome';
import type { StreamSink } from './sink';
import { relayStream } from './stream';
import { choicesText, firstFinishReason, isModerationError, isRecord, readUsage } from './upstream-payload';
import { countChatPromptTokens, countCompletionPromptTokens, countEmbeddingInputTokens, countTextTokens } from './tokens';
import type { ChatMessageLike } from './tokens';

/**
 * Sends admitted requests to OpenAI-compatible upstreams over pooled keep-alive connections,
 * fails over when an upstream refuses the connection, relays streams with backpressure, and
 * reports an outcome the gateway can bill from.
 */

export interface InferenceRequest {
  readonly operation: Operation;
  /** The client's validated JSON body; not mutated. `model` is replaced by the upstream's name. */
  readonly body: Readonly<Record<string, unknown>>;
  /** Prompt tokens the gateway already counted for the reservation; counted here if absent. */
  readonly promptTokens?: number;
}

export interface DispatchOptions {
  /** Abort when the client goes away: the upstream request is cancelled at once. */
  readonly signal?: AbortSignal;
  /** Required for chat/completion requests with `stream: true`. */
  readonly sink?: StreamSink;
  /** Forwarded as x-request-id so upstream logs can be correlated. */
  readonly requestId?: string;
}

export interface InferenceAdapterOptions {
  /** Give up connecting to an upstream after this long and fail over. Default 5 s. */
  readonly connectTimeoutMs?: number;
  /** Longest wait for response headers (a non-streaming answer arrives whole). Default 600 s. */
  readonly headersTimeoutMs?: number;
  /** Longest silence between body chunks before the stream counts as cut. Default 120 s. */
  readonly bodyTimeoutMs?: number;
  readonly keepAliveTimeoutMs?: number;
  readonly now?: () => number;
}

const endpointPaths: Record<Operation, string> = {
  chat: '/chat/completions',
  completion: '/completions',
  embedding: '/embeddings',
};

// Error bodies are read only to spot moderation codes; a larger body is not an error message.
const maxErrorBodyBytes = 64 * 1024;

export class InferenceAdapter {
  private readonly capacity: CapacityTable;
  private readonly pools = new Map<string, Pool>();
  private readonly now: () => number;

  private readonly urls: readonly string[];

  constructor(
    models: readonly ModelSpec[],
    private readonly options: InferenceAdapterOptions = {},
  ) {
    this.urls = [...new Set(models.flatMap((m) => m.upstreams.map((u) => u.baseUrl)))];
    this.now = options.now ?? (() => performance.now());
    this.capacity = new CapacityTable(models);
  }

  /** Every configured upstream base URL, once each (for readiness checks). */
  upstreamUrls(): readonly string[] {
    return this.urls;
  }

  model(id: string): ModelSpec | undefined {
    return this.capacity.model(id);
  }

  /** A concurrency slot on an upstream of the model, or at_capacity at once (answer 429). */
  tryAcquire(modelId: string): AcquireResult {
    return this.capacity.tryAcquire(modelId);
  }

  /** In-flight requests per upstream of a model. */
  inFlight(modelId: string): number[] {
    return this.capacity.inFlight(modelId);
  }

  /**
   * Runs one request on the leased upstream (failing over on refused connections) and
   * releases the lease when done. Never throws for upstream trouble: it is in the outcome.
   */
  async dispatch(lease: Lease, request: InferenceRequest, options: DispatchOptions = {}): Promise<DispatchResult> {
    try {
      return await this.run(lease, request, options);
    } finally {
      lease.release();
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.close()));
    this.pools.clear();
  }

  private async run(lease: Lease, request: InferenceRequest, options: DispatchOptions): Promise<DispatchResult> {
    const started = this.now();
    const model = lease.model;
    const streaming = request.operation !== 'embedding' && request.body.stream === true;
    if (streaming && !options.sink) throw new Error('dispatch: a streaming request needs a sink');
    const clientWantsUsage = streaming && includeUsageAsked(request.body.stream_options);

    let promptTokens = request.promptTokens;
    const countPrompt = (): number => (promptTokens ??= countPromptTokens(request.operation, request.body));

    const base = {
      operation: request.operation,
      model: model.id,
    };
    const finish = (
      kind: OutcomeKind,
      fields: {
        slot: UpstreamSlot | null;
        httpStatus: number | null;
        inputTokens?: number;
        outputTokens: number;
        estimated: boolean;
        failovers: number;
        timeToFirstTokenMs?: number;
        finishReason?: string;
      },
    ): InferenceOutcome => ({
      ...base,
      kind,
      httpStatus: fields.httpStatus,
      usage: {
        inputTokens: fields.inputTokens ?? countPrompt(),
        outputTokens: fields.outputTokens,
        estimated: fields.estimated,
      },
      upstream: fields.slot ? displayUrl(fields.slot.upstream.baseUrl) : null,
      latencyMs: Math.round(this.now() - started),
      ...(fields.timeToFirstTokenMs === undefined ? {} : { timeToFirstTokenMs: Math.round(fields.timeToFirstTokenMs) }),
      tokensProduced: fields.outputTokens,
      failovers: fields.failovers,
      ...(fields.finishReason === undefined ? {} : { finishReason: fields.finishReason }),
    });

    // 1. Connect, failing over while upstreams refuse.
    const tried = new Set<number>();
    let failovers = 0;
    let slot = lease.slot;
    let response: Dispatcher.ResponseData;
    for (;;) {
      slot = lease.slot;
      tried.add(slot.index);
      try {
        response = await this.pool(slot.upstream.baseUrl).request({
          method: 'POST',
          path: parsedBaseUrl(slot.upstream.baseUrl).pathname + endpointPaths[request.operation],
          headers: upstreamHeaders(slot, streaming, options.requestId),
          body: JSON.stringify(upstreamBody(model, slot, request, streaming)),
          signal: options.signal ?? null,
          headersTimeout: this.options.headersTimeoutMs ?? 600_000,
          bodyTimeout: this.options.bodyTimeoutMs ?? 120_000,
        });
        break;
      } catch (error) {
        if (options.signal?.aborted) {
          return { outcome: finish('client_disconnected', { slot, httpStatus: null, outputTokens: 0, estimated: true, failovers }), streamStarted: false };
        }
        if (isConnectFailure(error)) {
          this.capacity.markRefused(slot);
          if (this.capacity.moveLease(lease, tried)) {
            failovers++;
            continue;
          }
          return {
            outcome: finish('upstream_unavailable', { slot, httpStatus: null, outputTokens: 0, estimated: true, failovers }),
            clientError: clientError(503, 'upstream_unavailable', `No upstream is available for model ${model.id}; retry shortly.`, 'upstream_unavailable', 1),
            streamStarted: false,
          };
        }
        // The request may have reached the upstream (reset, header timeout): never resend it.
        const timedOut = errorCode(error) === 'UND_ERR_HEADERS_TIMEOUT';
        return {
          outcome: finish('upstream_error', { slot, httpStatus: null, outputTokens: 0, estimated: true, failovers }),
          clientError: timedOut
            ? clientError(504, 'upstream_timeout', 'The upstream did not answer in time.')
            : clientError(502, 'upstream_error', 'The upstream connection failed before an answer.'),
          streamStarted: false,
        };
      }
    }

    // 2. An HTTP error: answer with our own message; the body might echo the prompt.
    if (response.statusCode >= 400) {
      const moderated = await readModerationFlag(response.body, options.signal);
      const kind = moderated ? 'moderation_refusal' : 'upstream_error';
      return {
        outcome: finish(kind, { slot, httpStatus: response.statusCode, outputTokens: 0, estimated: true, failovers }),
        clientError: moderated
          ? clientError(400, 'content_filter', 'The upstream refused the request under its content policy.', 'invalid_request_error')
          : upstreamHttpError(response.statusCode),
        streamStarted: false,
      };
    }

    // 3. A stream: relay event by event.
    if (streaming) {
      const relay = await relayStream({
        body: response.body,
        sink: options.sink!,
        signal: options.signal,
        clientWantsUsage,
        operation: request.operation,
        publicModel: slot.upstream.upstreamModel && slot.upstream.upstreamModel !== model.id ? model.id : undefined,
        now: this.now,
        countPrompt,
      });
      const reported = relay.upstreamUsage;
      const outputTokens = reported?.completionTokens ?? relay.countTokens();
      const outcome = finish(relay.kind, {
        slot,
        httpStatus: response.statusCode,
        inputTokens: reported?.promptTokens,
        outputTokens,
        estimated: reported?.promptTokens === undefined || reported.completionTokens === undefined,
        failovers,
        ...(relay.firstTokenAt === undefined ? {} : { timeToFirstTokenMs: relay.firstTokenAt - started }),
        ...(relay.finishReason === undefined ? {} : { finishReason: relay.finishReason }),
      });
      let error: ClientError | undefined;
      if (!relay.started) {
        if (relay.kind === 'cut') error = clientError(502, 'upstream_stream_cut', 'The upstream stream ended before any output.');
        if (relay.kind === 'upstream_error') error = upstreamHttpError(relay.errorStatus ?? 502);
        if (relay.kind === 'moderation_refusal' && outputTokens === 0) {
          error = clientError(400, 'content_filter', 'The upstream refused the request under its content policy.', 'invalid_request_error');
        }
      }
      return { outcome, streamStarted: relay.started, ...(error ? { clientError: error } : {}) };
    }

    // 4. A whole JSON answer.
    let text: string;
    try {
      text = await response.body.text();
    } catch {
      const kind = options.signal?.aborted ? 'client_disconnected' : 'cut';
      return {
        outcome: finish(kind, { slot, httpStatus: response.statusCode, outputTokens: 0, estimated: true, failovers }),
        ...(kind === 'cut' ? { clientError: clientError(502, 'upstream_error', 'The upstream connection failed mid-answer.') } : {}),
        streamStarted: false,
      };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!isRecord(body)) {
      return {
        outcome: finish('upstream_error', { slot, httpStatus: response.statusCode, outputTokens: 0, estimated: true, failovers }),
        clientError: clientError(502, 'upstream_error', 'The upstream returned a response that is not JSON.'),
        streamStarted: false,
      };
    }
    const reported = readUsage(body.usage);
    const finishReason = firstFinishReason(body.choices);
    const outputTokens = request.operation === 'embedding' ? 0 : (reported?.completionTokens ?? countTextTokens(choicesText(body.choices)));
    if (slot.upstream.upstreamModel && slot.upstream.upstreamModel !== model.id && 'model' in body) body.model = model.id;
    const kind = finishReason === 'content_filter' ? 'moderation_refusal' : 'completed';
    return {
      outcome: finish(kind, {
        slot,
        httpStatus: response.statusCode,
        inputTokens: reported?.promptTokens,
        outputTokens,
        estimated: reported?.promptTokens === undefined || (request.operation !== 'embedding' && reported.completionTokens === undefined),
        failovers,
        ...(finishReason === undefined ? {} : { finishReason }),
      }),
      body,
      streamStarted: false,
    };
  }

  private pool(baseUrl: string): Pool {
    const origin = parsedBaseUrl(baseUrl).origin;
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, {
        pipelining: 1,
        keepAliveTimeout: this.options.keepAliveTimeoutMs ?? 30_000,
        connect: { timeout: this.options.connectTimeoutMs ?? 5_000 },
      });
      this.pools.set(origin, pool);
    }
    return pool;
  }
}

export function createInferenceAdapter(models: readonly ModelSpec[], options?: InferenceAdapterOptions): InferenceAdapter {
  return new InferenceAdapter(models, options);
}

/** Prompt tokens of a request body, for the reservation estimate and usage fallbacks. */
export function countPromptTokens(operation: Operation, body: Readonly<Record<string, unknown>>): number {
  switch (operation) {
    case 'chat':
      return Array.isArray(body.messages) ? countChatPromptTokens(body.messages.filter(isRecord) as ChatMessageLike[]) : 0;
    case 'completion':
      return countCompletionPromptTokens(body.prompt);
    case 'embedding':
      return countEmbeddingInputTokens(body.input);
  }
}

function upstreamBody(model: ModelSpec, slot: UpstreamSlot, request: InferenceRequest, streaming: boolean): Record<string, unknown> {
  const body: Record<string, unknown> = { ...request.body, model: slot.upstream.upstreamModel ?? model.id };
  if (streaming) {
    // Ask for usage so billing uses the upstream's count when it gives one.
    const asked = isRecord(request.body.stream_options) ? request.body.stream_options : {};
    body.stream_options = { ...asked, include_usage: true };
  }
  // Without a limit the upstream may generate past the reservation's cap.
  if (request.operation !== 'embedding' && body.max_tokens === undefined && body.max_completion_tokens === undefined) {
    body.max_tokens = model.maxOutputTokens;
  }
  return body;
}

function upstreamHeaders(slot: UpstreamSlot, streaming: boolean, requestId: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: streaming ? 'text/event-stream' : 'application/json',
  };
  if (slot.upstream.apiKey) headers.authorization = `Bearer ${slot.upstream.apiKey}`;
  if (requestId) headers['x-request-id'] = requestId;
  return headers;
}

function includeUsageAsked(streamOptions: unknown): boolean {
  return isRecord(streamOptions) && streamOptions.include_usage === true;
}

const connectFailureCodes = new Set(['ECONNREFUSED', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

// Only failures where the request cannot have reached the upstream: resending is then safe.
function isConnectFailure(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && connectFailureCodes.has(code);
}

function errorCode(error: unknown): string | undefined {
  if (!isRecord(error)) return undefined;
  if (typeof error.code === 'string') return error.code;
  return isRecord(error.cause) && typeof error.cause.code === 'string' ? error.cause.code : undefined;
}

function upstreamHttpError(status: number): ClientError {
  if (status === 429) return clientError(503, 'upstream_overloaded', 'The upstream is overloaded (HTTP 429); retry shortly.', 'upstream_error', 1);
  if (status === 408 || status === 504) return clientError(504, 'upstream_timeout', `The upstream timed out (HTTP ${status}).`);
  // The client's request was wrong for the model (context too long, bad parameter).
  if (status === 400 || status === 404 || status === 413 || status === 422) {
    return clientError(400, 'upstream_rejected', `The upstream rejected the request (HTTP ${status}).`, 'invalid_request_error');
  }
  return clientError(502, 'upstream_error', `The upstream failed (HTTP ${status}).`);
}

async function readModerationFlag(body: Dispatcher.ResponseData['body'], signal: AbortSignal | undefined): Promise<boolean> {
  let text = '';
  try {
    for await (const chunk of body) {
      text += Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
      if (text.length > maxErrorBodyBytes || signal?.aborted) break;
    }
  } catch {
    return false;
  }
  return isModerationError(text);
}

/** The base URL as it may be shown: no user, password, query or fragment. */
export function displayUrl(baseUrl: string): string {
  return parsedBaseUrl(baseUrl).display;
}

// Upstream base URLs are a handful, fixed by the models file: parse each once, not per request.
const parsedBaseUrls = new Map<string, { origin: string; pathname: string; display: string }>();
function parsedBaseUrl(baseUrl: string): { origin: string; pathname: string; display: string } {
  let parsed = parsedBaseUrls.get(baseUrl);
  if (!parsed) {
    const url = new URL(baseUrl);
    parsed = { origin: url.origin, pathname: url.pathname, display: `${url.origin}${url.pathname.replace(/\/+$/, '')}` };
    parsedBaseUrls.set(baseUrl, parsed);
  }
  return parsed;
}
