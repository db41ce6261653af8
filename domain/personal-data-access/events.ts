import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema } from '../events/schema';

/**
 * Who looked at an account's personal data, when, and through what: one event per account
 * shown, in that account's access stream (`personal-data-access-<accountId>`), apart from the
 * account's own stream so reading never grows the stream every request loads. The actor is
 * the event's metadata actor. It carries no personal data itself: the account id, which view,
 * which fields, and the purpose the operator gave (free text they typed, like a reason).
 */
export const PersonalDataViewed = defineEvent(
  'PersonalDataViewed',
  z.object({
    accountId: idSchema,
    /** account_details: GET /admin/accounts/:id; account_search: a row of GET /admin/accounts; export: `tollgate export` */
    what: z.enum(['account_details', 'account_search', 'export', 'statement']),
    fields: z.array(z.enum(['display_name', 'email'])).min(1),
    purpose: z.string().min(1).max(200).nullable(),
  }),
);

export const personalDataAccessEventDefinitions = [PersonalDataViewed] as const;

export type PersonalDataAccessEvent = EventOf<(typeof personalDataAccessEventDefinitions)[number]>;
export type PersonalDataView = PersonalDataAccessEvent['data']['what'];

export function personalDataAccessStreamId(accountId: string): string {
  return `personal-data-access-${accountId}`;
}
