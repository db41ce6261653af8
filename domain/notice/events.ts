import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema, isoInstantSchema } from '../events/schema';

/**
 * What Tollgate tells its customers. Announcements (price increases, model retirements,
 * maintenance, terms changes, incidents) are NoticePublished events, one stream per notice
 * (`notice-<noticeId>`), so publishing the same notice twice (a restart, a second instance) makes
 * one. Operational notices (suspension, refund, auto top-up receipt or failure, low balance) are
 * not events of their own: they are read from the account events that are the fact itself.
 */
export const noticeKindSchema = z.enum([
  'price_increase',
  'model_retirement',
  'maintenance',
  'terms_change',
  'incident',
  'low_balance',
  'auto_top_up_receipt',
  'auto_top_up_failed',
  'suspension',
  'refund',
]);
export type NoticeKind = z.output<typeof noticeKindSchema>;
export const NOTICE_KINDS: readonly NoticeKind[] = noticeKindSchema.options;

/**
 * Kinds a customer cannot turn off: what the terms promise to tell them (price increases on
 * models they use, terms changes, suspension) and the retirement of a model they use, which
 * breaks their integration on a date.
 */
export const ESSENTIAL_NOTICE_KINDS: ReadonlySet<NoticeKind> = new Set(['price_increase', 'terms_change', 'suspension', 'model_retirement']);

export function isEssential(kind: NoticeKind): boolean {
  return ESSENTIAL_NOTICE_KINDS.has(kind);
}

export const noticeAudienceSchema = z.discriminatedUnion('kind', [
  /** every account */
  z.object({ kind: z.literal('all') }),
  /** these accounts only (e.g. those that used a model in the last 90 days) */
  z.object({ kind: z.literal('accounts'), accountIds: z.array(idSchema) }),
]);
export type NoticeAudience = z.output<typeof noticeAudienceSchema>;

export const NoticePublished = defineEvent(
  'NoticePublished',
  z.object({
    noticeId: idSchema,
    kind: noticeKindSchema,
    audience: noticeAudienceSchema,
    subject: z.string().min(1),
    body: z.string().min(1),
    /** when what it announces takes effect (the new price, the retirement, the window's start) */
    effectiveAt: isoInstantSchema,
    /** a maintenance window's or an incident's end, when known */
    endsAt: isoInstantSchema.nullable(),
    /** what it is about: a model id, an incident id; null for general notices */
    about: z.string().nullable(),
  }),
);

export const noticeEventDefinitions = [NoticePublished] as const;
export type NoticeEvent = EventOf<(typeof noticeEventDefinitions)[number]>;
export type Notice = NoticeEvent['data'];

export function noticeStreamId(noticeId: string): string {
  return `notice-${noticeId}`;
}
