import { type AccountError, type RequestMetadata } from '../../domain/account';
import type { RequestOutcome, TokenUsage } from '../../domain/charge-policy';
import { estimateReservation } from '../../domain/estimate';
import type { MicroUsd } from '../../domain/money';
import { type AudioOperation, type PriceInForce } from '../../domain/price-book';
import {
  countTextTokens,
  readAudioDuration,
  UploadFailed,
  type AudioAdapter,
  type AudioDispatchResult,
  type AudioFile,
  type ByteSink,
  type ClientError,
  type SpeechToTextOperation,
} from '../../adapters/inference';
import type { VerifiedKey } from '../api-keys';
import type { HistoricalCosts } from '../historical-costs';
import { modelInForce, overranOutcome, placeReservation, serveReserved, type ModelRefusal, type ReservationDeps } from './reservation';

/**
 * The audio use case (/v1/audio/transcriptions, /translations, /speech): the same gates,
 * reservation, dispatch window and settlement as chat (src/inference/reservation.ts: the key's
 * allowlist and spend limit, the charge policy, the request log), priced in other units. Transcription and translation are priced per audio
 * second, the duration read from the file's header before anything is reserved; speech per
 * million input characters. Token prices apply where the upstream reports tokens. Settled on the
 * upstream's reported usage where it gives one, else on the measured quantity, marked estimated.
 */
export interface ServeAudioDeps extends ReservationDeps {
  readonly audio: AudioAdapter;
  /** the historical average per model and operation, shared by all instances */
  readonly historicalCosts: Pick<HistoricalCosts, 'historicalAverage'>;
  /** added to every estimate, in basis points (1000 = +10%) */
  readonly marginBasisPoints: bigint;
}

/** Defaults for the models file's per-model limits. */
export const DEFAULT_MAX_AUDIO_SECONDS = 1_800;
export const DEFAULT_MAX_INPUT_CHARACTERS = 4_096;

/**
 * Audio input tokens a second, for token-priced speech to text (gpt-4o-transcribe style) before
 * the upstream reports its count: OpenAI prices gpt-4o-transcribe at $6 per million audio input
 * tokens and about $0.006 a minute, so 1,000 tokens a minute, 16.7 a second, taken up to 17. The
 * reservation holds this many input tokens for the file's duration (plus the output cap); the
 * settlement uses the upstream's reported tokens, and this estimate only when it reports none.
 * Rate limits count the same estimate as the request's tokens.
 */
export const AUDIO_TOKENS_PER_SECOND = 17;

/** The estimated audio input tokens of `seconds` of audio, rounded up. */
export function estimatedAudioTokens(seconds: number): number {
  return Math.ceil(seconds * AUDIO_TOKENS_PER_SECOND);
}

export type AudioInput =
  | {
      readonly operation: SpeechToTextOperation;
      readonly key: VerifiedKey;
      readonly model: string;
      readonly file: AudioFile;
      /** the form's other fields, sent on as they came */
      readonly fields: ReadonlyArray<readonly [string, string]>;
      readonly stream: boolean;
    }
  | {
      readonly operation: 'speech';
      readonly key: VerifiedKey;
      readonly model: string;
      /** the validated JSON body */
      readonly body: Readonly<Record<string, unknown>> & { readonly input: string };
    };

export type AudioRefusal =
  | ModelRefusal
  | { readonly kind: 'unreadable_audio' }
  /** the upload failed before anything was reserved (over the limit, broken off, a bad field after the file) */
  | { readonly kind: 'upload_failed'; readonly failure: UploadFailed }
  | { readonly kind: 'audio_too_long'; readonly seconds: number; readonly maxSeconds: number }
  | { readonly kind: 'input_too_long'; readonly characters: number; readonly maxCharacters: number }
  | { readonly kind: 'at_capacity'; readonly retryAfterSeconds: number }
  | { readonly kind: 'reservation_refused'; readonly error: AccountError; readonly needed: MicroUsd; readonly maximumCost: MicroUsd };

export type AudioAnswer =
  | { readonly kind: 'end_stream' }
  | { readonly kind: 'timed_out'; readonly maxRequestDurationMs: number }
  | { readonly kind: 'client_error'; readonly error: ClientError }
  | { readonly kind: 'body'; readonly contentType: string; readonly bytes: Uint8Array }
  /** the upload failed mid-stream: the upstream request was aborted, the reservation released */
  | { readonly kind: 'upload_failed'; readonly failure: UploadFailed }
  | { readonly kind: 'failed' };

/** The route's side of one audio request. */
export interface AudioExchange {
  readonly requestId: string;
  annotate(facts: { model?: string }): void;
  /**
   * rate limits: one request, and `tokens` against tokens-per-minute limits (speech to text: the
   * audio's estimated input tokens, see AUDIO_TOKENS_PER_SECOND; speech: the input's text tokens).
   * Throws the route's refusal.
   */
  admit(tokens: number): void;
  /** the token count admitted, corrected once the upstream reported its own */
  reconcile(estimated: number, actual: number): void;
  sink(): ByteSink;
  onClientGone(listener: () => void): () => void;
  holdLog(): () => void;
  answer(answer: AudioAnswer): void;
}

