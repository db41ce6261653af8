import type { Pool, PoolClient } from 'pg';
import { RETENTION_STREAM_ID } from '../../domain/retention';
import type { DomainEvent } from '../../domain/events';
import { AUDIT_ENTRY_FIELDS, GENESIS_HASH, verifyStep, type BrokenLink, type ChainedAuditEntry, type ChainHead } from '../../projections/audit/audit';
import type { EventStore } from '../ports/event-store';

type Queryable = Pick<Pool | PoolClient, 'query'>;

/** Filters of the audit query; `actor` and `target` match an id or `kind:id`; from inclusive, to exclusive. */
export interface AuditFilter {
  readonly actor?: string;
  readonly action?: string;
  readonly target?: string;
  readonly from?: string;
  readonly to?: string;
  /** most entries returned, oldest first; default 1,000 */
  readonly limit?: number;
  /** entries after this entry number (paging) */
  readonly after?: bigint;
}

type AuditRow = Record<string, unknown> & { prev_hash: string; hash: string };

/** Numbers and ids come back as text, exactly as they were hashed. */
const COLUMNS = [
  ...AUDIT_ENTRY_FIELDS.map(({ column, sqlType }) =>
    sqlType === 'bigint' || sqlType === 'numeric' || sqlType === 'uuid' ? `${column}::text AS ${column}` : column,
  ),
  'prev_hash',
  'hash',
].join(', ');

function entryOf(row: AuditRow): ChainedAuditEntry {
  const entry: Record<string, unknown> = { prevHash: row.prev_hash, hash: row.hash };
  for (const { field, column, sqlType } of AUDIT_ENTRY_FIELDS) entry[field] = sqlType === 'timestamptz' ? (row[column] as Date).toISOString() : row[column];
  return entry as unknown as ChainedAuditEntry;
}

/** Audit entries matching the filter, oldest first. */
export async function queryAudit(db: Queryable, filter: AuditFilter = {}): Promise<ChainedAuditEntry[]> {
  const where: string[] = [];
  const params: unknown[] = [];
  const param = (value: unknown) => {
    params.push(value);
    return `$${params.length}`;
  };
  if (filter.actor !== undefined) {
    const p = param(filter.actor);
    where.push(`(actor_id = ${p} OR actor_kind || ':' || actor_id = ${p})`);
  }
  if (filter.target !== undefined) {
    const p = param(filter.target);
    where.push(`(target_id = ${p} OR target_kind || ':' || target_id = ${p})`);
  }
  if (filter.action !== undefined) where.push(`action = ${param(filter.action)}`);
  if (filter.from !== undefined) where.push(`occurred_at >= ${param(filter.from)}::timestamptz`);
  if (filter.to !== undefined) where.push(`occurred_at < ${param(filter.to)}::timestamptz`);
  if (filter.after !== undefined) where.push(`entry_no > ${param(filter.after.toString())}::bigint`);
  const { rows } = await db.query<AuditRow>(
    `SELECT ${COLUMNS} FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY audit_log.entry_no LIMIT ${param(filter.limit ?? 1_000)}`,
    params,
  );
  return rows.map(entryOf);
}

export type ChainVerification =
  | { readonly ok: true; readonly entries: number; readonly anchor: ChainHead; readonly head: ChainHead }
  | {
      readonly ok: false;
      readonly entries: number;
      readonly anchor: ChainHead;
      /** the first link that does not hold; position and event id when the entry is still there */
      readonly broken: BrokenLink & { readonly positionTx: string | null; readonly positionSeq: string | null; readonly eventId: string | null };
    };

const BATCH = 5_000;

/**
 * The anchors the chain may start at: genesis, and each anchor a retention run recorded in the
 * event log (RetentionRunCompleted), which the audit projection moves the start to.
 */
export async function recordedAuditAnchors(store: Pick<EventStore<DomainEvent>, 'readStream'>): Promise<ChainHead[]> {
  const anchors: ChainHead[] = [{ entryNo: 0n, hash: GENESIS_HASH }];
  const { events } = await store.readStream(RETENTION_STREAM_ID);
  for (const { event } of events) if (event.type === 'RetentionRunCompleted' && event.data.auditAnchor) anchors.push(event.data.auditAnchor);
  return anchors;
}

