import type { DomainEvent } from '../../domain/events';
import type { ClosureReason } from '../../domain/account';
import { addMs, isAtOrAfter, toEpochMs, type IsoInstant } from '../../domain/time';

/**
 * What Tollgate keeps, for how long, and what is due now. Pure: the SQL side
 * (src/read-models/retention.ts, src/compliance/retention.ts) gathers the inputs and carries out
 * the plan.
 *
 * - Request metadata (endpoint, upstream, status, timings, reported usage) is kept 90 days: it is
 *   in the request log (max-age streams, domain/request-log) and in any read model registered as
 *   holding it per request. Wallet events keep only what money needs. Settlements and releases
 *   stored before the request log existed (version 1) still carry it (`request`): events are
 *   immutable, so it stays in them, but it is dropped on read, so no rebuilt read model holds it.
 * - Audit entries: 90 days. The chain stays verifiable: the hash of the last purged entry becomes
 *   its anchor.
 * - Wallet transactions (money events): never, so every balance can always be recomputed.
 * - Personal data: erased (its key destroyed) within 30 days of the account's closure; at once
 *   when the account was closed on an erasure request.
 */
export interface RetentionPolicy {
  readonly requestMetadataDays: number;
  readonly auditDays: number;
  readonly personalDataDays: number;
}

export const DEFAULT_RETENTION_POLICY: RetentionPolicy = { requestMetadataDays: 90, auditDays: 90, personalDataDays: 30 };

const DAY_MS = 86_400_000;

/** Anything that happened before this instant has outlived a period of `days` at `now`. */
export function cutoffFor(now: IsoInstant, days: number): IsoInstant {
  return addMs(now, -days * DAY_MS);
}

/** When an account's personal data must be gone, given how it was closed. */
export function erasureDueAt(closedAt: IsoInstant, reason: ClosureReason, policy: RetentionPolicy = DEFAULT_RETENTION_POLICY): IsoInstant {
  return reason === 'erasure_request' ? new Date(toEpochMs(closedAt)).toISOString() : addMs(closedAt, policy.personalDataDays * DAY_MS);
}

/** A change to the personal-data schedule (one row per account). */
export type PersonalDataChange =
  | { readonly op: 'opened'; readonly accountId: string; readonly openedAt: IsoInstant }
  | { readonly op: 'closed'; readonly accountId: string; readonly closedAt: IsoInstant; readonly reason: ClosureReason; readonly eraseDueAt: IsoInstant }
  | { readonly op: 'erased'; readonly accountId: string; readonly erasedAt: IsoInstant };

const ACCOUNT_STREAM = /^account-(.+)$/;

export function personalDataChange(streamId: string, event: DomainEvent, policy: RetentionPolicy = DEFAULT_RETENTION_POLICY): PersonalDataChange | null {
  const accountId = ACCOUNT_STREAM.exec(streamId)?.[1];
  if (accountId === undefined) return null;
  const at = new Date(toEpochMs(event.metadata.occurredAt)).toISOString();
  switch (event.type) {
    case 'AccountOpened':
      return { op: 'opened', accountId, openedAt: at };
    case 'AccountClosed':
      return { op: 'closed', accountId, closedAt: at, reason: event.data.reason, eraseDueAt: erasureDueAt(at, event.data.reason, policy) };
    case 'PersonalDataErased':
      return { op: 'erased', accountId, erasedAt: at };
    default:
      return null;
  }
}

export interface PersonalDataRow {
  readonly accountId: string;
  readonly closedAt: IsoInstant | null;
  readonly eraseDueAt: IsoInstant | null;
  readonly erasedAt: IsoInstant | null;
}

/** Held data of one kind, grouped by the UTC day it was written: `last` is the newest instant of the group. */
export interface HeldGroup {
  readonly day: string;
  readonly count: number;
  readonly last: IsoInstant;
  /** when the group's newest entry expires, where its store says so (a max-age stream's age); else from the policy */
  readonly expiresAt?: IsoInstant;
}

