import { accept, reject, type Decider, type Decision } from '../decider/decision';
import { eventMetadataFrom, type Command } from '../events/metadata';
import { isBefore, type IsoInstant } from '../time/instant';
import type { RetentionEvent } from './events';

/** The single stream every retention run records itself in. */
export const RETENTION_STREAM_ID = 'retention';

/** What a run did; its `asOf` is the command's `now`. Counts are non-negative integers. */
export type RecordRetentionRun = Command<
  'RecordRetentionRun',
  {
    readonly runId: string;
    readonly auditEntriesPurged: bigint;
    readonly auditAnchor: { readonly entryNo: bigint; readonly hash: string } | null;
    readonly requestMetadataPurged: bigint;
    readonly personalDataErased: readonly string[];
  }
>;
export type RetentionCommand = RecordRetentionRun;

export interface RetentionState {
  readonly lastRunAt: IsoInstant | null;
  readonly runIds: ReadonlySet<string>;
  readonly lastAuditAnchorEntryNo: bigint | null;
}

/** Every refusal of the retention decider, by name. */
export type RetentionError =
  /** a run measured from before the previous run: a clock went backwards, periods would shrink */
  | { readonly error: 'retention_run_before_previous'; readonly asOf: IsoInstant; readonly previous: IsoInstant }
  /** the chain's anchor only moves forward: purged entries never come back */
  | { readonly error: 'audit_anchor_moved_back'; readonly entryNo: bigint; readonly previous: bigint }
  | { readonly error: 'count_negative'; readonly count: bigint };

export function initialRetentionState(): RetentionState {
  return { lastRunAt: null, runIds: new Set(), lastAuditAnchorEntryNo: null };
}

export function decideRetention(command: RetentionCommand, state: RetentionState): Decision<RetentionEvent, RetentionError> {
  const { runId, auditEntriesPurged, auditAnchor, requestMetadataPurged, personalDataErased } = command.data;
  const asOf = command.metadata.now;
  // A retried run (same id) is already history.
  if (state.runIds.has(runId)) return accept();
  if (state.lastRunAt !== null && isBefore(asOf, state.lastRunAt)) {
    return reject({ error: 'retention_run_before_previous', asOf, previous: state.lastRunAt });
  }
  if (auditEntriesPurged < 0n) return reject({ error: 'count_negative', count: auditEntriesPurged });
  if (requestMetadataPurged < 0n) return reject({ error: 'count_negative', count: requestMetadataPurged });
  if (auditAnchor !== null && state.lastAuditAnchorEntryNo !== null && auditAnchor.entryNo < state.lastAuditAnchorEntryNo) {
    return reject({ error: 'audit_anchor_moved_back', entryNo: auditAnchor.entryNo, previous: state.lastAuditAnchorEntryNo });
  }
  return accept({
    type: 'RetentionRunCompleted',
    data: {
      runId,
      asOf,
      auditEntriesPurged,
      auditAnchor: auditAnchor === null ? null : { ...auditAnchor },
      requestMetadataPurged,
      personalDataErased: [...personalDataErased],
    },
    metadata: eventMetadataFrom(command.metadata),
  });
}

export function evolveRetention(state: RetentionState, event: RetentionEvent): RetentionState {
  return {
    lastRunAt: event.data.asOf,
    runIds: new Set(state.runIds).add(event.data.runId),
    lastAuditAnchorEntryNo: event.data.auditAnchor?.entryNo ?? state.lastAuditAnchorEntryNo,
  };
}

export const retentionDecider: Decider<RetentionCommand, RetentionState, RetentionEvent, RetentionError> = {
  decide: decideRetention,
  evolve: evolveRetention,
  initialState: initialRetentionState,
};