/**
 * Recomputes the audit chain from its anchor (the last purged entry, or genesis) to its head and
 * reports the first broken link: an altered entry, one removed from the middle or the end, or one
 * inserted. Reads one snapshot, so a projection writing meanwhile is not mistaken for tampering.
 * Given the anchors retention recorded (recordedAuditAnchors), it also checks that the chain
 * starts at one of them: entries cut from the head with the anchor moved along are found too.
 */
export async function verifyAuditChain(pool: Pool, recordedAnchors?: readonly ChainHead[]): Promise<ChainVerification> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows: chainRows } = await client.query<{ anchor_entry_no: string; anchor_hash: string; head_entry_no: string; head_hash: string }>(
      'SELECT anchor_entry_no::text AS anchor_entry_no, anchor_hash, head_entry_no::text AS head_entry_no, head_hash FROM audit_chain',
    );
    const chainRow = chainRows[0];
    if (!chainRow) throw new Error('audit_chain has no row: migration 0020_audit_log was not applied');
    const anchor: ChainHead = { entryNo: BigInt(chainRow.anchor_entry_no), hash: chainRow.anchor_hash };
    if (recordedAnchors && !recordedAnchors.some((a) => a.entryNo === anchor.entryNo && a.hash === anchor.hash)) {
      return {
        ok: false,
        entries: 0,
        anchor,
        broken: {
          entryNo: (anchor.entryNo + 1n).toString(),
          problem: 'anchor_not_recorded',
          anchor: anchor.entryNo.toString(),
          positionTx: null,
          positionSeq: null,
          eventId: null,
        },
      };
    }
    let at = anchor;
    let entries = 0;
    let first = true;
    for (;;) {
      const { rows } = await client.query<AuditRow>(
        // The first batch includes anything at or before the anchor: such rows should have been purged.
        `SELECT ${COLUMNS} FROM audit_log WHERE entry_no > $1 ORDER BY audit_log.entry_no LIMIT $2`,
        [first ? '0' : at.entryNo.toString(), BATCH],
      );
      first = false;
      const batch = rows.map(entryOf);
      const step = verifyStep(at, batch);
      if (!step.ok) {
        const entry = batch.find((e) => e.entryNo === step.broken.entryNo);
        return {
          ok: false,
          entries,
          anchor,
          broken: { ...step.broken, positionTx: entry?.positionTx ?? null, positionSeq: entry?.positionSeq ?? null, eventId: entry?.eventId ?? null },
        };
      }
      entries += batch.length;
      at = step.head;
      if (batch.length < BATCH) break;
    }
    // Entries cut from the end leave every remaining link intact: the recorded head says where it ends.
    if (at.entryNo.toString() !== chainRow.head_entry_no || at.hash !== chainRow.head_hash) {
      return {
        ok: false,
        entries,
        anchor,
        broken: { entryNo: (at.entryNo + 1n).toString(), problem: 'head_mismatch', positionTx: null, positionSeq: null, eventId: null },
      };
    }
    return { ok: true, entries, anchor, head: at };
  } finally {
    await client.query('ROLLBACK').catch(() => {});
    client.release();
  }
}

/** One line naming the broken link, for the CLI and the HTTP answer. */
export function describeBrokenLink(broken: Extract<ChainVerification, { ok: false }>['broken']): string {
  const where = broken.positionTx !== null ? ` (log position ${broken.positionTx}/${broken.positionSeq}, event ${broken.eventId})` : '';
  switch (broken.problem) {
    case 'hash_mismatch':
      return `audit entry ${broken.entryNo}${where} was altered: its hash does not match its contents`;
    case 'prev_hash_mismatch':
      return `audit entry ${broken.entryNo}${where} does not link to the entry before it`;
    case 'missing_entries':
      return `audit entries ${broken.expected} to ${BigInt(broken.entryNo) - 1n} are missing before entry ${broken.entryNo}${where}`;
    case 'head_mismatch':
      return `audit entries from ${broken.entryNo} on are missing or added: the chain does not end at its recorded head`;
    case 'anchor_not_recorded':
      return `the audit chain starts after entry ${broken.anchor}, an anchor no retention run recorded: entries were removed from its head outside retention`;
  }
}
