import { retentionDecider, type RecordRetentionRun } from '../../../../domain/retention';
import type { RetentionEvent } from '../../../../domain/retention';
import { eventMetadataFrom, type CommandMetadata } from '../../../../domain/events/metadata';
import { deciderSpec } from '../decider-spec';

const given = deciderSpec(retentionDecider);
const T0 = '2026-04-01T03:00:00.000Z';
const T1 = '2026-04-02T03:00:00.000Z';
const meta = (now: string): CommandMetadata => ({ now, correlationId: 'run', causationId: 'run', actor: { kind: 'system', process: 'retention' } });
const HASH = 'a'.repeat(64);

function run(runId: string, now: string, extra: Partial<RecordRetentionRun['data']> = {}): RecordRetentionRun {
  return {
    type: 'RecordRetentionRun',
    data: { runId, auditEntriesPurged: 0n, auditAnchor: null, requestMetadataPurged: 0n, personalDataErased: [], ...extra },
    metadata: meta(now),
  };
}

function completed(runId: string, now: string, extra: Partial<RetentionEvent['data']> = {}): RetentionEvent {
  return {
    type: 'RetentionRunCompleted',
    data: { runId, asOf: now, auditEntriesPurged: 0n, auditAnchor: null, requestMetadataPurged: 0n, personalDataErased: [], ...extra },
    metadata: eventMetadataFrom(meta(now)),
  };
}

describe('RecordRetentionRun', () => {
  it('records what the run did, measured from the command time', () =>
    given([])
      .when(run('r1', T0, { auditEntriesPurged: 3n, auditAnchor: { entryNo: 3n, hash: HASH }, personalDataErased: ['acct_1'] }))
      .then([completed('r1', T0, { auditEntriesPurged: 3n, auditAnchor: { entryNo: 3n, hash: HASH }, personalDataErased: ['acct_1'] })]));
  it('a run id already recorded is a no-op', () =>
    given([completed('r1', T0)])
      .when(run('r1', T1))
      .then([]));
  it('retention_run_before_previous', () =>
    given([completed('r1', T1)])
      .when(run('r2', T0))
      .then({ error: 'retention_run_before_previous', asOf: T0, previous: T1 }));
  it('audit_anchor_moved_back', () =>
    given([completed('r1', T0, { auditEntriesPurged: 5n, auditAnchor: { entryNo: 5n, hash: HASH } })])
      .when(run('r2', T1, { auditEntriesPurged: 1n, auditAnchor: { entryNo: 4n, hash: HASH } }))
      .then({ error: 'audit_anchor_moved_back', entryNo: 4n, previous: 5n }));
  it('count_negative', () =>
    given([])
      .when(run('r1', T0, { requestMetadataPurged: -1n }))
      .thenRejectedWith('count_negative'));
});
