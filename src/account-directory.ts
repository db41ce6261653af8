import { accountStreamId } from '../domain/account';
import type { DomainEvent } from '../domain/events';
import type { AccountDirectory } from './ports/account-directory';
import { START, type EventStore } from './ports/event-store';

const PAGE = 1_000;

/**
 * The account directory of any event store: an account's stream is read whole (admin views only,
 * so rarely), and key and account ids come from scanning the global log, which is correct but
 * grows with the log. The PostgreSQL event store has an indexed one of its own.
 */
export function scanningAccountDirectory(store: EventStore<DomainEvent>): AccountDirectory {
  const scan = async (collect: (event: DomainEvent) => void): Promise<void> => {
    let from = START;
    for (;;) {
      const page = await store.readAll(from, { maxCount: PAGE });
      for (const recorded of page) collect(recorded.event);
      if (page.length < PAGE) return;
      from = page[page.length - 1]!.position;
    }
  };
  return {
    async personalDataRecords(accountId) {
      const { events } = await store.readStream(accountStreamId(accountId));
      const records: unknown[] = [];
      for (const { event } of events) if (event.type === 'AccountOpened' || event.type === 'PersonalDataCorrected') records.push(event.data);
      return records;
    },
    async keyIdsOf(accountId) {
      const ids: string[] = [];
      await scan((event) => {
        if (event.type === 'ApiKeyIssued' && event.data.accountId === accountId) ids.push(event.data.keyId);
      });
      return ids;
    },
    async accountIdsNewestFirst() {
      const ids: string[] = [];
      await scan((event) => {
        if (event.type === 'AccountOpened') ids.push(event.data.accountId);
      });
      return ids.reverse();
    },
  };
}
