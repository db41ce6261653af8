import type { Router } from 'express';
import { formatUsd } from '../../../domain/money';
import { billingUnitOf, OPERATIONS, PRICE_BOOK_STREAM_ID, priceInForce, type BillingUnit, type PriceBookState } from '../../../domain/price-book';
import type { ApiKeys } from '../../../src/api-keys';
import type { Ledger } from '../../../src/ledger';
import { authenticate } from '../auth';

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

/** Every offered model and operation with the price in force at `at`. */
export function pricesInForce(book: PriceBookState, at: string): CatalogueEntry[] {
  const entries: CatalogueEntry[] = [];
  for (const model of [...book.models.values()].sort((a, b) => a.modelId.localeCompare(b.modelId))) {
    if (model.retired) continue;
    for (const operation of OPERATIONS) {
      const price = priceInForce(book, model.modelId, operation, at);
      if (!price.ok) continue;
      entries.push({
        model: model.modelId,
        operation,
        price_version: price.value.version,
        input_usd_per_million: formatUsd(price.value.inputPerMillion),
        output_usd_per_million: formatUsd(price.value.outputPerMillion),
        unit: billingUnitOf(operation),
        ...(billingUnitOf(operation) === 'audio_second' ? { usd_per_audio_second: formatUsd(price.value.perAudioSecond) } : {}),
        ...(billingUnitOf(operation) === 'character' ? { usd_per_million_characters: formatUsd(price.value.perMillionCharacters) } : {}),
      });
    }
  }
  return entries;
}

/** GET /v1/models (any valid key, as OpenAI's) and GET /pricing (public). */
export function mountCatalogueRoutes(router: Router, deps: { ledger: Ledger; keys: ApiKeys; startedAt: Date }): void {
  router.get('/v1/models', authenticate(deps.keys, 'inference'), async (_req, res) => {
    const { state } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const offered = new Set(pricesInForce(state, new Date().toISOString()).map((e) => e.model));
    res.json({
      object: 'list',
      data: [...offered].map((id) => ({ id, object: 'model', created: Math.floor(deps.startedAt.getTime() / 1000), owned_by: 'tollgate' })),
    });
  });

  router.get('/pricing', async (_req, res) => {
    const { state } = await deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const at = new Date().toISOString();
    res.json({ currency: 'USD', unit: 'per million tokens', as_of: at, prices: pricesInForce(state, at) });
  });
}