/** Input characters as a person counts them: code points, not UTF-16 units. */
export function countCharacters(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

export async function serveAudio(deps: ServeAudioDeps, input: AudioInput, exchange: AudioExchange): Promise<AudioRefusal | undefined> {
  const { operation, key, model } = input;
  const gate = await modelInForce(deps, key, model, operation);
  if (!gate.ok) return gate.refusal;
  const { price, book, spec } = gate.value;
  exchange.annotate({ model });

  // The measured quantity, before anything is reserved.
  let audioMilliseconds = 0n;
  let measuredSeconds = 0;
  let characters = 0;
  let file: AudioFile | undefined;
  // What the rate limits count as this request's tokens.
  let admittedTokens: number;
  if (input.operation === 'speech') {
    characters = countCharacters(input.body.input);
    const maxCharacters = spec.maxInputCharacters ?? DEFAULT_MAX_INPUT_CHARACTERS;
    if (characters > maxCharacters) return { kind: 'input_too_long', characters, maxCharacters };
    admittedTokens = countTextTokens(input.body.input);
  } else {
    // A streamed file's duration from its header, before anything is reserved.
    const duration = await readAudioDuration(input.file);
    if (!duration.ok) return duration.failure ? { kind: 'upload_failed', failure: duration.failure } : { kind: 'unreadable_audio' };
    file = duration.file;
    measuredSeconds = duration.seconds;
    const maxSeconds = spec.maxAudioSeconds ?? DEFAULT_MAX_AUDIO_SECONDS;
    if (duration.seconds > maxSeconds) return { kind: 'audio_too_long', seconds: duration.seconds, maxSeconds };
    audioMilliseconds = BigInt(Math.ceil(duration.seconds * 1_000));
    admittedTokens = estimatedAudioTokens(duration.seconds);
  }

  exchange.admit(admittedTokens);

  // Speech to text may also be token-priced (gpt-4o-transcribe style): its text output is capped
  // like chat's, and its estimated audio input tokens are held too.
  const maxOutputTokens = input.operation === 'speech' ? 0n : BigInt(Math.min(Number(book.models.get(model)!.maxOutputTokens), spec.maxOutputTokens));
  const audioTokens = input.operation === 'speech' || price.inputPerMillion === 0n ? 0n : BigInt(estimatedAudioTokens(measuredSeconds));
  const { amount, maximumCost } = estimateReservation({
    promptTokens: audioTokens,
    maxOutputTokens: price.outputPerMillion > 0n ? maxOutputTokens : 0n,
    audioMilliseconds,
    inputCharacters: BigInt(characters),
    price,
    historicalAverage: deps.historicalCosts.historicalAverage(model, operation),
    marginBasisPoints: deps.marginBasisPoints,
  });
  const placement = await placeReservation(deps, { key, model, operation, amount, price, requestId: exchange.requestId });
  if (!placement.ok) {
    if (placement.refusal.kind !== 'reservation_refused') return placement.refusal;
    return { kind: 'reservation_refused', error: placement.refusal.error, needed: amount, maximumCost };
  }
  const { placed } = placement;

  const streamed = input.operation === 'speech' || input.stream;
  const logged = { accountId: key.accountId, keyId: key.keyId, model, operation: operation as AudioOperation, stream: streamed };
  const fail = () => exchange.answer({ kind: 'failed' });
  await serveReserved(deps, { ...exchange, requestId: exchange.requestId, fail }, placed, logged, async (window) => {
    const options = { signal: window.signal, requestId: exchange.requestId, sink: exchange.sink() };
    const result =
      input.operation === 'speech'
        ? await deps.audio.speak(placed.lease, input.body, options)
        : await deps.audio.transcribe(placed.lease, { operation: input.operation, file: file!, fields: input.fields, stream: input.stream }, options);
    const usage = input.operation === 'speech' ? speechUsage(result, characters) : speechToTextUsage(result, measuredSeconds, audioMilliseconds, price);
    let outcome = toAudioOutcome(operation, result, usage, window.signal.aborted);
    if (window.overran()) outcome = overranOutcome(outcome);
    if (result.reported?.kind === 'tokens') exchange.reconcile(admittedTokens, result.reported.inputTokens + result.reported.outputTokens);
    if (result.kind === 'upload_failed') exchange.answer({ kind: 'upload_failed', failure: result.uploadFailure ?? new UploadFailed('broken_off') });
    // An upstream cut mid-stream cuts the client's answer too (the connection is reset), so a
    // client never takes truncated audio or events for a whole answer.
    else if (result.streamStarted) exchange.answer(result.kind === 'cut' ? { kind: 'failed' } : { kind: 'end_stream' });
    else if (window.overran() && !result.clientError && result.body === undefined)
      exchange.answer({ kind: 'timed_out', maxRequestDurationMs: deps.maxRequestDurationMs ?? 0 });
    else if (result.clientError) exchange.answer({ kind: 'client_error', error: result.clientError });
    else if (result.body) exchange.answer({ kind: 'body', contentType: result.body.contentType, bytes: result.body.bytes });
    else exchange.answer({ kind: 'end_stream' });
    deps.metrics.observeUpstreamLatency(model, result.latencyMs);
    const request: RequestMetadata = {
      upstream: result.upstream,
      httpStatus: result.httpStatus,
      stream: streamed,
      latencyMs: result.latencyMs,
      timeToFirstTokenMs: result.timeToFirstByteMs ?? null,
    };
    return { outcome, request };
  });
  return undefined;
}

/**
 * Transcription and translation: the upstream's reported duration (never more than the file's own
 * duration rounded up to the whole second, the most an honest upstream reports) or its reported
 * tokens; else the duration measured from the header, marked estimated, and for a model priced
 * by the token only (no per-second price) the audio's estimated input tokens with it
 * (AUDIO_TOKENS_PER_SECOND): a token-priced request the upstream reported nothing for (cut short
 * by its client, or answered without usage) is charged for the audio it took in.
 */
export function speechToTextUsage(
  result: Pick<AudioDispatchResult, 'reported'>,
  measuredSeconds: number,
  measuredMilliseconds: bigint,
  price: Pick<PriceInForce, 'inputPerMillion' | 'perAudioSecond'>,
): TokenUsage {
  const reported = result.reported;
  if (reported?.kind === 'tokens') {
    return { inputTokens: BigInt(reported.inputTokens), outputTokens: BigInt(reported.outputTokens), estimated: false };
  }
  if (reported?.kind === 'duration') {
    const ceilingMs = Math.ceil(measuredSeconds) * 1_000;
    const reportedMs = Math.ceil(reported.seconds * 1_000);
    return { inputTokens: 0n, outputTokens: 0n, estimated: false, audioMilliseconds: BigInt(Math.min(reportedMs, ceilingMs)) };
  }
  const tokenPriced = price.perAudioSecond === 0n && price.inputPerMillion > 0n;
  const inputTokens = tokenPriced ? BigInt(estimatedAudioTokens(measuredSeconds)) : 0n;
  return { inputTokens, outputTokens: 0n, estimated: true, audioMilliseconds: measuredMilliseconds };
}

/**
 * Speech: the input's characters (upstreams report no usage for speech: measured, so estimated).
 * Cut short (the client left, or the upstream failed mid-audio), the characters in proportion to
 * the audio relayed of the length the upstream declared (content-length), rounded up. Without a
 * declared length the share cannot be measured: a client that leaves is charged all of them (it
 * chose to stop an answer the upstream was producing in full; the gateway cannot tell how much
 * was left), while an upstream that fails is not charged at all (see toAudioOutcome).
 */
export function speechUsage(result: Pick<AudioDispatchResult, 'kind' | 'bytesRelayed' | 'declaredBytes'>, characters: number): TokenUsage {
  let charged = BigInt(characters);
  if (result.kind !== 'completed' && result.declaredBytes !== undefined && result.bytesRelayed < result.declaredBytes) {
    const part = BigInt(characters) * BigInt(result.bytesRelayed);
    const whole = BigInt(result.declaredBytes);
    charged = (part + whole - 1n) / whole;
  }
  return { inputTokens: 0n, outputTokens: 0n, estimated: true, inputCharacters: charged };
}

function toAudioOutcome(operation: AudioOperation, result: AudioDispatchResult, usage: TokenUsage, clientLeft: boolean): RequestOutcome {
  switch (result.kind) {
    case 'completed':
      return clientLeft ? { kind: 'completed_after_disconnect', usage } : { kind: 'completed', usage };
    case 'client_disconnected':
      // The upstream was cancelled: what it produced so far (see speechUsage) is charged.
      return { kind: 'client_disconnected', producedSoFar: usage };
    case 'cut':
      // Speech cut by its upstream after some audio went out, its length declared: the share
      // relayed is charged as a client disconnect is (see speechUsage). Without a declared length
      // the share cannot be measured, and the failure is not the customer's: released.
      if (operation === 'speech' && result.streamStarted && result.declaredBytes !== undefined) return { kind: 'upstream_error', tokens: usage };
      return { kind: 'upstream_error', tokens: null };
    case 'upload_failed':
      // The upstream never had the whole file: nothing was produced, nothing is charged.
      return { kind: 'upload_incomplete' };
    case 'upstream_error':
    case 'upstream_unavailable':
      // Released by the charge policy: no output the customer can use.
      return { kind: 'upstream_error', tokens: null };
  }
}
