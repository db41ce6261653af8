import { randomUUID } from 'node:crypto';
import { financeReportsStreamId } from '../../domain/admin-roles';
import type { DomainEvent } from '../../domain/events';
import { eventMetadataFrom, type CommandMetadata } from '../../domain/events/metadata';
import type { EventStore } from '../ports/event-store';

/**
 * Records that an admin ran a finance report over HTTP (FinanceReportRun, audited as
 * finance.report_run with them as actor), before the report is answered. A plain record in the
 * actor's own stream: appended at its head, read again when another request got there first.
 */
export async function recordFinanceReportRun(
  store: EventStore<DomainEvent>,
  report: { readonly report: 'journal' | 'verification'; readonly from: string | null; readonly to: string | null; readonly ok: boolean | null },
  metadata: CommandMetadata,
): Promise<void> {
  const actorId = metadata.actor.kind === 'admin' ? metadata.actor.adminId : 'system';
  const streamId = financeReportsStreamId(actorId);
  const event = { type: 'FinanceReportRun', data: report, metadata: eventMetadataFrom(metadata) } as DomainEvent;
  for (let attempt = 0; ; attempt++) {
    const head = await store.readStream(streamId, { maxCount: 0 });
    try {
      await store.appendToStream(streamId, [{ id: randomUUID(), event }], { expectedVersion: head.revision ?? 'no_stream' });
      return;
    } catch (error) {
      if (attempt >= 10 || (error as Error).name !== 'VersionConflictError') throw error;
    }
  }
}
