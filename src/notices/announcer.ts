import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { DomainEvent } from '../../domain/events';
import { formatUsd } from '../../domain/money';
import { PRICE_BOOK_STREAM_ID, priceBefore, type PriceBookState, type PriceVersion } from '../../domain/price-book';
import { toEpochMs } from '../../domain/time';
import { systemMetadata } from '../command-metadata';
import type { Ledger } from '../ledger';
import type { EventStore } from '../ports/event-store';
import { startPollLoop, type PollLoop } from '../process-managers/poll-loop';
import { publishNotice } from './notices';

/** Accounts that used a model within this many days are told of its price increases and retirement. */
export const RECENT_USE_DAYS = 90;

/**
 * Announces what the price book schedules: each price increase not yet in force, and each
 * scheduled retirement, as a notice to every account that used the model in the last 90 days
 * (from the usage read model). Runs on the one instance holding the workers role; each notice's
 * id derives from what it announces (the price version; the model and its retirement date) and
 * is published into a stream of its own only if that stream is new, so restarts and a second
 * instance never announce twice.
 */
export class PriceBookAnnouncer {
  private loop: PollLoop | undefined;

  constructor(
    private readonly deps: { pool: Pool; store: EventStore<DomainEvent>; ledger: Ledger; log: Logger; clock: () => Date },
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.loop = startPollLoop(() => this.runOnce(), {
      intervalMs: this.intervalMs,
      onError: (error) => this.deps.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'notice announcements failed'),
    });
  }

  async stop(): Promise<void> {
    await this.loop?.stop();
    this.loop = undefined;
  }

  /** One pass; returns the ids of the notices it published. */
  async runOnce(): Promise<string[]> {
    const now = this.deps.clock();
    const { state } = await this.deps.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const due = [...this.priceIncreases(state, now), ...this.retirements(state, now)];
    if (due.length === 0) return [];
    const { rows } = await this.deps.pool.query<{ notice_id: string }>('SELECT notice_id FROM notices WHERE notice_id = ANY($1)', [due.map((d) => d.noticeId)]);
    const known = new Set(rows.map((r) => r.notice_id));
    const published: string[] = [];
    for (const item of due) {
      if (known.has(item.noticeId)) continue;
      const accountIds = await this.recentUsers(item.modelId, now);
      const fresh = await publishNotice(
        this.deps.store,
        {
          noticeId: item.noticeId,
          kind: item.kind,
          audience: { kind: 'accounts', accountIds },
          subject: item.subject,
          body: item.body,
          effectiveAt: item.effectiveAt,
          endsAt: null,
          about: item.modelId,
        },
        { ...systemMetadata('notice-announcer'), now: now.toISOString() },
      );
      if (fresh) {
        published.push(item.noticeId);
        this.deps.log.info({ noticeId: item.noticeId, kind: item.kind, accounts: accountIds.length }, 'notice published');
      }
    }
    return published;
  }

  private priceIncreases(book: PriceBookState, now: Date): Due[] {
    return [...book.prices.values()]
      .filter((p) => p.increase === true && toEpochMs(p.effectiveAt) > now.getTime())
      .map((p) => {
        const before = priceBefore(withoutVersion(book, p), p.modelId, p.operation, p.effectiveAt);
        return {
          noticeId: `price-increase-v${p.version}`,
          kind: 'price_increase' as const,
          modelId: p.modelId,
          effectiveAt: p.effectiveAt,
          subject: `Price increase for ${p.modelId} (${p.operation}) from ${p.effectiveAt.slice(0, 10)}`,
          body:
            `From ${p.effectiveAt} (UTC) the ${p.operation} price of ${p.modelId} becomes ${usdText(p)} per million tokens` +
            `${before ? `, up from ${usdText(before)}` : ''}. You are told because your account used this model in the last ${RECENT_USE_DAYS} days. ` +
            'Requests admitted before that instant are charged at the price in force when they were admitted.' +
            (p.shortNoticeReason ? ` This change comes with less notice than usual: ${p.shortNoticeReason}.` : ''),
        };
      });
  }

  private retirements(book: PriceBookState, now: Date): Due[] {
    return [...book.models.values()].flatMap((m) => {
      const retiresAt = m.catalogue?.retiresAt;
      if (m.retired || !retiresAt || toEpochMs(retiresAt) <= now.getTime()) return [];
      return [
        {
          noticeId: `model-retirement-${m.modelId.replace(/[^\w.:@-]/g, '_')}-${toEpochMs(retiresAt)}`,
          kind: 'model_retirement' as const,
          modelId: m.modelId,
          effectiveAt: retiresAt,
          subject: `${m.modelId} retires on ${retiresAt.slice(0, 10)}`,
          body: `${m.modelId} is deprecated and will be retired at ${retiresAt} (UTC). From then on requests for it are refused (404 model_retired). Move to another model before then; the pricing page lists those on sale.`,
        },
      ];
    });
  }

  /** Accounts with any request for the model in the last 90 days, by the usage read model. */
  private async recentUsers(modelId: string, now: Date): Promise<string[]> {
    const { rows } = await this.deps.pool.query<{ account_id: string }>(
      `SELECT DISTINCT account_id FROM usage_daily WHERE model = $1 AND day >= ($2::timestamptz AT TIME ZONE 'UTC')::date - $3::int ORDER BY account_id`,
      [modelId, now.toISOString(), RECENT_USE_DAYS],
    );
    return rows.map((r) => r.account_id);
  }
}

interface Due {
  readonly noticeId: string;
  readonly kind: 'price_increase' | 'model_retirement';
  readonly modelId: string;
  readonly effectiveAt: string;
  readonly subject: string;
  readonly body: string;
}

function withoutVersion(book: PriceBookState, p: PriceVersion): PriceBookState {
  const prices = new Map(book.prices);
  prices.delete(p.version);
  return { ...book, prices };
}

function usdText(p: { inputPerMillion: bigint; outputPerMillion: bigint }): string {
  return `$${formatUsd(p.inputPerMillion)} input / $${formatUsd(p.outputPerMillion)} output`;
}
