import type { Command } from '../events/metadata';
import type { MicroUsd } from '../money/money';
import type { IsoInstant } from '../time/instant';
import type { Operation } from './operation';

export type AddModel = Command<'AddModel', { readonly modelId: string; readonly operations: readonly Operation[]; readonly maxOutputTokens: bigint }>;
export type RetireModel = Command<'RetireModel', { readonly modelId: string }>;
export type SetPrice = Command<
  'SetPrice',
  {
    readonly modelId: string;
    readonly operation: Operation;
    readonly inputPerMillion: MicroUsd;
    readonly outputPerMillion: MicroUsd;
    /** micro-USD per audio second (transcription, translation); default 0 */
    readonly perAudioSecond?: MicroUsd;
    /** micro-USD per million input characters (speech); default 0 */
    readonly perMillionCharacters?: MicroUsd;
    /** when the price starts to apply; defaults to the command's `now` */
    readonly effectiveAt?: IsoInstant;
  }
>;

export type PriceBookCommand = AddModel | RetireModel | SetPrice;
