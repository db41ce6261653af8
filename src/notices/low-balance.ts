import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { DomainEvent } from '../../domain/events';
import { formatUsd } from '../../domain/money';
import { systemMetadata } from '../command-metadata';
import type { EventStore } from '../ports/event-store';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import { MAIL_NOTICES_NEWER_THAN_MS } from './mailer';
import { publishNotice } from './notices';

/** The notice id of a low-balance alert (`lbn_…`, decided once by the low-balance subscriber). */
export function lowBalanceNoticeId(alertId: string): string {
  return `low-balance-${alertId}`;
}

/**
 * Low balance as an operational notice: every low-balance alert the `low-balance-alerts`
 * subscriber decided (src/process-managers/low-balance-alerts.ts: a threshold crossed downward,
 * once until the balance recovers) is also published as a `low_balance` NoticePublished for its
 * account, so it shows in the dashboard and is mailed by the NoticeMailer, whether or not the
 * webhook was delivered. Non-essential: an account (or a member) that turned `low_balance` off
 * gets no mail and no banner. The notice id derives from the alert's, and a notice is appended
 * only into a new stream, so restarts and a second instance publish each once. Alerts older than
 * the mailer's horizon (e.g. decided before this existed) are left alone.
 */
export class LowBalanceNoticePublisher {
  private loop: PollLoop | undefined;

  constructor(
    private readonly deps: { pool: Pool; store: EventStore<DomainEvent>; log: Logger; clock: () => Date },
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runOnce().then(() => undefined), {
      intervalMs: this.intervalMs,
      onError: (error) => this.deps.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'low-balance notices failed'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = undefined;
  }

  /** One pass; returns the ids of the notices it published. */
  async runOnce(limit = 100): Promise<string[]> {
    const now = this.deps.clock();
    const { rows } = await this.deps.pool.query<{
      notice_id: string;
      account_id: string;
      threshold: { amount_usd?: string };
      available: string;
      occurred_at: Date;
    }>(
      `SELECT l.notice_id, l.account_id, l.threshold, l.available::text, l.occurred_at
         FROM low_balance_notices l
        WHERE l.occurred_at > $1::timestamptz - $2 * interval '1 millisecond'
          AND NOT EXISTS (SELECT 1 FROM notices n WHERE n.notice_id = 'low-balance-' || l.notice_id)
        ORDER BY l.created_at, l.notice_id
        LIMIT $3`,
      [now.toISOString(), MAIL_NOTICES_NEWER_THAN_MS, limit],
    );
    const published: string[] = [];
    for (const row of rows) {
      const available = formatUsd(BigInt(row.available));
      const threshold = row.threshold.amount_usd;
      const noticeId = lowBalanceNoticeId(row.notice_id);
      const fresh = await publishNotice(
        this.deps.store,
        {
          noticeId,
          kind: 'low_balance',
          audience: { kind: 'accounts', accountIds: [row.account_id] },
          subject: `Your balance is low: $${available} left`,
          body:
            `Your available balance fell to $${available}` +
            `${threshold !== undefined ? `, below your alert threshold of $${threshold}` : ''}. ` +
            'Top up in the dashboard (or set up automatic top-up) so requests are not refused.',
          effectiveAt: row.occurred_at.toISOString(),
          endsAt: null,
          about: null,
        },
        { ...systemMetadata('low-balance-notices'), now: now.toISOString() },
      );
      if (fresh) published.push(noticeId);
    }
    return published;
  }
}
