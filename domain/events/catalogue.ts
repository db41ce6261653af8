import { accountEventDefinitions, type AccountEvent } from '../account/events';
import { apiKeyEventDefinitions, type ApiKeyEvent } from '../api-key/events';
import { priceBookEventDefinitions, type PriceBookEvent } from '../price-book/events';
import { retentionEventDefinitions, type RetentionEvent } from '../retention/events';
import { personalDataAccessEventDefinitions, type PersonalDataAccessEvent } from '../personal-data-access/events';
import { requestLogEventDefinitions, type RequestLogEvent } from '../request-log/events';
import { noticeEventDefinitions, type NoticeEvent } from '../notice/events';
import { mailEventDefinitions, type MailEvent } from '../mail/events';
import { userEventDefinitions, type UserEvent } from '../user/events';
import { adminRoleEventDefinitions, type AdminRoleEvent } from '../admin-roles/events';
import type { EventDefinition } from './define';

/** Every event Tollgate stores, from every stream. Type names are unique across streams. */
export type DomainEvent =
  | AccountEvent
  | PriceBookEvent
  | ApiKeyEvent
  | RetentionEvent
  | PersonalDataAccessEvent
  | RequestLogEvent
  | MailEvent
  | NoticeEvent
  | UserEvent
  | AdminRoleEvent;
export type DomainEventType = DomainEvent['type'];

export const eventDefinitions: readonly EventDefinition[] = [
  ...accountEventDefinitions,
  ...priceBookEventDefinitions,
  ...apiKeyEventDefinitions,
  ...retentionEventDefinitions,
  ...personalDataAccessEventDefinitions,
  ...requestLogEventDefinitions,
  ...noticeEventDefinitions,
  ...mailEventDefinitions,
  ...userEventDefinitions,
  ...adminRoleEventDefinitions,
];

export const eventRegistry: ReadonlyMap<string, EventDefinition> = (() => {
  const registry = new Map<string, EventDefinition>();
  for (const def of eventDefinitions) {
    if (registry.has(def.type)) throw new Error(`event type ${def.type} is defined twice`);
    registry.set(def.type, def);
  }
  return registry;
})();
