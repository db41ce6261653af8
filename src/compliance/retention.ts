import { eraseMembersOf } from '../identity/erasure';
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';
import { accountStreamId } from '../../domain/account';
import type { Actor, CommandMetadata } from '../../domain/events/metadata';
import { RETENTION_STREAM_ID, retentionDecider } from '../../domain/retention';
import { type IsoInstant } from '../../domain/time';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import {
  cutoffFor,
  DEFAULT_RETENTION_POLICY,
  dueErasures,
  planRetention,
  type HeldGroup,
  type PersonalDataRow,
  type RetentionItem,
  type RetentionPolicy,
} from '../../projections/retention/retention';
import { createGroupCommitHandler } from '../handlers/group-commit';
import type { Ledger } from '../ledger';

/**
 * A read model that holds metadata per request (one row per request, with the time it was
 * written). Retention purges its rows after the request-metadata period. The finance read models
 * hold none today (usage is aggregated per day); a per-request one registers itself here.
 */
export interface RequestMetadataReadModel {
  readonly name: string;
  readonly table: string;
  readonly timeColumn: string;
}

export const REQUEST_METADATA_READ_MODELS: readonly RequestMetadataReadModel[] = [];

const IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

function checkIdentifiers(model: RequestMetadataReadModel): void {
  if (!IDENTIFIER.test(model.table) || !IDENTIFIER.test(model.timeColumn))
    throw new Error(`read model ${model.name}: table and column must be plain identifiers`);
}

async function groupsOf(pool: Pool, table: string, timeColumn: string): Promise<HeldGroup[]> {
  const { rows } = await pool.query<{ day: string; count: number; last: Date }>(
    `SELECT to_char(${timeColumn} AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::int AS count, max(${timeColumn}) AS last
       FROM ${table} GROUP BY 1 ORDER BY 1`,
  );
  return rows.map((r) => ({ day: r.day, count: r.count, last: r.last.toISOString() }));
}

async function existing(pool: Pool, models: readonly RequestMetadataReadModel[]): Promise<RequestMetadataReadModel[]> {
  const present: RequestMetadataReadModel[] = [];
  for (const model of models) {
    checkIdentifiers(model);
    const { rows } = await pool.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [model.table]);
    if (rows[0]?.t) present.push(model);
  }
  return present;
}

async function personalDataRows(pool: Pool): Promise<PersonalDataRow[]> {
  const { rows } = await pool.query<{ account_id: string; closed_at: Date | null; erase_due_at: Date | null; erased_at: Date | null }>(
    'SELECT account_id, closed_at, erase_due_at, erased_at FROM personal_data_retention WHERE erased_at IS NULL ORDER BY account_id',
  );
  const iso = (d: Date | null) => (d === null ? null : d.toISOString());
  return rows.map((r) => ({ accountId: r.account_id, closedAt: iso(r.closed_at), eraseDueAt: iso(r.erase_due_at), erasedAt: iso(r.erased_at) }));
}

/**
 * The request log's entries per day, from the PostgreSQL event store (its max-age streams); none
 * where the events live elsewhere (KurrentDB expires them by itself).
 */
async function requestLogGroups(pool: Pool): Promise<{ readModel: string; groups: HeldGroup[] }[]> {
  const { rows: present } = await pool.query<{ t: string | null }>("SELECT to_regclass('stream_max_ages')::text AS t");
  if (!present[0]?.t) return [];
  // Each entry expires at its stream's maximum age (TOLLGATE_REQUEST_LOG_RETENTION_DAYS when written), not the default policy's.
  const { rows } = await pool.query<{ day: string; count: number; last: Date; expires: Date }>(
    `SELECT to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, count(*)::int AS count, max(e.recorded_at) AS last,
            max(e.recorded_at + make_interval(secs => m.max_age_seconds)) AS expires
       FROM events e JOIN stream_max_ages m ON m.stream_id = e.stream_id GROUP BY 1 ORDER BY 1`,
  );
  return rows.length === 0
    ? []
    : [{ readModel: 'request log', groups: rows.map((r) => ({ day: r.day, count: r.count, last: r.last.toISOString(), expiresAt: r.expires.toISOString() })) }];
}

