import type { MicroUsd } from '../money/money';
import type { IsoInstant } from '../time/instant';
import type { Operation } from './operation';

/** Every refusal of the price book decider and of its queries, by name. */
export type PriceBookError =
  | { readonly error: 'model_already_exists'; readonly modelId: string }
  | { readonly error: 'unknown_model'; readonly modelId: string }
  | { readonly error: 'model_retired'; readonly modelId: string }
  | { readonly error: 'operation_not_offered'; readonly modelId: string; readonly operation: Operation }
  | { readonly error: 'no_operations' }
  | { readonly error: 'max_output_tokens_not_positive'; readonly maxOutputTokens: bigint }
  | { readonly error: 'price_negative'; readonly inputPerMillion: MicroUsd; readonly outputPerMillion: MicroUsd }
  /** prices are never set retroactively: what was in force at any past instant stays true */
  | { readonly error: 'price_effective_in_past'; readonly effectiveAt: IsoInstant; readonly now: IsoInstant }
  /** query: nothing is in force yet for this model and operation at that instant */
  | { readonly error: 'no_price_in_force'; readonly modelId: string; readonly operation: Operation; readonly at: IsoInstant }
  | { readonly error: 'unknown_price_version'; readonly version: number };
