import { createHash } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import type { CommandMetadata } from '../../domain/events/metadata';
import { eventMetadataFrom } from '../../domain/events/metadata';
import { NOTICE_KINDS, isEssential, noticeStreamId, type Notice, type NoticeKind } from '../../domain/notice';
import { noticeOf, type NoticeRow } from '../../projections/notices/notices';
import { VersionConflictError, type EventStore, type RecordedEvent } from '../ports/event-store';
import type { Migration } from '../ports/migration';
import type { SqlProjection } from '../read-models/runner';

/**
 * Notices in PostgreSQL: the `notices` read model (rebuildable from the log), and beside it what
 * customers did with them: which they have read, which kinds they turned off, and which were
 * mailed to whom (the mailer's record, so a notice is mailed to an account once).
 */
export const noticesMigration: Migration = {
  id: '0075_notices',
  sql: `
    CREATE TABLE notices (
      notice_id text PRIMARY KEY,
      kind text NOT NULL,
      account_ids text[],
      subject text NOT NULL,
      body text NOT NULL,
      effective_at timestamptz NOT NULL,
      ends_at timestamptz,
      about text,
      published_at timestamptz NOT NULL,
      seq bigserial NOT NULL
    );
    CREATE INDEX notices_accounts ON notices USING gin (account_ids);
    CREATE INDEX notices_seq ON notices (seq);
    CREATE TABLE notice_reads (
      account_id text NOT NULL,
      notice_id text NOT NULL,
      read_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, notice_id)
    );
    CREATE TABLE notice_preferences (
      account_id text NOT NULL,
      kind text NOT NULL,
      enabled boolean NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, kind)
    );
    CREATE TABLE notice_mailings (
      notice_id text NOT NULL,
      account_id text NOT NULL,
      email_id text,
      skipped text,
      recorded_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (notice_id, account_id)
    );
  `,
};

/**
 * A person's own choices (src/identity users), beside the account's: a member who turns a
 * non-essential kind off gets no email and no banner of it, whatever the account chose; the
 * account's choice (made with an API key) turns it off for every recipient of the account.
 */
export const noticeUserPreferencesMigration: Migration = {
  id: '0091_notice_user_preferences',
  sql: `
    CREATE TABLE notice_user_preferences (
      user_id text NOT NULL,
      kind text NOT NULL,
      enabled boolean NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, kind)
    );
  `,
};

/**
 * What a person has read (a dashboard session), apart from what the account has (an API key,
 * notice_reads): a banner is shown to people, so one member dismissing it must not hide it from
 * the others, who have not seen it (issue 18: "a banner until read"; preferences are per person
 * for the same reason). Keyed by person and notice: a notice to every account is read once.
 */
export const noticeUserReadsMigration: Migration = {
  id: '0097_notice_user_reads',
  sql: `
    CREATE TABLE notice_user_reads (
      user_id text NOT NULL,
      notice_id text NOT NULL,
      read_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (user_id, notice_id)
    );
  `,
};

export const noticesProjection: SqlProjection<DomainEvent> = {
  name: 'notices',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    const rows = events.flatMap((e) => noticeOf(e.streamId, e.id, e.event) ?? []);
    if (rows.length === 0) return;
    await db.query(
      `INSERT INTO notices (notice_id, kind, account_ids, subject, body, effective_at, ends_at, about, published_at)
       SELECT n.notice_id, n.kind, CASE WHEN n.account_ids IS NULL THEN NULL ELSE ARRAY(SELECT jsonb_array_elements_text(n.account_ids)) END,
              n.subject, n.body, n.effective_at, n.ends_at, n.about, n.published_at
         FROM jsonb_to_recordset($1::jsonb) AS n(notice_id text, kind text, account_ids jsonb, subject text, body text,
              effective_at timestamptz, ends_at timestamptz, about text, published_at timestamptz)
       ON CONFLICT (notice_id) DO NOTHING`,
      [
        JSON.stringify(
          rows.map((r: NoticeRow) => ({
            notice_id: r.noticeId,
            kind: r.kind,
            account_ids: r.accountIds,
            subject: r.subject,
            body: r.body,
            effective_at: r.effectiveAt,
            ends_at: r.endsAt,
            about: r.about,
            published_at: r.publishedAt,
          })),
        ),
      ],
    );
  },
  async reset(db) {
    await db.query('TRUNCATE notices');
  },
};

