import type { Operation } from './models-file';

/**
 * What a dispatch reports to the gateway. Metadata only: no prompt, no completion, no
 * upstream error text, no credentials, so every field may be logged and stored in events.
 */

export type OutcomeKind =
  /** The upstream finished (finish_reason or [DONE]). */
  | 'completed'
  /** The upstream answered with an HTTP error, an error event, or an unusable body. */
  | 'upstream_error'
  /** No upstream of the model accepted a connection (or the others were full). */
  | 'upstream_unavailable'
  /** The stream stopped without finish_reason or [DONE]: upstream crash, reset or stall. */
  | 'cut'
  /** The gateway aborted (the client went away); the upstream request was cancelled. */
  | 'client_disconnected'
  /** finish_reason "content_filter", or an upstream error whose code/type names moderation. */
  | 'moderation_refusal';

export interface TokenUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** True when any count was made locally (tiktoken) instead of reported by the upstream. */
  readonly estimated: boolean;
}

export interface InferenceOutcome {
  readonly kind: OutcomeKind;
  readonly operation: Operation;
  readonly model: string;
  /** Status the upstream answered with; null when none answered. */
  readonly httpStatus: number | null;
  readonly usage: TokenUsage;
  /** Base URL of the upstream that served (or last failed) the request, without credentials. */
  readonly upstream: string | null;
  readonly latencyMs: number;
  /** Streams only: dispatch start to the first relayed token. */
  readonly timeToFirstTokenMs?: number;
  /** Output tokens the upstream produced (reported, or counted from what was relayed). */
  readonly tokensProduced: number;
  /** Upstreams that refused a connection before this one answered. */
  readonly failovers: number;
  readonly finishReason?: string;
}

/** OpenAI's error body, for answering the client when nothing has been relayed yet. */
export interface ClientError {
  readonly status: number;
  readonly body: {
    readonly error: { readonly message: string; readonly type: string; readonly param: null; readonly code: string };
  };
  /** Seconds, for a Retry-After header (503 when every upstream is down). */
  readonly retryAfterSeconds?: number;
}

export interface DispatchResult {
  readonly outcome: InferenceOutcome;
  /** Non-streaming success (completed or moderation_refusal): the upstream JSON to relay. */
  readonly body?: unknown;
  /** When the client has received nothing yet and the request failed: what to answer. */
  readonly clientError?: ClientError;
  /** Whether the sink was opened (SSE headers out); if so, only end the response. */
  readonly streamStarted: boolean;
}

export function clientError(status: number, code: string, message: string, type = 'upstream_error', retryAfterSeconds?: number): ClientError {
  return {
    status,
    body: { error: { message, type, param: null, code } },
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  };
}