export interface RetentionOptions {
  readonly now?: IsoInstant;
  readonly policy?: RetentionPolicy;
  readonly requestMetadataReadModels?: readonly RequestMetadataReadModel[];
}

/** What will expire or be erased when (the retention and audit projections must be current). */
export async function retentionPlan(pool: Pool, options: RetentionOptions = {}): Promise<RetentionItem[]> {
  const now = options.now ?? new Date().toISOString();
  const models = await existing(pool, options.requestMetadataReadModels ?? REQUEST_METADATA_READ_MODELS);
  const readModels = await Promise.all(models.map(async (m) => ({ readModel: m.name, groups: await groupsOf(pool, m.table, m.timeColumn) })));
  return planRetention(
    {
      now,
      auditEntries: await groupsOf(pool, 'audit_log', 'occurred_at'),
      requestMetadata: [...(await requestLogGroups(pool)), ...readModels],
      personalData: await personalDataRows(pool),
    },
    options.policy,
  );
}

/**
 * The next account erasure after `after` (its personal data is due to go then), or null. The
 * schedule wakes for it exactly, not at its next check: the privacy policy promises removal
 * within 30 days, not within 30 days and a check interval.
 */
export async function nextErasureDueAt(pool: Pool, after: IsoInstant): Promise<Date | null> {
  const { rows } = await pool.query<{ due: Date | null }>(
    'SELECT min(erase_due_at) AS due FROM personal_data_retention WHERE erased_at IS NULL AND erase_due_at > $1',
    [after],
  );
  return rows[0]?.due ?? null;
}

/**
 * The earliest instant after `after` at which something held becomes due: an account's erasure,
 * the head of the audit chain passing the audit period, or the oldest entry of a max-age stream
 * (the request log) passing its stream's maximum age. Null when nothing held becomes due after
 * `after` (what was due before it was carried out by that run, or refused and retried daily).
 * The schedule runs when this has passed, so nothing waits for the next daily run.
 */
export async function nextRetentionDueAt(pool: Pool, after: IsoInstant, policy: RetentionPolicy = DEFAULT_RETENTION_POLICY): Promise<Date | null> {
  const candidates: Date[] = [];
  const { rows: erasure } = await pool.query<{ due: Date | null }>(
    'SELECT min(erase_due_at) AS due FROM personal_data_retention WHERE erased_at IS NULL AND erase_due_at > $1',
    [after],
  );
  if (erasure[0]?.due) candidates.push(erasure[0].due);
  // Only the head counts: entries are purged from the head of the chain, never from its middle.
  const { rows: audit } = await pool.query<{ due: Date | null }>(
    `SELECT occurred_at + make_interval(days => $1) AS due FROM audit_log ORDER BY entry_no LIMIT 1`,
    [policy.auditDays],
  );
  if (audit[0]?.due && audit[0].due.getTime() > new Date(after).getTime()) candidates.push(audit[0].due);
  const { rows: present } = await pool.query<{ t: string | null }>("SELECT to_regclass('stream_max_ages')::text AS t");
  if (present[0]?.t) {
    // Each max-age stream's oldest remaining event, through the (stream_id, stream_revision) index.
    const { rows: log } = await pool.query<{ due: Date | null }>(
      `SELECT min(first.recorded_at + make_interval(secs => m.max_age_seconds)) AS due
         FROM stream_max_ages m
         CROSS JOIN LATERAL (SELECT e.recorded_at FROM events e WHERE e.stream_id = m.stream_id ORDER BY e.stream_revision LIMIT 1) first
        WHERE first.recorded_at + make_interval(secs => m.max_age_seconds) > $1`,
      [after],
    );
    if (log[0]?.due) candidates.push(log[0].due);
  }
  return candidates.length === 0 ? null : new Date(Math.min(...candidates.map((d) => d.getTime())));
}