export interface NoticeView {
  readonly id: string;
  readonly kind: NoticeKind;
  readonly essential: boolean;
  readonly subject: string;
  readonly body: string;
  readonly effective_at: string;
  readonly ends_at: string | null;
  readonly about: string | null;
  readonly published_at: string;
  readonly read: boolean;
}

interface NoticeDbRow {
  notice_id: string;
  kind: NoticeKind;
  subject: string;
  body: string;
  effective_at: Date;
  ends_at: Date | null;
  about: string | null;
  published_at: Date;
  read: boolean;
}

const viewOf = (r: NoticeDbRow): NoticeView => ({
  id: r.notice_id,
  kind: r.kind,
  essential: isEssential(r.kind),
  subject: r.subject,
  body: r.body,
  effective_at: r.effective_at.toISOString(),
  ends_at: r.ends_at?.toISOString() ?? null,
  about: r.about,
  published_at: r.published_at.toISOString(),
  read: r.read,
});

/**
 * An account's notices, newest first; `unreadOnly` for the dashboard's banner (kinds the account,
 * or the signed-in person `userId`, turned off left out). Read or not: by that person when
 * `userId` is given (their own reads), else by the account (an API key's).
 */
export async function noticesOf(
  pool: Pool,
  accountId: string,
  options: { unreadOnly?: boolean; limit?: number; userId?: string | undefined } = {},
): Promise<NoticeView[]> {
  const { rows } = await pool.query<NoticeDbRow>(
    `SELECT n.notice_id, n.kind, n.subject, n.body, n.effective_at, n.ends_at, n.about, n.published_at, (r.notice_id IS NOT NULL) AS read
       FROM notices n
       LEFT JOIN (SELECT notice_id FROM notice_reads WHERE $4::text IS NULL AND account_id = $1
                  UNION ALL SELECT notice_id FROM notice_user_reads WHERE user_id = $4) r ON r.notice_id = n.notice_id
      WHERE (n.account_ids IS NULL OR n.account_ids @> ARRAY[$1]::text[])
        AND (NOT $2 OR (r.notice_id IS NULL AND NOT EXISTS (
              SELECT 1 FROM notice_preferences p WHERE p.account_id = $1 AND p.kind = n.kind AND NOT p.enabled)
            AND NOT EXISTS (
              SELECT 1 FROM notice_user_preferences u WHERE u.user_id = $4 AND u.kind = n.kind AND NOT u.enabled)))
      ORDER BY n.published_at DESC, n.seq DESC
      LIMIT $3`,
    [accountId, options.unreadOnly === true, options.limit ?? 200, options.userId ?? null],
  );
  return rows.map(viewOf);
}

/**
 * Marks a notice of the account read: for the person `userId` when given (a dashboard session;
 * the other members still have it unread), else for the account (an API key). False when the
 * account has no such notice.
 */
