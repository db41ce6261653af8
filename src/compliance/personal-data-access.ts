import { randomUUID } from 'node:crypto';
import { personalDataAccessStreamId, type PersonalDataView } from '../../domain/personal-data-access';
import { eventMetadataFrom, type CommandMetadata } from '../../domain/events/metadata';
import type { DomainEvent } from '../../domain/events';
import { VersionConflictError, type EventStore } from '../ports/event-store';

/** Personal data about to be shown: whose, and which fields are not null. */
export interface ShownPersonalData {
  readonly accountId: string;
  readonly displayName: string | null;
  readonly email: string | null;
}

/**
 * Records that the metadata's actor is about to see these accounts' personal data (one
 * PersonalDataViewed per account that has some, each in its own access stream; all in one
 * append). Called before the data is returned: if the record cannot be written, nothing is
 * shown. The audit log turns each into a `personal_data.viewed` entry on the account.
 */
export async function recordPersonalDataViewed(
  store: EventStore<DomainEvent>,
  shown: readonly ShownPersonalData[],
  access: { readonly what: PersonalDataView; readonly purpose?: string | null | undefined; readonly metadata: CommandMetadata },
): Promise<number> {
  const entries = shown.flatMap(({ accountId, displayName, email }) => {
    const fields = [...(displayName !== null ? (['display_name'] as const) : []), ...(email !== null ? (['email'] as const) : [])];
    if (fields.length === 0) return [];
    const event: DomainEvent = {
      type: 'PersonalDataViewed',
      data: { accountId, what: access.what, fields, purpose: access.purpose ?? null },
      metadata: eventMetadataFrom(access.metadata),
    };
    return [{ streamId: personalDataAccessStreamId(accountId), events: [{ id: randomUUID(), event }] }];
  });
  if (entries.length === 0) return 0;
  // An access stream is a plain record (nothing is decided on it), but the store appends only at an
  // exact revision: append at each stream's head, and for the streams where another view got there
  // first, read the head again and append those alone.
  let pending = entries;
  for (let attempt = 1; pending.length > 0; attempt++) {
    const heads = await Promise.all(pending.map((entry) => store.readStream(entry.streamId, { maxCount: 0 })));
    const results = await store.appendToStreams(pending.map((entry, i) => ({ ...entry, expectedVersion: heads[i]!.revision ?? ('no_stream' as const) })));
    const conflicted = pending.filter((_, i) => results[i] instanceof VersionConflictError);
    if (conflicted.length > 0 && attempt >= 10) throw results.find((r) => r instanceof VersionConflictError);
    pending = conflicted;
  }
  return entries.length;
}