export interface RetentionReport {
  readonly runId: string;
  readonly asOf: IsoInstant;
  readonly personalDataErased: readonly string[];
  /** due erasures the ledger refused, by account and refusal name */
  readonly erasuresRefused: readonly { readonly accountId: string; readonly error: string }[];
  readonly auditEntriesPurged: number;
  readonly auditAnchor: { readonly entryNo: string; readonly hash: string } | null;
  readonly requestMetadataPurged: number;
  /** usage_daily rows whose latency (a sum over the day's request-log entries) was cleared with the request log */
  readonly usageLatencyCleared: number;
  /** false when the run id had been recorded before (a retry): nothing new was written */
  readonly recorded: boolean;
}

/**
 * Carries out what is due, then records it on the retention stream:
 * 1. erasure: for each closed account past its date, destroy its key (crypto-shredding), then
 *    append PersonalDataErased. Key first: if the run dies in between, the next run destroys the
 *    (already destroyed) key again and appends the event, never the other way round;
 * 2. audit entries older than the audit period are removed from the head of the chain, and the
 *    hash of the last removed entry becomes the chain's anchor, so the rest still verifies (the
 *    anchor is recorded with the run, and the audit projection removes the entries when it
 *    applies the record: see planAuditPurge);
 * 3. request-log entries past their stream's maximum age are scavenged, and request metadata rows
 *    older than their period are removed from the read models holding them;
 * 4. the usage read model's latency of each day whose request-log entries have begun to expire is
 *    cleared (see clearUsageLatency).
 */
export async function runRetention(
  deps: { readonly pool: Pool; readonly ledger: Ledger; readonly vault: PersonalDataVault },
  options: RetentionOptions & { readonly runId?: string; readonly actor?: Actor } = {},
): Promise<RetentionReport> {
  const { pool, ledger, vault } = deps;
  const now = options.now ?? new Date().toISOString();
  const policy = options.policy ?? DEFAULT_RETENTION_POLICY;
  const runId = options.runId ?? `retention_${randomUUID()}`;
  const metadata: CommandMetadata = { now, correlationId: runId, causationId: runId, actor: options.actor ?? { kind: 'system', process: 'retention' } };

  const erased: string[] = [];
  const refused: { accountId: string; error: string }[] = [];
  for (const accountId of dueErasures(await personalDataRows(pool), now)) {
    const stream = accountStreamId(accountId);
    const { state } = await ledger.accounts.load(stream);
    if (state.status !== 'closed') {
      refused.push({ accountId, error: 'account_not_closed' });
      continue;
    }
    if (!state.personalDataErased) await vault.destroyKey(accountId);
    // Its members' credentials and personal data go too, unless they belong to another account.
    await eraseMembersOf(pool, vault, accountId, new Set([...erased, accountId]));
    const result = await ledger.accounts.handle(stream, { type: 'ErasePersonalData', data: {}, metadata });
    if (result.ok) erased.push(accountId);
    else if (result.error.error !== 'personal_data_already_erased') refused.push({ accountId, error: result.error.error });
  }

  const audit = await planAuditPurge(pool, cutoffFor(now, policy.auditDays));

  // The request log's streams carry their own maximum age: the store deletes what is past it
  // (PostgreSQL's scavenge; KurrentDB expires by itself and has none).
  let requestMetadataPurged = ledger.store.scavenge ? (await ledger.store.scavenge(new Date(now))).deletedEvents : 0;
  for (const model of await existing(pool, options.requestMetadataReadModels ?? REQUEST_METADATA_READ_MODELS)) {
    const { rowCount } = await pool.query(`DELETE FROM ${model.table} WHERE ${model.timeColumn} < $1`, [cutoffFor(now, policy.requestMetadataDays)]);
    requestMetadataPurged += rowCount ?? 0;
  }

  const usageLatencyCleared = await clearUsageLatency(pool, cutoffFor(now, ledger.requestLog.retentionDays));

  const retention = createGroupCommitHandler(ledger.store, retentionDecider);
  const recorded = await retention.handle(RETENTION_STREAM_ID, {
    type: 'RecordRetentionRun',
    data: {
      runId,
      auditEntriesPurged: BigInt(audit.purged),
      auditAnchor: audit.anchor === null ? null : { entryNo: BigInt(audit.anchor.entryNo), hash: audit.anchor.hash },
      requestMetadataPurged: BigInt(requestMetadataPurged),
      personalDataErased: erased,
    },
    metadata,
  });
  if (!recorded.ok) throw new Error(`retention run ${runId} was not recorded: ${recorded.error.error}`);
  return {
    runId,
    asOf: now,
    personalDataErased: erased,
    erasuresRefused: refused,
    auditEntriesPurged: audit.purged,
    auditAnchor: audit.anchor,
    requestMetadataPurged,
    usageLatencyCleared,
    recorded: recorded.events.length > 0,
  };
}