export async function markNoticeRead(pool: Pool, accountId: string, noticeId: string, userId?: string): Promise<boolean> {
  const { rows } = await pool.query('SELECT 1 FROM notices n WHERE n.notice_id = $2 AND (n.account_ids IS NULL OR n.account_ids @> ARRAY[$1]::text[])', [
    accountId,
    noticeId,
  ]);
  if (rows.length === 0) return false;
  if (userId === undefined) {
    await pool.query('INSERT INTO notice_reads (account_id, notice_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [accountId, noticeId]);
  } else {
    await pool.query('INSERT INTO notice_user_reads (user_id, notice_id) VALUES ($1, $2) ON CONFLICT DO NOTHING', [userId, noticeId]);
  }
  return true;
}

export interface NoticePreference {
  readonly kind: NoticeKind;
  readonly essential: boolean;
  readonly enabled: boolean;
}

/** Every kind with whether this account receives it; essential kinds are always on. */
export async function noticePreferencesOf(pool: Pool, accountId: string): Promise<NoticePreference[]> {
  const { rows } = await pool.query<{ kind: string; enabled: boolean }>('SELECT kind, enabled FROM notice_preferences WHERE account_id = $1', [accountId]);
  const stored = new Map(rows.map((r) => [r.kind, r.enabled]));
  return NOTICE_KINDS.map((kind) => ({ kind, essential: isEssential(kind), enabled: isEssential(kind) || (stored.get(kind) ?? true) }));
}

/** Every kind with whether this person receives it (their own choice; essential kinds always on). */
export async function userNoticePreferencesOf(pool: Pool, userId: string): Promise<NoticePreference[]> {
  const { rows } = await pool.query<{ kind: string; enabled: boolean }>('SELECT kind, enabled FROM notice_user_preferences WHERE user_id = $1', [userId]);
  const stored = new Map(rows.map((r) => [r.kind, r.enabled]));
  return NOTICE_KINDS.map((kind) => ({ kind, essential: isEssential(kind), enabled: isEssential(kind) || (stored.get(kind) ?? true) }));
}

/** A person's own choices; an essential kind cannot be turned off (nothing is changed then). */
export async function setUserNoticePreferences(
  pool: Pool,
  userId: string,
  changes: readonly { readonly kind: NoticeKind; readonly enabled: boolean }[],
): Promise<PreferenceRefusal | undefined> {
  return savePreferences(pool, { table: 'notice_user_preferences', column: 'user_id', id: userId }, changes);
}

export type PreferenceRefusal = { readonly error: 'notice_kind_essential'; readonly kind: NoticeKind };

/** Turns non-essential kinds on or off; an essential kind cannot be turned off (nothing is changed then). */
export async function setNoticePreferences(
  pool: Pool,
  accountId: string,
  changes: readonly { readonly kind: NoticeKind; readonly enabled: boolean }[],
): Promise<PreferenceRefusal | undefined> {
  return savePreferences(pool, { table: 'notice_preferences', column: 'account_id', id: accountId }, changes);
}

/** One store for both: an account's choices (notice_preferences) or a person's (notice_user_preferences). */
async function savePreferences(
  pool: Pool,
  target: { readonly table: 'notice_preferences' | 'notice_user_preferences'; readonly column: 'account_id' | 'user_id'; readonly id: string },
  changes: readonly { readonly kind: NoticeKind; readonly enabled: boolean }[],
): Promise<PreferenceRefusal | undefined> {
  const refused = changes.find((c) => !c.enabled && isEssential(c.kind));
  if (refused) return { error: 'notice_kind_essential', kind: refused.kind };
  if (changes.length === 0) return undefined;
  await pool.query(
    `INSERT INTO ${target.table} (${target.column}, kind, enabled)
     SELECT $1, c.kind, c.enabled FROM jsonb_to_recordset($2::jsonb) AS c(kind text, enabled boolean)
     ON CONFLICT (${target.column}, kind) DO UPDATE SET enabled = excluded.enabled, updated_at = now()`,
    [target.id, JSON.stringify(changes)],
  );
  return undefined;
}

/** Every notice for the operator, newest first, with its audience size (null: every account). */
export async function allNotices(pool: Pool, limit = 200): Promise<(Omit<NoticeView, 'read'> & { audience: number | null })[]> {
  const { rows } = await pool.query<Omit<NoticeDbRow, 'read'> & { audience: number | null }>(
    `SELECT notice_id, kind, subject, body, effective_at, ends_at, about, published_at, cardinality(account_ids) AS audience
       FROM notices WHERE kind NOT IN ('low_balance', 'auto_top_up_receipt', 'auto_top_up_failed', 'suspension', 'refund')
      ORDER BY published_at DESC, seq DESC LIMIT $1`,
    [limit],
  );
  return rows.map((r) => {
    const { read: _read, ...view } = viewOf({ ...r, read: false });
    return { ...view, audience: r.audience };
  });
}

/**
 * Publishes a notice: NoticePublished in the notice's own stream, appended only if the stream is
 * new, so the same notice id published twice (a restart, a second instance) is one notice.
 * Returns false when another notice stream of that id was there before.
 */
export async function publishNotice(store: EventStore<DomainEvent>, notice: Notice, metadata: CommandMetadata): Promise<boolean> {
  try {
    await store.appendToStream(
      noticeStreamId(notice.noticeId),
      [{ id: deterministicId(`NoticePublished|${notice.noticeId}`), event: { type: 'NoticePublished', data: notice, metadata: eventMetadataFrom(metadata) } }],
      { expectedVersion: 'no_stream' },
    );
    return true;
  } catch (error) {
    if (error instanceof VersionConflictError) return false;
    throw error;
  }
}

/** A UUID derived from a name, so a retried append carries the same event id. */
export function deterministicId(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
