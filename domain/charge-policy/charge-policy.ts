import { match, P } from 'ts-pattern';
import type { ReleaseReason, SettledOutcome } from './outcome-names';

export interface TokenUsage {
  readonly inputTokens: bigint;
  readonly outputTokens: bigint;
  /** true when counted locally because the upstream reported nothing */
  readonly estimated: boolean;
  /** seconds of audio in milliseconds (transcription, translation) */
  readonly audioMilliseconds?: bigint;
  /** input characters (speech) */
  readonly inputCharacters?: bigint;
}

/** How a request ended, as the gateway saw it. */
export type RequestOutcome =
  /** rejected before dispatch (bad body, unknown model, ...): no reservation was ever placed */
  | { readonly kind: 'malformed' }
  /** our own fault before or while dispatching */
  | { readonly kind: 'gateway_error' }
  /** the client's upload failed mid-stream (over the size limit, broken off): the upstream request was aborted before it had the whole input */
  | { readonly kind: 'upload_incomplete' }
  /** the upstream failed; `tokens` is what it produced before failing, if it said */
  | { readonly kind: 'upstream_error'; readonly tokens: TokenUsage | null }
  /** the upstream refused on moderation grounds; `reported` is what it reports having processed */
  | { readonly kind: 'moderation_refusal'; readonly reported: TokenUsage | null }
  /** the client left mid-stream; the upstream was cancelled to free the GPU */
  | { readonly kind: 'client_disconnected'; readonly producedSoFar: TokenUsage }
  /** the gateway ended it at its maximum request duration and cancelled the upstream */
  | { readonly kind: 'max_duration_reached'; readonly producedSoFar: TokenUsage }
  /** the upstream finished after the client left (it could not be cancelled in time) */
  | { readonly kind: 'completed_after_disconnect'; readonly usage: TokenUsage }
  | { readonly kind: 'completed'; readonly usage: TokenUsage };

export type ChargeDecision =
  | { readonly decision: 'no_reservation' }
  | { readonly decision: 'release'; readonly reason: ReleaseReason }
  | { readonly decision: 'settle'; readonly usage: TokenUsage; readonly outcome: SettledOutcome };

/**
 * Nothing the customer received: no output tokens and, for speech, no share of the audio relayed
 * (speech's usage on an upstream error holds the characters whose audio was relayed, see
 * src/inference/serve-audio.ts speechUsage).
 */
const noOutput = { outputTokens: 0n, inputCharacters: P.optional(0n) } as const;

/**
 * What a request is charged (DESIGN.md "What is charged"). One exhaustive match: a new
 * outcome does not compile until someone decides how it is charged.
 *
 * An upstream error is charged only when the upstream reports output tokens: prompt
 * processing alone is not billed for a request that produced nothing the customer received.
 * Speech cut by its upstream after some audio went out is charged, like a client disconnect, for
 * the characters whose audio was relayed.
 */
export function chargeFor(outcome: RequestOutcome): ChargeDecision {
  return match<RequestOutcome, ChargeDecision>(outcome)
    .with({ kind: 'malformed' }, () => ({ decision: 'no_reservation' }))
    .with({ kind: 'gateway_error' }, () => ({ decision: 'release', reason: 'gateway_error' }))
    .with({ kind: 'upload_incomplete' }, () => ({ decision: 'release', reason: 'upload_incomplete' }))
    .with({ kind: 'upstream_error', tokens: P.union(null, noOutput) }, () => ({ decision: 'release', reason: 'upstream_error_no_tokens' }))
    .with({ kind: 'upstream_error', tokens: P.nonNullable }, ({ tokens }) => ({ decision: 'settle', usage: tokens, outcome: 'upstream_error' }))
    .with({ kind: 'moderation_refusal', reported: null }, () => ({ decision: 'release', reason: 'moderation_refusal_no_tokens_reported' }))
    .with({ kind: 'moderation_refusal', reported: P.nonNullable }, ({ reported }) => ({
      decision: 'settle',
      usage: reported,
      outcome: 'moderation_refusal',
    }))
    .with({ kind: 'client_disconnected' }, ({ producedSoFar }) => ({ decision: 'settle', usage: producedSoFar, outcome: 'client_disconnected' }))
    .with({ kind: 'max_duration_reached' }, ({ producedSoFar }) => ({ decision: 'settle', usage: producedSoFar, outcome: 'max_duration_reached' }))
    .with({ kind: 'completed_after_disconnect' }, ({ usage }) => ({ decision: 'settle', usage, outcome: 'completed_after_disconnect' }))
    .with({ kind: 'completed' }, ({ usage }) => ({ decision: 'settle', usage, outcome: 'completed' }))
    .exhaustive();
}