/**
 * Clears the latency of usage days whose request log has begun to expire, keeping their requests,
 * tokens, cost and errors. The privacy policy keeps request metadata ("which endpoints you call,
 * which models you use, token counts, response times, and error rates", section 3) for 90 days
 * ("API request logs are retained for 90 days", section 6) and wallet records forever. Usage's
 * counts, tokens, cost and errors come from the wallet's events (kept forever, so a rebuild
 * yields them again); its latency comes only from the request log, and a day's sum over a key
 * that made one request is that request's response time. So a day's latency goes when its
 * earliest possible entry (at 00:00 UTC) passes the request log's period: never held past it,
 * and what a rebuild from the remaining log would give. Returns the rows cleared.
 */
export async function clearUsageLatency(pool: Pool, cutoff: IsoInstant): Promise<number> {
  const { rows } = await pool.query<{ t: string | null }>("SELECT to_regclass('usage_daily')::text AS t");
  if (!rows[0]?.t) return 0;
  const { rowCount } = await pool.query(
    `UPDATE usage_daily SET latency_ms_sum = 0, latency_count = 0
      WHERE latency_count <> 0 AND day <= ($1::timestamptz AT TIME ZONE 'UTC')::date`,
    [cutoff],
  );
  return rowCount ?? 0;
}

/**
 * The audit entries a run removes: the longest run of entries from the head of the chain that all
 * happened before `cutoff` (an entry is never removed while an older-numbered one stays, so the
 * chain keeps one start), and the new anchor, the last of them. Nothing is deleted here: the run
 * records the anchor in RetentionRunCompleted first, and the audit projection deletes up to it
 * when it applies that event (live, and again on a rebuild). So the table never starts at an
 * anchor that is not recorded in the log, even if the run dies in between, and `audit
 * verify-chain` can check the start of the chain against the recorded anchors.
 */
export async function planAuditPurge(pool: Pool, cutoff: IsoInstant): Promise<{ purged: number; anchor: { entryNo: string; hash: string } | null }> {
  const { rows } = await pool.query<{ anchor_entry_no: string }>('SELECT anchor_entry_no::text AS anchor_entry_no FROM audit_chain');
  if (!rows[0]) throw new Error('audit_chain has no row: migration 0020_audit_log was not applied');
  const { rows: through } = await pool.query<{ entry_no: string | null }>(
    `SELECT COALESCE((SELECT min(entry_no) - 1 FROM audit_log WHERE occurred_at >= $1), (SELECT max(entry_no) FROM audit_log))::text AS entry_no`,
    [cutoff],
  );
  const last = through[0]?.entry_no ?? null;
  if (last === null || BigInt(last) <= BigInt(rows[0].anchor_entry_no)) return { purged: 0, anchor: null };
  const { rows: lastRow } = await pool.query<{ hash: string; purged: number }>(
    'SELECT hash, (SELECT count(*)::int FROM audit_log WHERE entry_no > $2 AND entry_no <= $1) AS purged FROM audit_log WHERE entry_no = $1',
    [last, rows[0].anchor_entry_no],
  );
  if (!lastRow[0]) throw new Error(`audit entry ${last} is missing: run audit verify-chain`);
  return { purged: lastRow[0].purged, anchor: { entryNo: last, hash: lastRow[0].hash } };
}
