import type { Command } from '../events/metadata';
import type { MicroUsd } from '../money/money';
import type { IsoInstant } from '../time/instant';
import type { ModelStatus } from './events';
import type { Operation } from './operation';

export type AddModel = Command<'AddModel', { readonly modelId: string; readonly operations: readonly Operation[]; readonly maxOutputTokens: bigint }>;
export type RetireModel = Command<'RetireModel', { readonly modelId: string }>;
export type DescribeModel = Command<
  'DescribeModel',
  {
    readonly modelId: string;
    readonly description: string;
    readonly contextLength: number;
    readonly licence: string;
    readonly rulesText: string;
    readonly rulesUrl: string | null;
    readonly status: ModelStatus;
    readonly retiresAt: IsoInstant | null;
    /** a new or earlier retirement must be at least this many days ahead (0: any time) */
    readonly retirementNoticeDays?: number;
    /** required to retire sooner than that; recorded on the event (audited) */
    readonly shortNoticeReason?: string;
  }
>;
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
    /** an increase must be scheduled at least this many days ahead (customers are told); 0: no rule */
    readonly increaseNoticeDays?: number;
    /** an operator's reason for scheduling an increase with less notice (audited) */
    readonly shortNoticeReason?: string;
  }
>;

export type PriceBookCommand = AddModel | RetireModel | DescribeModel | SetPrice;