export interface RetentionInputs {
  readonly now: IsoInstant;
  readonly auditEntries: readonly HeldGroup[];
  /** per read model holding per-request metadata */
  readonly requestMetadata: readonly { readonly readModel: string; readonly groups: readonly HeldGroup[] }[];
  /** accounts whose personal data is still held (erased ones are left out by the caller or here) */
  readonly personalData: readonly PersonalDataRow[];
}

export type RetentionCategory = 'audit_entries' | 'request_metadata' | 'personal_data' | 'wallet_transactions';

export interface RetentionItem {
  readonly category: RetentionCategory;
  /** what it is about, non-personal: an account id, a read model and day */
  readonly subject: string;
  /** how many rows or entries; null where it is not counted (kept items) */
  readonly count: number | null;
  /** when it expires or must be erased; null = kept (forever, or until an event sets a date) */
  readonly expiresAt: IsoInstant | null;
  /** expiresAt has passed: the next retention run carries it out */
  readonly due: boolean;
  readonly action: 'purge' | 'erase_personal_data' | 'keep';
}

/** What will expire or be erased when, soonest first; kept items last. */
export function planRetention(inputs: RetentionInputs, policy: RetentionPolicy = DEFAULT_RETENTION_POLICY): RetentionItem[] {
  const { now } = inputs;
  const dated = (category: RetentionCategory, subject: string, count: number, expiresAt: IsoInstant, action: RetentionItem['action']): RetentionItem => ({
    category,
    subject,
    count,
    expiresAt,
    due: isAtOrAfter(now, expiresAt),
    action,
  });
  const items: RetentionItem[] = [];
  for (const g of inputs.auditEntries) {
    items.push(dated('audit_entries', `audit log ${g.day}`, g.count, addMs(g.last, policy.auditDays * DAY_MS), 'purge'));
  }
  for (const model of inputs.requestMetadata) {
    for (const g of model.groups) {
      items.push(dated('request_metadata', `${model.readModel} ${g.day}`, g.count, g.expiresAt ?? addMs(g.last, policy.requestMetadataDays * DAY_MS), 'purge'));
    }
  }
  let heldWhileOpen = 0;
  for (const account of inputs.personalData) {
    if (account.erasedAt !== null) continue;
    if (account.eraseDueAt === null) {
      heldWhileOpen += 1;
      continue;
    }
    items.push(dated('personal_data', `account ${account.accountId}`, 1, account.eraseDueAt, 'erase_personal_data'));
  }
  items.sort((a, b) => toEpochMs(a.expiresAt!) - toEpochMs(b.expiresAt!) || (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0));
  if (heldWhileOpen > 0) {
    items.push({
      category: 'personal_data',
      subject: `accounts not closed (erased ${policy.personalDataDays} days after closure)`,
      count: heldWhileOpen,
      expiresAt: null,
      due: false,
      action: 'keep',
    });
  }
  items.push({ category: 'wallet_transactions', subject: 'money events in the ledger', count: null, expiresAt: null, due: false, action: 'keep' });
  items.push({
    category: 'request_metadata',
    subject:
      'request metadata inside settlements and releases stored before the request log (version 1): dropped on read, so no read model holds it; the immutable events do',
    count: null,
    expiresAt: null,
    due: false,
    action: 'keep',
  });
  return items;
}

/** Accounts whose personal-data key must be destroyed now. */
export function dueErasures(rows: readonly PersonalDataRow[], now: IsoInstant): string[] {
  return rows
    .filter((r) => r.erasedAt === null && r.eraseDueAt !== null && isAtOrAfter(now, r.eraseDueAt))
    .map((r) => r.accountId)
    .sort();
}

export const retentionMigration = {
  id: '0021_personal_data_retention',
  sql: `
    CREATE TABLE personal_data_retention (
      account_id text PRIMARY KEY,
      opened_at timestamptz,
      closed_at timestamptz,
      closure_reason text,
      erase_due_at timestamptz,
      erased_at timestamptz
    );
    CREATE INDEX personal_data_retention_due ON personal_data_retention (erase_due_at) WHERE erased_at IS NULL;
  `,
};
