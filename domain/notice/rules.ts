import { addMs, isBefore, toEpochMs, type IsoInstant } from '../time/instant';
import type { NoticeKind } from './events';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** How far ahead an operator must announce each kind (the terms' promises); 0: any time. */
export const MINIMUM_NOTICE_MS: Readonly<Record<NoticeKind, number>> = {
  price_increase: 14 * DAY_MS,
  model_retirement: 14 * DAY_MS,
  maintenance: 24 * HOUR_MS,
  terms_change: 14 * DAY_MS,
  incident: 0,
  low_balance: 0,
  auto_top_up_receipt: 0,
  auto_top_up_failed: 0,
  suspension: 0,
  refund: 0,
};

/** Kinds an operator posts by hand (the others come from the price book and the accounts). */
export const OPERATOR_NOTICE_KINDS = ['maintenance', 'terms_change', 'incident'] as const satisfies readonly NoticeKind[];
export type OperatorNoticeKind = (typeof OPERATOR_NOTICE_KINDS)[number];

export type NoticeRefusal =
  | { readonly error: 'notice_too_short'; readonly kind: NoticeKind; readonly effectiveAt: IsoInstant; readonly earliest: IsoInstant }
  | { readonly error: 'notice_ends_before_it_starts'; readonly effectiveAt: IsoInstant; readonly endsAt: IsoInstant };

/**
 * Checks an operator's notice against the kind's minimum notice: maintenance at least 24 hours
 * ahead, a terms change at least 14 days ahead. Incidents are posted as they happen.
 */
export function checkNotice(
  kind: NoticeKind,
  effectiveAt: IsoInstant,
  endsAt: IsoInstant | null,
  now: IsoInstant,
  minimumMs: number = MINIMUM_NOTICE_MS[kind],
): NoticeRefusal | undefined {
  if (endsAt !== null && toEpochMs(endsAt) <= toEpochMs(effectiveAt)) return { error: 'notice_ends_before_it_starts', effectiveAt, endsAt };
  const earliest = addMs(now, minimumMs);
  if (minimumMs > 0 && isBefore(effectiveAt, earliest)) return { error: 'notice_too_short', kind, effectiveAt, earliest };
  return undefined;
}
