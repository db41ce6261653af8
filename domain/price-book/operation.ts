import { z } from 'zod';

/**
 * What a model is asked to do; each is priced separately. chat, completion and embedding are
 * billed per token; transcription and translation (speech to text) per audio second, speech
 * (text to speech) per input character, plus tokens where the upstream reports them.
 */
export const operationSchema = z.enum(['chat', 'completion', 'embedding', 'transcription', 'translation', 'speech']);
export type Operation = z.output<typeof operationSchema>;
export const OPERATIONS: readonly Operation[] = operationSchema.options;

/** The operations billed per token, served by /v1/chat/completions, /v1/completions and /v1/embeddings. */
export type TokenOperation = Extract<Operation, 'chat' | 'completion' | 'embedding'>;

/** The operations served by the /v1/audio routes. */
export type AudioOperation = Extract<Operation, 'transcription' | 'translation' | 'speech'>;
export const AUDIO_OPERATIONS: readonly AudioOperation[] = ['transcription', 'translation', 'speech'];
export function isAudioOperation(operation: Operation): operation is AudioOperation {
  return operation === 'transcription' || operation === 'translation' || operation === 'speech';
}

/**
 * The unit an operation is chiefly billed in: what /pricing, statements and charts show first.
 * Token prices still apply to any operation whose upstream reports tokens.
 */
export type BillingUnit = 'token' | 'audio_second' | 'character';
export function billingUnitOf(operation: Operation): BillingUnit {
  if (operation === 'transcription' || operation === 'translation') return 'audio_second';
  if (operation === 'speech') return 'character';
  return 'token';
}
