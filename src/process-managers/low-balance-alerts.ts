import { createHmac, randomBytes, createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { DomainEvent } from '../../domain/events';
import { formatUsd, type MicroUsd } from '../../domain/money';
import { accountIdOfStream, balanceChange } from '../../projections/balances/balances';
import type { Migration } from '../ports/migration';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import type { EventStore, RecordedEvent } from '../ports/event-store';
import { runProjection, type RunningProjection, type SqlProjection } from '../read-models/runner';
import { inTransaction } from '../read-models/transaction';
import { startPollLoop, type PollLoop } from './poll-loop';

/**
 * Low-balance alerts: when an event lowers an account's available balance below one of its
 * thresholds (crosses it downward), a JSON notice is POSTed to the customer's HTTPS callback,
 * signed with HMAC-SHA256 (`Tollgate-Signature: t=<unix seconds>,v1=<hex of HMAC(secret,
 * "<t>.<raw body>")>`).
 *
 * The `low-balance-alerts` subscriber follows the log (checkpointed like a projection) and writes
 * a notice row in the same transaction as its checkpoint, so a notice is decided exactly once;
 * a threshold fires again only after the balance has gone back to it or above. A worker delivers
 * due notices, retrying with exponential backoff up to MAX_DELIVERY_ATTEMPTS, and records every
 * attempt (time, HTTP status, outcome). The signing secret is kept encrypted with the account's
 * personal-data key; it is never in an event, a log line or an attempt record.
 */

export const MAX_DELIVERY_ATTEMPTS = 5;
export const SIGNATURE_HEADER = 'Tollgate-Signature';

export const lowBalanceAlertsMigration: Migration = {
  id: '0032_low_balance_alerts',
  sql: `
    CREATE TABLE low_balance_alert_settings (
      account_id text PRIMARY KEY,
      url text NOT NULL,
      thresholds jsonb NOT NULL,
      secret_ciphertext text NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE low_balance_alert_balances (
      account_id text PRIMARY KEY,
      available bigint NOT NULL,
      last_top_up bigint,
      below jsonb NOT NULL DEFAULT '[]'
    );
    CREATE TABLE low_balance_notices (
      notice_id text PRIMARY KEY,
      account_id text NOT NULL,
      threshold jsonb NOT NULL,
      available bigint NOT NULL,
      occurred_at timestamptz NOT NULL,
      status text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX low_balance_notices_due ON low_balance_notices (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX low_balance_notices_by_account ON low_balance_notices (account_id, created_at DESC);
    CREATE TABLE low_balance_notice_attempts (
      notice_id text NOT NULL REFERENCES low_balance_notices (notice_id),
      attempt integer NOT NULL,
      attempted_at timestamptz NOT NULL,
      http_status integer,
      outcome text NOT NULL CHECK (outcome IN ('delivered', 'failed')),
      error text,
      PRIMARY KEY (notice_id, attempt)
    );
  `,
};

/** A threshold as configured: a fixed amount, or a share of the account's last top-up. */
export type AlertThreshold = { readonly kind: 'usd'; readonly amount: MicroUsd } | { readonly kind: 'percent_of_last_top_up'; readonly percent: number };

/** Stable name of a threshold (what "already below" remembers). */
export function thresholdKey(t: AlertThreshold): string {
  return t.kind === 'usd' ? `usd:${t.amount}` : `pct:${t.percent}`;
}

/** The threshold's amount now; null for a percentage before any top-up. */
export function thresholdAmount(t: AlertThreshold, lastTopUp: MicroUsd | null): MicroUsd | null {
  if (t.kind === 'usd') return t.amount;
  if (lastTopUp === null) return null;
  return (lastTopUp * BigInt(Math.round(t.percent * 100))) / 10_000n;
}

interface StoredThreshold {
  kind: 'usd' | 'percent_of_last_top_up';
  amount?: string;
  percent?: number;
}

export function storeThresholds(thresholds: readonly AlertThreshold[]): StoredThreshold[] {
  return thresholds.map((t) => (t.kind === 'usd' ? { kind: 'usd', amount: t.amount.toString() } : { kind: 'percent_of_last_top_up', percent: t.percent }));
}

export function loadThresholds(stored: readonly StoredThreshold[]): AlertThreshold[] {
  return stored.map((t) => (t.kind === 'usd' ? { kind: 'usd', amount: BigInt(t.amount!) } : { kind: 'percent_of_last_top_up', percent: t.percent! }));
}

/** The thresholds the balance is already below: those do not fire until it recovers. */
export function thresholdsBelow(thresholds: readonly AlertThreshold[], available: MicroUsd, lastTopUp: MicroUsd | null): string[] {
  return thresholds
    .filter((t) => {
      const amount = thresholdAmount(t, lastTopUp);
      return amount !== null && available < amount;
    })
    .map(thresholdKey);
}

/** `t=<unix>,v1=<hex>` over `${t}.${body}`. */
export function signNotice(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}

export function newSigningSecret(): string {
  return `tgwhsec_${randomBytes(32).toString('base64url')}`;
}

interface BalanceRow {
  available: bigint;
  lastTopUp: bigint | null;
  below: Set<string>;
}

export const lowBalanceAlertSubscriber: SqlProjection<DomainEvent> = {
  name: 'low-balance-alerts',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const accountIds = [...new Set(events.map((e) => accountIdOfStream(e.streamId)).filter((id): id is string => id !== null))];
    if (accountIds.length === 0) return;
    // These two are left unnamed on purpose: each reads a table whose size its plan depends on. A named
    // statement may switch to a generic plan built once per connection (a seq scan when the table was
    // empty: bench/plan-cache.ts); unnamed, each is planned per call with the table's size.
    const balances = await db.query<{ account_id: string; available: string; last_top_up: string | null; below: string[] }>(
      'SELECT account_id, available::text, last_top_up::text, below FROM low_balance_alert_balances WHERE account_id = ANY($1)',
      [accountIds],
    );
    const settings = await db.query<{ account_id: string; thresholds: StoredThreshold[] }>(
      'SELECT account_id, thresholds FROM low_balance_alert_settings WHERE account_id = ANY($1)',
      [accountIds],
    );
    const rows = new Map<string, BalanceRow>(
      balances.rows.map((r) => [
        r.account_id,
        { available: BigInt(r.available), lastTopUp: r.last_top_up === null ? null : BigInt(r.last_top_up), below: new Set(r.below) },
      ]),
    );
    const thresholdsOf = new Map(settings.rows.map((r) => [r.account_id, loadThresholds(r.thresholds)]));
    const notices: { noticeId: string; accountId: string; threshold: StoredThreshold & { amount_usd: string }; available: bigint; occurredAt: string }[] = [];
    for (const recorded of events) {
      const accountId = accountIdOfStream(recorded.streamId);
      if (accountId === null) continue;
      const row = rows.get(accountId) ?? { available: 0n, lastTopUp: null, below: new Set<string>() };
      const change = balanceChange(recorded.streamId, recorded.event)!;
      const delta = change.purchased + change.promo - change.reserved;
      row.available += delta;
      if (recorded.event.type === 'TopUpCompleted') row.lastTopUp = recorded.event.data.amount;
      for (const threshold of thresholdsOf.get(accountId) ?? []) {
        const amount = thresholdAmount(threshold, row.lastTopUp);
        const key = thresholdKey(threshold);
        if (amount === null) continue;
        if (row.available >= amount) {
          row.below.delete(key);
        } else if (delta < 0n && !row.below.has(key)) {
          // Only a fall crosses downward. An event that lowers nothing (the account's opening, at
          // 0, read after thresholds set in the meantime) told a new customer "$0.000000 left".
          row.below.add(key);
          notices.push({
            // The same event and threshold always make the same notice (replays add nothing).
            noticeId: `lbn_${createHash('sha256').update(`${recorded.id}|${key}`).digest('hex').slice(0, 32)}`,
            accountId,
            threshold: { ...storeThresholds([threshold])[0]!, amount_usd: formatUsd(amount) },
            available: row.available,
            occurredAt: recorded.event.metadata.occurredAt,
          });
        }
      }
      rows.set(accountId, row);
    }
    const all = [...rows.entries()];
    await db.query({
      name: 'tollgate_low_balance_alerts_apply',
      text: `INSERT INTO low_balance_alert_balances (account_id, available, last_top_up, below)
       SELECT a, b, c, d::jsonb FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[]) AS t(a, b, c, d)
       ON CONFLICT (account_id) DO UPDATE SET available = excluded.available, last_top_up = excluded.last_top_up, below = excluded.below`,
      values: [
        all.map(([id]) => id),
        all.map(([, r]) => r.available.toString()),
        all.map(([, r]) => r.lastTopUp?.toString() ?? null),
        all.map(([, r]) => JSON.stringify([...r.below])),
      ],
    });
    for (const n of notices) {
      await db.query({
        name: 'tollgate_low_balance_alerts_notice',
        text: `INSERT INTO low_balance_notices (notice_id, account_id, threshold, available, occurred_at, status)
         VALUES ($1, $2, $3, $4, $5, 'pending') ON CONFLICT (notice_id) DO NOTHING`,
        values: [n.noticeId, n.accountId, JSON.stringify(n.threshold), n.available.toString(), n.occurredAt],
      });
    }
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE low_balance_alert_balances');
  },
};

