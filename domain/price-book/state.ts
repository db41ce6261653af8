import { ok, type Result } from '../decider/decision';
import type { MicroUsd } from '../money/money';
import { toEpochMs, type IsoInstant } from '../time/instant';
import type { PriceBookError } from './errors';
import type { ModelStatus } from './events';
import type { Operation } from './operation';

export interface ModelEntry {
  readonly modelId: string;
  readonly operations: readonly Operation[];
  readonly maxOutputTokens: bigint;
  readonly retired: boolean;
  /** when it was retired by RetireModel (the event's time) */
  readonly retiredAt?: IsoInstant;
  readonly catalogue?: ModelCatalogueEntry;
}

/** What customers are told about a model (ModelDescribed). */
export interface ModelCatalogueEntry {
  readonly description: string;
  readonly contextLength: number;
  readonly licence: string;
  readonly rulesText: string;
  readonly rulesUrl: string | null;
  readonly status: ModelStatus;
  readonly retiresAt: IsoInstant | null;
}

/** The instant the model stops being sold, if it is retired or scheduled to retire. */
export function retirementOf(model: ModelEntry): IsoInstant | undefined {
  return model.retiredAt ?? model.catalogue?.retiresAt ?? undefined;
}

/** True when the model is retired at `at`: retired outright, or past its scheduled retirement. */
export function isRetiredAt(model: ModelEntry, at: IsoInstant | undefined): boolean {
  if (model.retired) return true;
  const retiresAt = model.catalogue?.retiresAt;
  return retiresAt != null && at !== undefined && toEpochMs(retiresAt) <= toEpochMs(at);
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
  /** raised the price in force before it: announced to the model's recent users */
  readonly increase?: boolean;
  readonly shortNoticeReason?: string;
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

/** The model, if it exists and is not retired (at `at`); the check a new request goes through. */
export function offeredModel(state: PriceBookState, modelId: string, operation: Operation, at?: IsoInstant): Result<ModelEntry, PriceBookError> {
  const model = state.models.get(modelId);
  if (!model) return { ok: false, error: { error: 'unknown_model', modelId } };
  if (isRetiredAt(model, at)) {
    const retiredAt = retirementOf(model);
    return { ok: false, error: { error: 'model_retired', modelId, ...(retiredAt !== undefined && { retiredAt }) } };
  }
  if (!model.operations.includes(operation)) return { ok: false, error: { error: 'operation_not_offered', modelId, operation } };
  return ok(model);
}

/**
 * The price that applies to a request admitted at `at`: of the prices for this model and
 * operation already effective, the one that became effective last (the higher version on a tie).
 */
export function priceInForce(state: PriceBookState, modelId: string, operation: Operation, at: IsoInstant): Result<PriceInForce, PriceBookError> {
  const model = offeredModel(state, modelId, operation, at);
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

/**
 * The price that would be in force at `at` for this model and operation, had nothing been
 * scheduled from `at` on: what a new price at `at` is compared with to tell an increase.
 */
export function priceBefore(state: PriceBookState, modelId: string, operation: Operation, at: IsoInstant): PriceVersion | undefined {
  const atMs = toEpochMs(at);
  let best: PriceVersion | undefined;
  for (const p of state.prices.values()) {
    if (p.modelId !== modelId || p.operation !== operation) continue;
    const eff = toEpochMs(p.effectiveAt);
    if (eff > atMs) continue;
    if (!best || eff > toEpochMs(best.effectiveAt) || (eff === toEpochMs(best.effectiveAt) && p.version > best.version)) best = p;
  }
  return best;
}

/** Prices set to take effect after `now`, oldest effective date first: what customers are told is coming. */
export function scheduledPrices(state: PriceBookState, now: IsoInstant): PriceVersion[] {
  const nowMs = toEpochMs(now);
  return [...state.prices.values()]
    .filter((p) => toEpochMs(p.effectiveAt) > nowMs)
    .sort((a, b) => toEpochMs(a.effectiveAt) - toEpochMs(b.effectiveAt) || a.version - b.version);
}
