import { match } from 'ts-pattern';
import { accept, reject, type Decider, type Decision } from '../decider/decision';
import { eventMetadataFrom } from '../events/metadata';
import { addMs, isBefore } from '../time/instant';
import type { PriceBookCommand } from './commands';
import type { PriceBookError } from './errors';
import type { PriceBookEvent } from './events';
import { initialPriceBookState, isRetiredAt, priceBefore, type PriceBookState } from './state';

const DAY_MS = 86_400_000;

export type PriceBookDecision = Decision<PriceBookEvent, PriceBookError>;

export function decidePriceBook(command: PriceBookCommand, state: PriceBookState): PriceBookDecision {
  const metadata = eventMetadataFrom(command.metadata);
  switch (command.type) {
    case 'AddModel': {
      const { modelId, operations, maxOutputTokens } = command.data;
      if (state.models.has(modelId)) return reject({ error: 'model_already_exists', modelId });
      if (operations.length === 0) return reject({ error: 'no_operations' });
      if (maxOutputTokens <= 0n) return reject({ error: 'max_output_tokens_not_positive', maxOutputTokens });
      return accept({ type: 'ModelAdded', data: { modelId, operations: [...new Set(operations)], maxOutputTokens }, metadata });
    }
    case 'RetireModel': {
      const { modelId } = command.data;
      const model = state.models.get(modelId);
      if (!model) return reject({ error: 'unknown_model', modelId });
      if (model.retired) return reject({ error: 'model_retired', modelId });
      return accept({ type: 'ModelRetired', data: { modelId }, metadata });
    }
    case 'DescribeModel': {
      const { modelId, status, retiresAt } = command.data;
      const model = state.models.get(modelId);
      if (!model) return reject({ error: 'unknown_model', modelId });
      if (isRetiredAt(model, command.metadata.now)) return reject({ error: 'model_retired', modelId });
      if (status === 'deprecated' && retiresAt === null) return reject({ error: 'retirement_date_required', modelId });
      if (status !== 'deprecated' && retiresAt !== null) return reject({ error: 'retirement_date_only_when_deprecated', modelId });
      if (retiresAt !== null && isBefore(retiresAt, command.metadata.now)) return reject({ error: 'retirement_in_past', retiresAt, now: command.metadata.now });
      // A retirement newly set, or brought forward, is announced ahead like a price increase.
      const { retirementNoticeDays, shortNoticeReason, ...described } = command.data;
      const previous = model.catalogue?.retiresAt ?? null;
      const sooner = retiresAt !== null && (previous === null || isBefore(retiresAt, previous));
      const days = retirementNoticeDays ?? 0;
      const reason = shortNoticeReason?.trim();
      const earliest = addMs(command.metadata.now, days * DAY_MS);
      const shortNotice = sooner && isBefore(retiresAt, earliest);
      if (shortNotice && !reason) return reject({ error: 'retirement_notice_too_short', retiresAt, earliest, days });
      return accept({ type: 'ModelDescribed', data: { ...described, ...(shortNotice && reason && { shortNoticeReason: reason }) }, metadata });
    }
    case 'SetPrice': {
      const { modelId, operation, inputPerMillion, outputPerMillion } = command.data;
      const effectiveAt = command.data.effectiveAt ?? command.metadata.now;
      const model = state.models.get(modelId);
      if (!model) return reject({ error: 'unknown_model', modelId });
      if (isRetiredAt(model, command.metadata.now)) return reject({ error: 'model_retired', modelId });
      if (!model.operations.includes(operation)) return reject({ error: 'operation_not_offered', modelId, operation });
      const perAudioSecond = command.data.perAudioSecond ?? 0n;
      const perMillionCharacters = command.data.perMillionCharacters ?? 0n;
      if (inputPerMillion < 0n || outputPerMillion < 0n || perAudioSecond < 0n || perMillionCharacters < 0n)
        return reject({ error: 'price_negative', inputPerMillion, outputPerMillion });
      if (isBefore(effectiveAt, command.metadata.now)) return reject({ error: 'price_effective_in_past', effectiveAt, now: command.metadata.now });
      // An increase over what would otherwise be in force then is announced ahead; a first price or a decrease is not.
      const before = priceBefore(state, modelId, operation, effectiveAt);
      const increase =
        before !== undefined &&
        (inputPerMillion > before.inputPerMillion ||
          outputPerMillion > before.outputPerMillion ||
          perAudioSecond > (before.perAudioSecond ?? 0n) ||
          perMillionCharacters > (before.perMillionCharacters ?? 0n));
      const days = command.data.increaseNoticeDays ?? 0;
      const reason = command.data.shortNoticeReason?.trim();
      const earliest = addMs(command.metadata.now, days * DAY_MS);
      const shortNotice = increase && isBefore(effectiveAt, earliest);
      if (shortNotice && !reason) return reject({ error: 'price_increase_notice_too_short', effectiveAt, earliest, days });
      return accept({
        type: 'PriceSet',
        data: {
          version: state.lastVersion + 1,
          modelId,
          operation,
          inputPerMillion,
          outputPerMillion,
          // Written only when set, so token prices keep the shape they always had.
          ...(perAudioSecond > 0n ? { perAudioSecond } : {}),
          ...(perMillionCharacters > 0n ? { perMillionCharacters } : {}),
          effectiveAt,
          ...(increase && { increase: true }),
          ...(shortNotice && reason && { shortNoticeReason: reason }),
        },
        metadata,
      });
    }
    default:
      return command satisfies never;
  }
}

export function evolvePriceBook(state: PriceBookState, event: PriceBookEvent): PriceBookState {
  return match(event)
    .with({ type: 'ModelAdded' }, ({ data }) => ({
      ...state,
      models: new Map(state.models).set(data.modelId, { ...data, retired: false }),
    }))
    .with({ type: 'ModelRetired' }, ({ data, metadata }) => {
      const model = state.models.get(data.modelId);
      return model ? { ...state, models: new Map(state.models).set(data.modelId, { ...model, retired: true, retiredAt: metadata.occurredAt }) } : state;
    })
    .with({ type: 'ModelDescribed' }, ({ data }) => {
      const model = state.models.get(data.modelId);
      const { modelId: _id, ...catalogue } = data;
      return model ? { ...state, models: new Map(state.models).set(data.modelId, { ...model, catalogue }) } : state;
    })
    .with({ type: 'PriceSet' }, ({ data }) => ({
      ...state,
      prices: new Map(state.prices).set(data.version, { ...data }),
      lastVersion: Math.max(state.lastVersion, data.version),
    }))
    .exhaustive();
}

export const priceBookDecider: Decider<PriceBookCommand, PriceBookState, PriceBookEvent, PriceBookError> = {
  decide: decidePriceBook,
  evolve: evolvePriceBook,
  initialState: initialPriceBookState,
};

/** The single stream holding the price book. */
export const PRICE_BOOK_STREAM_ID = 'price-book';
