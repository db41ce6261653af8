import type { Logger } from 'pino';
import type { Pool } from 'pg';
import { RETENTION_STREAM_ID, type RetentionEvent } from '../../domain/retention';

type RetentionRun = RetentionEvent['data'];
import type { Worker } from '../instances/lease';
import type { Ledger } from '../ledger';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import { nextErasureDueAt, nextRetentionDueAt, runRetention, type RetentionReport } from './retention';

export const RETENTION_EVERY_MS = 86_400_000;

/**
 * The retention schedule, run by the gateway itself: one of the background workers, so it runs on
 * one live instance at a time (src/instances/lease.ts). It looks every `checkIntervalMs` (and at
 * once when it starts), by `clock`, and runs retention when a day has passed since the last
 * recorded run, or when something held has become due since it (an account's erasure date, the
 * audit chain's head or a request-log entry passing its period): so personal data goes at its
 * erasure date and request-log entries at their maximum age, within one check interval, not up to
 * a day late. A gateway that was down for a week catches up at start-up, and a run already made
 * by another instance is not made again. Each run is recorded on the retention stream
 * (RetentionRunCompleted, counts and categories only), which the audit log shows as retention.run.
 */
export class RetentionSchedule implements Worker {
  private loop: PollLoop | undefined;
  private wake: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly deps: { readonly pool: Pool; readonly ledger: Ledger; readonly vault: PersonalDataVault; readonly log: Logger },
    private readonly options: { readonly clock: () => Date; readonly checkIntervalMs: number },
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runIfDue().then(() => this.wakeForNextErasure()), {
      intervalMs: this.options.checkIntervalMs,
      onError: (error) =>
        this.deps.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'retention run failed; retried at the next check'),
    });
    void this.loop.runNow();
  }

  /**
   * Runs retention when no run is recorded within the last day, or when something became due
   * after the last run; returns its report, or null when none was due.
   */
  async runIfDue(): Promise<RetentionReport | null> {
    const now = this.options.clock();
    const last = await lastRunAt(this.deps.ledger);
    if (last !== null && now.getTime() - last.getTime() < RETENTION_EVERY_MS) {
      const due = await nextRetentionDueAt(this.deps.pool, last.toISOString());
      if (due === null || due.getTime() > now.getTime()) return null;
    }
    const report = await runRetention(this.deps, { now: now.toISOString(), actor: { kind: 'system', process: 'retention-schedule' } });
    this.deps.log.info(
      {
        runId: report.runId,
        requestLogEntriesDeleted: report.requestMetadataPurged,
        usageLatencyCleared: report.usageLatencyCleared,
        auditEntriesDeleted: report.auditEntriesPurged,
        personalDataErased: report.personalDataErased.length,
      },
      'retention run recorded',
    );
    return report;
  }

  /**
   * An erasure due before the next check gets a wake of its own at its instant, so personal data
   * goes at its erasure date, not up to a check interval after it. (Request-log entries and audit
   * entries come due continually under traffic; they wait for the next check.)
   */
  private async wakeForNextErasure(): Promise<void> {
    if (this.stopped) return;
    const now = this.options.clock();
    const due = await nextErasureDueAt(this.deps.pool, now.toISOString());
    clearTimeout(this.wake);
    this.wake = undefined;
    if (due === null) return;
    const inMs = due.getTime() - now.getTime();
    if (inMs >= this.options.checkIntervalMs) return;
    this.wake = setTimeout(() => void this.loop?.runNow(), Math.max(0, inMs) + 1_000);
    this.wake.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.wake);
    await this.loop?.stop();
  }
}

/** The last recorded retention run (what it deleted, by category, and as of when), or null before the first. */
export async function lastRetentionRun(ledger: Pick<Ledger, 'store'>): Promise<RetentionRun | null> {
  // Runs come daily, and as often as each check when things keep becoming due: read the head only.
  const { revision } = await ledger.store.readStream(RETENTION_STREAM_ID, { maxCount: 1 });
  if (revision === null) return null;
  const { events } = await ledger.store.readStream(RETENTION_STREAM_ID, { fromRevision: revision, maxCount: 1 });
  const last = events[events.length - 1]?.event;
  return last?.type === 'RetentionRunCompleted' ? last.data : null;
}

/** When the last recorded retention run measured from (its asOf), or null before the first. */
export async function lastRunAt(ledger: Pick<Ledger, 'store'>): Promise<Date | null> {
  const last = await lastRetentionRun(ledger);
  return last === null ? null : new Date(last.asOf);
}