export interface LowBalanceAlertOptions {
  readonly pollIntervalMs?: number;
  /** delay before the 2nd attempt; doubles for each one after */
  readonly retryBaseMs?: number;
  readonly timeoutMs?: number;
}

/** What the customer's endpoint receives (amounts as USD decimal strings). */
export function noticeBody(notice: { noticeId: string; accountId: string; threshold: unknown; available: bigint; occurredAt: Date }): string {
  return JSON.stringify({
    notice_id: notice.noticeId,
    account_id: notice.accountId,
    threshold: notice.threshold,
    available_usd: formatUsd(notice.available),
    occurred_at: notice.occurredAt.toISOString(),
  });
}

/** The subscriber plus the worker that delivers notices. Stoppable. */
/** A notice whose next delivery attempt is due, as deliverDue reads it. */
interface DueNotice {
  notice_id: string;
  account_id: string;
  threshold: unknown;
  available: string;
  occurred_at: Date;
  attempts: number;
}

export class LowBalanceAlertProcess {
  private subscriber: RunningProjection | undefined;
  private ownsSubscriber = false;
  private loop: PollLoop | undefined;
  private stopping: Promise<void> | undefined;
  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore<DomainEvent>,
    private readonly vault: PersonalDataVault,
    private readonly log: Logger,
    private readonly options: LowBalanceAlertOptions = {},
  ) {}

  /**
   * `shared`: a runner that already applies lowBalanceAlertSubscriber with other projections, so
   * the log is read and decoded once for all of them (the gateway does this); without it the
   * process runs its own subscriber.
   */
  start(shared?: RunningProjection): void {
    this.ownsSubscriber = shared === undefined;
    this.subscriber =
      shared ??
      runProjection(this.pool, this.store, lowBalanceAlertSubscriber, {
        onError: (error) =>
          this.log.error({ err: { name: (error as Error).name, message: (error as Error).message } }, 'low-balance alert subscriber failed; retrying'),
      });
    this.loop = startPollLoop(() => this.deliverDue(), {
      intervalMs: this.options.pollIntervalMs ?? 1_000,
      onError: (error) => this.log.error({ err: { name: (error as Error).name } }, 'low-balance alert delivery run failed'),
    });
  }

  reached(...args: Parameters<RunningProjection['reached']>): Promise<void> {
    if (!this.subscriber) throw new Error('low-balance alert process not started');
    return this.subscriber.reached(...args);
  }

  /** Idempotent: the work in hand finishes, then the subscriber lets go of its lock. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.loop?.stop();
      if (this.ownsSubscriber) await this.subscriber?.stop();
    })();
    return this.stopping;
  }

  /** One attempt for every notice that is due; returns how many attempts were made. */
  async deliverDue(limit = 50): Promise<number> {
    const { rows } = await this.pool.query<DueNotice>(
      `SELECT notice_id, account_id, threshold, available::text, occurred_at, attempts FROM low_balance_notices
        WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1`,
      [limit],
    );
    await Promise.all(rows.map((row) => this.attempt(row)));
    return rows.length;
  }

  private async attempt(row: DueNotice): Promise<void> {
    const attempt = row.attempts + 1;
    const settings = await this.pool.query<{ url: string; secret_ciphertext: string }>(
      'SELECT url, secret_ciphertext FROM low_balance_alert_settings WHERE account_id = $1',
      [row.account_id],
    );
    const target = settings.rows[0];
    const secret = target ? await this.vault.decrypt(row.account_id, target.secret_ciphertext) : null;
    let httpStatus: number | null = null;
    let error: string | null = null;
    if (!target || secret === null) {
      error = 'alerts_not_configured';
    } else {
      const body = noticeBody({
        noticeId: row.notice_id,
        accountId: row.account_id,
        threshold: row.threshold,
        available: BigInt(row.available),
        occurredAt: row.occurred_at,
      });
      try {
        const response = await fetch(target.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [SIGNATURE_HEADER]: signNotice(secret, body, Math.floor(Date.now() / 1_000)),
            'user-agent': 'Tollgate-Alerts/1',
          },
          body,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
        });
        httpStatus = response.status;
        await response.body?.cancel().catch(() => {});
        if (response.status < 200 || response.status >= 300) error = `http_${response.status}`;
      } catch (e) {
        // A name only: an error message may quote the URL, which may carry the customer's token.
        error = (e as Error).name === 'TimeoutError' ? 'timeout' : 'connection_failed';
      }
    }
    const delivered = error === null;
    const giveUp = !delivered && (attempt >= MAX_DELIVERY_ATTEMPTS || error === 'alerts_not_configured');
    const delayMs = (this.options.retryBaseMs ?? 30_000) * 2 ** (attempt - 1);
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO low_balance_notice_attempts (notice_id, attempt, attempted_at, http_status, outcome, error) VALUES ($1, $2, now(), $3, $4, $5)
         ON CONFLICT DO NOTHING`,
        [row.notice_id, attempt, httpStatus, delivered ? 'delivered' : 'failed', error],
      );
      await client.query(
        `UPDATE low_balance_notices SET attempts = $2, status = $3, next_attempt_at = now() + $4 * interval '1 millisecond' WHERE notice_id = $1 AND attempts = $5`,
        [row.notice_id, attempt, delivered ? 'delivered' : giveUp ? 'failed' : 'pending', delayMs, row.attempts],
      );
    });
    if (!delivered) this.log.warn({ noticeId: row.notice_id, attempt, httpStatus, error, gaveUp: giveUp }, 'low-balance notice not delivered');
  }
}

export interface NoticeView {
  readonly notice_id: string;
  readonly threshold: unknown;
  readonly available_usd: string;
  readonly occurred_at: string;
  readonly status: string;
  readonly attempts: readonly { attempt: number; attempted_at: string; http_status: number | null; outcome: string; error: string | null }[];
}

/** The account's recent notices and their delivery attempts, newest first. */
export async function recentNotices(pool: Pool, accountId: string, limit: number): Promise<NoticeView[]> {
  const { rows } = await pool.query<{ notice_id: string; threshold: unknown; available: string; occurred_at: Date; status: string }>(
    `SELECT notice_id, threshold, available::text, occurred_at, status FROM low_balance_notices WHERE account_id = $1 ORDER BY created_at DESC, notice_id LIMIT $2`,
    [accountId, limit],
  );
  const attempts = await pool.query<{
    notice_id: string;
    attempt: number;
    attempted_at: Date;
    http_status: number | null;
    outcome: string;
    error: string | null;
  }>('SELECT notice_id, attempt, attempted_at, http_status, outcome, error FROM low_balance_notice_attempts WHERE notice_id = ANY($1) ORDER BY attempt', [
    rows.map((r) => r.notice_id),
  ]);
  return rows.map((r) => ({
    notice_id: r.notice_id,
    threshold: r.threshold,
    available_usd: formatUsd(BigInt(r.available)),
    occurred_at: r.occurred_at.toISOString(),
    status: r.status,
    attempts: attempts.rows
      .filter((a) => a.notice_id === r.notice_id)
      .map((a) => ({ attempt: a.attempt, attempted_at: a.attempted_at.toISOString(), http_status: a.http_status, outcome: a.outcome, error: a.error })),
  }));
}
