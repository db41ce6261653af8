import { ok, type Result } from '../decider/decision';
import type { MicroUsd } from '../money/money';
import { toEpochMs, type IsoInstant } from '../time/instant';
import type { PriceBookError } from './errors';
import type { Operation } from './operation';

export interface ModelEntry {
  readonly modelId: string;
  readonly operations: readonly Operation[];
  readonly maxOutputTokens: bigint;
  readonly retired: boolean;
}

export interface PriceVersion {
  readonly version: number;
  readonly modelId: string;
  readonly operation: Operation;
  readonly inputPerMillion: MicroUsd;
  readonly outputPerMillion: MicroUsd;
  readonly perAudioSecond?: MicroUsd | undefined;
  readonly perMillionCharacters?: MicroUsd | undefined;
  readonly effectiveAt: IsoInstant;
}

export interface PriceBookState {
  readonly models: ReadonlyMap<string, ModelEntry>;
  /** every price ever set, by version: settlements look up old versions */
  readonly prices: ReadonlyMap<number, PriceVersion>;
  readonly lastVersion: number;
}

export function initialPriceBookState(): PriceBookState {
  return { models: new Map(), prices: new Map(), lastVersion: 0 };
}

export interface PriceInForce {
  readonly version: number;
  readonly inputPerMillion: MicroUsd;
  readonly outputPerMillion: MicroUsd;
  /** micro-USD per audio second (0 when not priced so) */
  readonly perAudioSecond: MicroUsd;
  /** micro-USD per million input characters (0 when not priced so) */
  readonly perMillionCharacters: MicroUsd;
}

/** The model, if it exists and is not retired; the check a new request goes through. */
export function offeredModel(state: PriceBookState, modelId: string, operation: Operation): Result<ModelEntry, PriceBookError> {
  const model = state.models.get(modelId);
  if (!model) return { ok: false, error: { error: 'unknown_model', modelId } };
  if (model.retired) return { ok: false, error: { error: 'model_retired', modelId } };
  if (!model.operations.includes(operation)) return { ok: false, error: { error: 'operation_not_offered', modelId, operation } };
  return ok(model);
}

/**
 * The price that applies to a request admitted at `at`: of the prices for this model and
 * operation already effective, the one that became effective last (the higher version on a tie).
 */
export function priceInForce(state: PriceBookState, modelId: string, operation: Operation, at: IsoInstant): Result<PriceInForce, PriceBookError> {
  const model = offeredModel(state, modelId, operation);
  if (!model.ok) return model;
  const atMs = toEpochMs(at);
  let best: PriceVersion | undefined;
  for (const p of state.prices.values()) {
    if (p.modelId !== modelId || p.operation !== operation) continue;
    const eff = toEpochMs(p.effectiveAt);
    if (eff > atMs) continue;
    if (!best || eff > toEpochMs(best.effectiveAt) || (eff === toEpochMs(best.effectiveAt) && p.version > best.version)) best = p;
  }
  if (!best) return { ok: false, error: { error: 'no_price_in_force', modelId, operation, at } };
  return ok({
    version: best.version,
    inputPerMillion: best.inputPerMillion,
    outputPerMillion: best.outputPerMillion,
    perAudioSecond: best.perAudioSecond ?? 0n,
    perMillionCharacters: best.perMillionCharacters ?? 0n,
  });
}

/** A price by version, whatever has changed since: what settlement charges. */
export function priceByVersion(state: PriceBookState, version: number): Result<PriceVersion, PriceBookError> {
  const p = state.prices.get(version);
  return p ? ok(p) : { ok: false, error: { error: 'unknown_price_version', version } };
}
