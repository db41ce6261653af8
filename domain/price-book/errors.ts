import type { MicroUsd } from '../money/money';
import type { IsoInstant } from '../time/instant';
import type { Operation } from './operation';

/** Every refusal of the price book decider and of its queries, by name. */
export type PriceBookError =
  | { readonly error: 'model_already_exists'; readonly modelId: string }
  | { readonly error: 'unknown_model'; readonly modelId: string }
  | { readonly error: 'model_retired'; readonly modelId: string; readonly retiredAt?: IsoInstant }
  /** a deprecated model must say when it retires, and only a deprecated one does */
  | { readonly error: 'retirement_date_required'; readonly modelId: string }
  | { readonly error: 'retirement_date_only_when_deprecated'; readonly modelId: string }
  | { readonly error: 'retirement_in_past'; readonly retiresAt: IsoInstant; readonly now: IsoInstant }
  /** customers are told of an increase at least `days` ahead: it may take effect at `earliest` */
  | { readonly error: 'price_increase_notice_too_short'; readonly effectiveAt: IsoInstant; readonly earliest: IsoInstant; readonly days: number }
  /** customers are told of a retirement at least `days` ahead: it may be at `earliest` */
  | { readonly error: 'retirement_notice_too_short'; readonly retiresAt: IsoInstant; readonly earliest: IsoInstant; readonly days: number }
  | { readonly error: 'operation_not_offered'; readonly modelId: string; readonly operation: Operation }
  | { readonly error: 'no_operations' }
  | { readonly error: 'max_output_tokens_not_positive'; readonly maxOutputTokens: bigint }
  | { readonly error: 'price_negative'; readonly inputPerMillion: MicroUsd; readonly outputPerMillion: MicroUsd }
  /** prices are never set retroactively: what was in force at any past instant stays true */
  | { readonly error: 'price_effective_in_past'; readonly effectiveAt: IsoInstant; readonly now: IsoInstant }
  /** query: nothing is in force yet for this model and operation at that instant */
  | { readonly error: 'no_price_in_force'; readonly modelId: string; readonly operation: Operation; readonly at: IsoInstant }
  | { readonly error: 'unknown_price_version'; readonly version: number };
