import type { Router } from 'express';
import { formatUsd } from '../../../domain/money';
import {
  OPERATIONS,
  billingUnitOf,
  type BillingUnit,
  PRICE_BOOK_STREAM_ID,
  isRetiredAt,
  priceInForce,
  retirementOf,
  scheduledPrices,
  type ModelEntry,
  type Operation,
  type PriceBookState,
} from '../../../domain/price-book';
import type { ApiKeys } from '../../../src/api-keys';
import type { Ledger } from '../../../src/ledger';
import { authenticate } from '../auth';
import { modelNotFound, modelRetired } from '../openai/errors';

export interface CatalogueEntry {
  readonly model: string;
  readonly operation: string;
  readonly price_version: number;
  /** USD per million tokens, exact decimal strings (micro-USD precision) */
  readonly input_usd_per_million: string;
  readonly output_usd_per_million: string;
  /** what the operation is chiefly billed in */
  readonly unit: BillingUnit;
  /** transcription, translation: USD per second of audio */
  readonly usd_per_audio_second?: string;
  /** speech: USD per million input characters */
  readonly usd_per_million_characters?: string;
}

/** A price set to take effect later, shown beside today's. */
export interface ScheduledPriceEntry extends CatalogueEntry {
  readonly effective_at: string;
  /** raises the price in force before it (customers who used the model were told) */
  readonly increase: boolean;
}

/** What customers are told about a model: the extra fields of /v1/models (OpenAI clients ignore them). */
export interface ModelCard {
  readonly id: string;
  readonly description: string | null;
  readonly context_length: number | null;
  readonly licence: string | null;
  readonly model_rules: { readonly text: string; readonly url: string | null } | null;
  readonly status: 'preview' | 'available' | 'deprecated';
  readonly retires_at: string | null;
}

/** Every offered model and operation with the price in force at `at`. */
export function pricesInForce(book: PriceBookState, at: string): CatalogueEntry[] {
  const entries: CatalogueEntry[] = [];
  for (const model of [...book.models.values()].sort((a, b) => a.modelId.localeCompare(b.modelId))) {
    if (isRetiredAt(model, at)) continue;
    for (const operation of OPERATIONS) {
      const price = priceInForce(book, model.modelId, operation, at);
      if (!price.ok) continue;
      entries.push({
        model: model.modelId,
        operation,
        price_version: price.value.version,
        ...priceFields(operation, price.value),
      });
    }
  }
  return entries;
}

/** A price in the units its operation is billed in: tokens, and per audio second or per million characters for speech. */
function priceFields(
  operation: Operation,
  price: {
    readonly inputPerMillion: bigint;
    readonly outputPerMillion: bigint;
    readonly perAudioSecond?: bigint | undefined;
    readonly perMillionCharacters?: bigint | undefined;
  },
) {
  const unit = billingUnitOf(operation);
  return {
    input_usd_per_million: formatUsd(price.inputPerMillion),
    output_usd_per_million: formatUsd(price.outputPerMillion),
    unit,
    ...(unit === 'audio_second' ? { usd_per_audio_second: formatUsd(price.perAudioSecond ?? 0n) } : {}),
    ...(unit === 'character' ? { usd_per_million_characters: formatUsd(price.perMillionCharacters ?? 0n) } : {}),
  };
}

/** Prices that take effect after `at`, for models still on sale when they do. */
export function pricesScheduled(book: PriceBookState, at: string): ScheduledPriceEntry[] {
  return scheduledPrices(book, at)
    .filter((p) => {
      const model = book.models.get(p.modelId);
      return model !== undefined && !isRetiredAt(model, p.effectiveAt);
    })
    .map((p) => ({
      model: p.modelId,
      operation: p.operation,
      price_version: p.version,
      ...priceFields(p.operation, p),
      effective_at: p.effectiveAt,
      increase: p.increase === true,
    }));
}

export function modelCard(model: ModelEntry): ModelCard {
  const c = model.catalogue;
  return {
    id: model.modelId,
    description: c?.description ?? null,
    context_length: c?.contextLength ?? null,
    licence: c?.licence ?? null,
    model_rules: c ? { text: c.rulesText, url: c.rulesUrl } : null,
    status: c?.status ?? 'available',
    retires_at: c?.retiresAt ?? null,
  };
}

/** The models on sale at `at` (not retired, with a price in force), with their catalogue cards. */
export function modelsOnSale(book: PriceBookState, at: string): ModelCard[] {
  const offered = new Set(pricesInForce(book, at).map((e) => e.model));
  return [...offered].map((id) => modelCard(book.models.get(id)!));
}

/** GET /v1/models and /v1/models/{id} (any valid key, as OpenAI's) and GET /pricing (public). */
export function mountCatalogueRoutes(router: Router, deps: { ledger: Ledger; keys: ApiKeys; startedAt: Date; now?: () => Date }): void {
  const now = () => (deps.now?.() ?? new Date()).toISOString();
  const created = Math.floor(deps.startedAt.getTime() / 1000);
  const openAiModel = (card: ModelCard) => ({ object: 'model' as const, created, owned_by: 'tollgate' as const, ...card });

  router.get('/v1/models', authenticate(deps.keys, 'inference'), async (_req, res) => {
    const { state } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    res.json({ object: 'list', data: modelsOnSale(state, now()).map(openAiModel) });
  });

  // Model ids hold '/', e.g. meta-llama/Llama-3.1-8B-Instruct: the rest of the path is the id.
  router.get('/v1/models/*model', authenticate(deps.keys, 'inference'), async (req, res) => {
    const raw = (req.params as { model?: string[] | string }).model;
    const id = Array.isArray(raw) ? raw.join('/') : String(raw ?? '');
    const { state } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const at = now();
    const model = state.models.get(id);
    if (model && isRetiredAt(model, at)) throw modelRetired(id, retirementOf(model));
    const card = modelsOnSale(state, at).find((m) => m.id === id);
    if (!card) throw modelNotFound(id);
    res.json(openAiModel(card));
  });

  router.get('/pricing', async (_req, res) => {
    const { state } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const at = now();
    res.json({
      currency: 'USD',
      unit: 'per million tokens',
      as_of: at,
      prices: pricesInForce(state, at),
      scheduled: pricesScheduled(state, at),
      models: modelsOnSale(state, at),
    });
  });
}
