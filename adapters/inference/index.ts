export { InferenceAdapter, createInferenceAdapter, countPromptTokens, displayUrl } from './dispatch';
export type { DispatchOptions, InferenceAdapterOptions, InferenceRequest } from './dispatch';
export { CapacityTable } from './capacity';
export type { AcquireResult, Lease, UpstreamSlot } from './capacity';
export { loadModelsFile, parseModelsFile, modelsFileSchema, ModelsFileError, operations } from './models-file';
export type { ModelOperation, ModelSpec, ModelsFile, Operation, UpstreamSpec } from './models-file';
export type { ClientError, DispatchResult, InferenceOutcome, OutcomeKind, TokenUsage } from './outcome';
export { byteSink, dispatchGate, responseSink } from './sink';
export type { ByteSink, DispatchGate, StreamSink } from './sink';
export {
  countChatPromptTokens,
  countCompletionPromptTokens,
  countEmbeddingInputTokens,
  countTextTokens,
  warmUpTokenizer,
} from './tokens';
export { AudioAdapter, holdWhole, readAudioDuration, readAudioUsage, UploadFailed } from './audio';
export type { AudioDispatchResult, AudioFile, AudioOutcomeKind, ReportedAudioUsage, SpeechToTextOperation, SpeechToTextRequest } from './audio';
