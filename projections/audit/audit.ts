import { createHash } from 'node:crypto';
import { formatUsd } from '../../domain/money';
import type { Actor } from '../../domain/events/metadata';
import type { KeyCreator } from '../../domain/api-key';
import type { DomainEvent } from '../../domain/events';

/**
 * The audit log: one entry per administrative or security-relevant act, hash-chained so that
 * altering, removing or inserting an entry shows. Pure: a recorded event and the previous hash
 * in, an entry and its hash out; the SQL side (src/read-models/audit.ts) only stores them.
 *
 * What an entry holds is chosen to be non-personal: ids, amounts, reasons the operator typed,
 * never a name, an email, a ciphertext or a key hash.
 */

export type AuditAction =
  | 'account.opened'
  | 'account.suspended'
  | 'account.reinstated'
  | 'account.closed'
  | 'account.terminated'
  | 'credit.forfeited'
  | 'api_key.issued'
  | 'api_key.renamed'
  | 'api_key.revoked'
  | 'api_key.limits_set'
  | 'model.added'
  | 'model.retired'
  | 'model.described'
  | 'notice.published'
  | 'price.set'
  | 'credit.promo_granted'
  | 'credit.promo_revoked'
  | 'account.maximum_balance_set'
  | 'credit.manual_top_up'
  | 'refund.issued'
  | 'refund.shortfall'
  | 'refund.payout'
  | 'refund.claimed'
  | 'dispute.opened'
  | 'dispute.closed'
  | 'auto_top_up.configured'
  | 'personal_data.corrected'
  | 'personal_data.erased'
  | 'personal_data.viewed'
  | 'retention.run'
  | 'user.registered'
  | 'user.registration_abandoned'
  | 'user.email_verified'
  | 'user.profile_corrected'
  | 'user.password_changed'
  | 'user.two_factor_changed'
  | 'user.deleted'
  | 'admin_user.added'
  | 'admin_role.granted'
  | 'admin_role.changed'
  | 'admin_role.revoked'
  | 'finance.report_run'
  | 'member.added'
  | 'member.role_changed'
  | 'member.removed';

export type AuditTargetKind = 'account' | 'api_key' | 'model' | 'retention' | 'notice' | 'user' | 'finance';

/** Extra facts of an act, as strings (amounts in USD, 6 decimals) so the hash never depends on number formatting. */
export type AuditDetails = { readonly [field: string]: string | readonly string[] | null };

/** What happened, before it is numbered and chained. */
export interface AuditFact {
  readonly action: AuditAction;
  readonly targetKind: AuditTargetKind;
  readonly targetId: string;
  readonly reason: string | null;
  readonly details: AuditDetails;
}

/** One audit entry: the fields the hash covers. Positions and numbers are decimal strings. */
export interface AuditEntry extends AuditFact {
  /** 1, 2, 3, ... in log order; the chain's order */
  readonly entryNo: string;
  readonly positionTx: string;
  readonly positionSeq: string;
  readonly eventId: string;
  /** ISO-8601 UTC with milliseconds (what timestamptz gives back) */
  readonly occurredAt: string;
  readonly actorKind: Actor['kind'];
  readonly actorId: string;
  readonly correlationId: string;
}

export interface ChainedAuditEntry extends AuditEntry {
  readonly prevHash: string;
  readonly hash: string;
}

/** The hash before the first entry ever written. */
export const GENESIS_HASH = '0'.repeat(64);

/** The part of a recorded event the audit log needs (structurally the port's RecordedEvent). */
export interface AuditSource {
  readonly id: string;
  readonly streamId: string;
  readonly position: { readonly tx: bigint; readonly seq: bigint };
  readonly event: DomainEvent;
}

const ACCOUNT_STREAM = /^account-(.+)$/;
const API_KEY_STREAM = /^api-key-(.+)$/;
/** admin top-ups are written with `manual:` references; the route carries its reason in the correlation id */
const MANUAL_REFERENCE = 'manual:';
const REASON_IN_CORRELATION = /^reason: ([\s\S]+)$/;

function idFrom(streamId: string, pattern: RegExp): string {
  return pattern.exec(streamId)?.[1] ?? streamId;
}

function actorIdOf(actor: Actor): string {
  switch (actor.kind) {
    case 'admin':
      return actor.adminId;
    case 'customer_key':
      return actor.keyId;
    case 'system':
      return actor.process;
    case 'user':
      return actor.userId;
  }
}

/** The act an event records, or null for events that are not administrative or security-relevant. */
export function auditFactOf(streamId: string, event: DomainEvent): AuditFact | null {
  const account = (action: AuditAction, reason: string | null, details: AuditDetails = {}): AuditFact => ({
    action,
    targetKind: 'account',
    targetId: idFrom(streamId, ACCOUNT_STREAM),
    reason,
    details,
  });
  switch (event.type) {
    case 'AccountOpened':
      // The ciphertexts stay out: the audit log must not outlive an erasure with personal data in it.
      return { action: 'account.opened', targetKind: 'account', targetId: event.data.accountId, reason: null, details: {} };
    case 'AccountSuspended':
      return account('account.suspended', event.data.reason);
    case 'AccountReinstated':
      return account('account.reinstated', event.data.reason, event.data.lifted === null ? {} : { lifted: [...event.data.lifted] });
    case 'AccountClosed':
      return account('account.closed', event.data.reason);
    case 'AccountTerminated':
      return account('account.terminated', event.data.reason, { forAbuse: String(event.data.forAbuse) });
    case 'PurchasedCreditForfeited':
      return account('credit.forfeited', event.data.reason, { amountUsd: formatUsd(event.data.amount) });
    case 'PromoCreditGranted':
      return account('credit.promo_granted', event.data.reason, {
        grantId: event.data.grantId,
        amountUsd: formatUsd(event.data.amount),
        expiresAt: event.data.expiresAt,
      });
    case 'MaximumBalanceSet':
      return account('account.maximum_balance_set', event.data.reason, { maximumUsd: event.data.maximum === null ? null : formatUsd(event.data.maximum) });
    case 'PromoCreditRevoked':
      return account('credit.promo_revoked', event.data.reason, { grantId: event.data.grantId, amountUsd: formatUsd(event.data.amount) });
    case 'TopUpCompleted': {
      if (!event.data.paymentReference.startsWith(MANUAL_REFERENCE)) return null;
      const reason = REASON_IN_CORRELATION.exec(event.metadata.correlationId)?.[1] ?? null;
      return account('credit.manual_top_up', reason, { paymentReference: event.data.paymentReference, amountUsd: formatUsd(event.data.amount) });
    }
    case 'RefundIssued':
      return account('refund.issued', null, {
        refundId: event.data.refundId,
        amountUsd: formatUsd(event.data.amount),
        paymentReferences: [...event.data.paymentReferences],
      });
    case 'RefundClaimed':
      return account('refund.claimed', null, { claimId: event.data.claimId, amountUsd: formatUsd(event.data.amount) });
    case 'PayoutRecorded':
      return account('refund.payout', event.data.reason, {
        payoutId: event.data.payoutId,
        method: event.data.method,
        reference: event.data.reference,
        amountUsd: formatUsd(event.data.amount),
      });
    case 'RefundShortfall':
      return account('refund.shortfall', null, {
        refundId: event.data.refundId,
        amountUsd: formatUsd(event.data.amount),
        paymentReferences: [event.data.paymentReference],
      });
    case 'DisputeOpened':
      return account('dispute.opened', null, {
        disputeId: event.data.disputeId,
        paymentReference: event.data.paymentReference,
        amountUsd: formatUsd(event.data.amount),
      });
    case 'DisputeClosed':
      return account('dispute.closed', event.data.outcome, { disputeId: event.data.disputeId, debitedUsd: formatUsd(event.data.debited) });
    case 'AutoTopUpConfigured':
      return account('auto_top_up.configured', null, {
        thresholdUsd: event.data.autoTopUp === null ? null : formatUsd(event.data.autoTopUp.threshold),
        amountUsd: event.data.autoTopUp === null ? null : formatUsd(event.data.autoTopUp.amount),
      });
    case 'PersonalDataCorrected':
      // Which fields changed, never their values.
      return account('personal_data.corrected', null, {
        fields: [...(event.data.displayNameCiphertext !== null ? ['display_name'] : []), ...(event.data.emailCiphertext !== null ? ['email'] : [])],
      });
    case 'PersonalDataErased':
      return account('personal_data.erased', null);
    case 'ApiKeyIssued':
      // The key's name is free text and its hash a secret's derivative: neither belongs here.
      return {
        action: 'api_key.issued',
        targetKind: 'api_key',
        targetId: event.data.keyId,
        reason: null,
        details: {
          accountId: event.data.accountId,
          prefix: event.data.prefix,
          scopes: [...event.data.scopes],
          ...(event.data.createdBy === undefined ? {} : { createdBy: creatorText(event.data.createdBy) }),
        },
      };
    case 'ApiKeyRenamed':
      return { action: 'api_key.renamed', targetKind: 'api_key', targetId: idFrom(streamId, API_KEY_STREAM), reason: null, details: {} };
    case 'ApiKeyLimitsSet':
      // Limits are settings, not personal data: recorded whole, so an audit shows who lifted what.
      return {
        action: 'api_key.limits_set',
        targetKind: 'api_key',
        targetId: idFrom(streamId, API_KEY_STREAM),
        reason: null,
        details: {
          spendLimitPeriod: event.data.spendLimit?.period ?? null,
          spendLimitUsd: event.data.spendLimit === null ? null : formatUsd(event.data.spendLimit.amount),
          expiresAt: event.data.expiresAt,
          allowedModels: event.data.allowedModels === null ? null : [...event.data.allowedModels],
        },
      };
    case 'ApiKeyRevoked':
      return { action: 'api_key.revoked', targetKind: 'api_key', targetId: idFrom(streamId, API_KEY_STREAM), reason: event.data.reason, details: {} };
    case 'ModelAdded':
      return {
        action: 'model.added',
        targetKind: 'model',
        targetId: event.data.modelId,
        reason: null,
        details: { operations: [...event.data.operations], maxOutputTokens: event.data.maxOutputTokens.toString() },
      };
    case 'ModelRetired':
      return { action: 'model.retired', targetKind: 'model', targetId: event.data.modelId, reason: null, details: {} };
    case 'ModelDescribed':
      return {
        action: 'model.described',
        targetKind: 'model',
        targetId: event.data.modelId,
        // a retirement with less than the required notice names why
        reason: event.data.shortNoticeReason ?? null,
        details: {
          status: event.data.status,
          retiresAt: event.data.retiresAt ?? '',
          contextLength: String(event.data.contextLength),
          licence: event.data.licence,
        },
      };
    case 'PriceSet':
      return {
        action: 'price.set',
        targetKind: 'model',
        targetId: event.data.modelId,
        // an increase with less than the required notice names why
        reason: event.data.shortNoticeReason ?? null,
        details: {
          operation: event.data.operation,
          version: String(event.data.version),
          inputUsdPerMillion: formatUsd(event.data.inputPerMillion),
          outputUsdPerMillion: formatUsd(event.data.outputPerMillion),
          effectiveAt: event.data.effectiveAt,
        },
      };
    case 'PersonalDataViewed':
      // Who saw whose data through which view; the reason column holds the purpose they gave.
      return {
        action: 'personal_data.viewed',
        targetKind: 'account',
        targetId: event.data.accountId,
        reason: event.data.purpose,
        details: { what: event.data.what, fields: [...event.data.fields] },
      };
    case 'RetentionRunCompleted':
      return {
        action: 'retention.run',
        targetKind: 'retention',
        targetId: event.data.runId,
        reason: null,
        details: {
          auditEntriesPurged: event.data.auditEntriesPurged.toString(),
          requestMetadataPurged: event.data.requestMetadataPurged.toString(),
          personalDataErased: [...event.data.personalDataErased],
        },
      };
    case 'NoticePublished':
      // What customers were told, when, and to how many accounts (not who: the list can be long).
      return {
        action: 'notice.published',
        targetKind: 'notice',
        targetId: event.data.noticeId,
        reason: null,
        details: {
          kind: event.data.kind,
          subject: event.data.subject,
          effectiveAt: event.data.effectiveAt,
          audience: event.data.audience.kind === 'all' ? 'all' : `${event.data.audience.accountIds.length} accounts`,
        },
      };
    case 'UserRegistered':
      // No ciphertexts, as for accounts: the user's id and the account they opened.
      return { action: 'user.registered', targetKind: 'user', targetId: event.data.userId, reason: null, details: { account_id: event.data.accountId } };
    case 'UserRegistrationAbandoned':
      return { action: 'user.registration_abandoned', targetKind: 'user', targetId: event.data.userId, reason: null, details: {} };
    case 'UserEmailVerified':
      return { action: 'user.email_verified', targetKind: 'user', targetId: event.data.userId, reason: null, details: {} };
    case 'UserProfileCorrected':
      return {
        action: 'user.profile_corrected',
        targetKind: 'user',
        targetId: event.data.userId,
        reason: null,
        details: { fields: [...(event.data.nameCiphertext ? ['name'] : []), ...(event.data.emailCiphertext ? ['email'] : [])] },
      };
    case 'UserPasswordChanged':
      return { action: 'user.password_changed', targetKind: 'user', targetId: event.data.userId, reason: null, details: { how: event.data.how } };
    case 'UserTwoFactorChanged':
      return { action: 'user.two_factor_changed', targetKind: 'user', targetId: event.data.userId, reason: null, details: { change: event.data.change } };
    case 'UserDeleted':
      return { action: 'user.deleted', targetKind: 'user', targetId: event.data.userId, reason: null, details: {} };
    case 'AdminUserAdded':
      return { action: 'admin_user.added', targetKind: 'user', targetId: event.data.userId, reason: null, details: { role: event.data.role } };
    case 'AdminRoleGranted':
      return {
        action: 'admin_role.granted',
        targetKind: 'user',
        targetId: event.data.userId,
        reason: null,
        details: { role: event.data.role, new_user: event.data.emailCiphertext !== null ? 'yes' : 'no' },
      };
    case 'AdminRoleChanged':
      return {
        action: 'admin_role.changed',
        targetKind: 'user',
        targetId: event.data.userId,
        reason: null,
        details: { role: event.data.role, previous_role: event.data.previousRole },
      };
    case 'FinanceReportRun':
      return {
        action: 'finance.report_run',
        targetKind: 'finance',
        targetId: event.data.report,
        reason: null,
        details: { from: event.data.from, to: event.data.to, ok: event.data.ok === null ? null : event.data.ok ? 'yes' : 'no' },
      };
    case 'AdminRoleRevoked':
      return {
        action: 'admin_role.revoked',
        targetKind: 'user',
        targetId: event.data.userId,
        reason: null,
        details: { previous_role: event.data.previousRole },
      };
    case 'MemberAdded':
      return {
        action: 'member.added',
        targetKind: 'account',
        targetId: event.data.accountId,
        reason: null,
        details: { user_id: event.data.userId, role: event.data.role },
      };
    case 'MemberRoleChanged':
      return {
        action: 'member.role_changed',
        targetKind: 'account',
        targetId: event.data.accountId,
        reason: null,
        details: { user_id: event.data.userId, role: event.data.role },
      };
    case 'MemberRemoved':
      return { action: 'member.removed', targetKind: 'account', targetId: event.data.accountId, reason: null, details: { user_id: event.data.userId } };
    case 'ReservationPlaced':
    case 'ReservationSettled':
    case 'ReservationReleased':
    case 'ReservationExpired':
    case 'PromoCreditExpired':
    case 'AutoTopUpTriggered':
    case 'AutoTopUpFailed':
    case 'RequestLogged':
    case 'EmailRequested':
    case 'EmailSent':
    case 'EmailAbandoned':
      return null;
    default:
      return event satisfies never;
  }
}

/** `operator`, `key:<id>` or `user:<id>`: ids only, never a name or an email. */
function creatorText(creator: KeyCreator): string {
  return creator.kind === 'operator' ? 'operator' : creator.kind === 'key' ? `key:${creator.keyId}` : `user:${creator.userId}`;
}

/** The entry for a recorded event, numbered `entryNo`, or null when the event is not audited. */
export function auditEntryOf(source: AuditSource, entryNo: bigint): AuditEntry | null {
  const fact = auditFactOf(source.streamId, source.event);
  if (!fact) return null;
  const { actor, occurredAt, correlationId } = source.event.metadata;
  return {
    ...fact,
    entryNo: entryNo.toString(),
    positionTx: source.position.tx.toString(),
    positionSeq: source.position.seq.toString(),
    eventId: source.id,
    occurredAt: new Date(occurredAt).toISOString(),
    actorKind: actor.kind,
    actorId: actorIdOf(actor),
    correlationId,
  };
}

/** JSON with object keys sorted at every level and no whitespace: one text per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('canonical JSON has no non-finite numbers');
    if (value === undefined || typeof value === 'bigint' || typeof value === 'function') throw new TypeError(`canonical JSON cannot hold ${typeof value}`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/**
 * The fields an entry's hash covers, with the audit_log column and SQL type each is stored as:
 * the one list the hash, the writer (src/projections/audit.ts) and the reader
 * (src/compliance/audit-log.ts) share, so a field cannot be stored without being hashed, or
 * hashed without being read back.
 */
export const AUDIT_ENTRY_FIELDS = [
  { field: 'entryNo', column: 'entry_no', sqlType: 'bigint' },
  { field: 'positionTx', column: 'position_tx', sqlType: 'numeric' },
  { field: 'positionSeq', column: 'position_seq', sqlType: 'numeric' },
  { field: 'eventId', column: 'event_id', sqlType: 'uuid' },
  { field: 'occurredAt', column: 'occurred_at', sqlType: 'timestamptz' },
  { field: 'actorKind', column: 'actor_kind', sqlType: 'text' },
  { field: 'actorId', column: 'actor_id', sqlType: 'text' },
  { field: 'action', column: 'action', sqlType: 'text' },
  { field: 'targetKind', column: 'target_kind', sqlType: 'text' },
  { field: 'targetId', column: 'target_id', sqlType: 'text' },
  { field: 'reason', column: 'reason', sqlType: 'text' },
  { field: 'correlationId', column: 'correlation_id', sqlType: 'text' },
  { field: 'details', column: 'details', sqlType: 'jsonb' },
] as const satisfies readonly { readonly field: keyof AuditEntry; readonly column: string; readonly sqlType: string }[];

// Compile-time check: every field of AuditEntry is in the list above.
const everyFieldListed: Exclude<keyof AuditEntry, (typeof AUDIT_ENTRY_FIELDS)[number]['field']> extends never ? true : never = true;
void everyFieldListed;

/** The fields an entry's hash covers, and nothing else (so extra properties on a row never count). */
function hashedFields(entry: AuditEntry): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const { field } of AUDIT_ENTRY_FIELDS) fields[field] = entry[field];
  return fields;
}

/** sha256(prev_hash || canonical JSON of the entry), hex. */
export function entryHash(prevHash: string, entry: AuditEntry): string {
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalJson(hashedFields(entry)))
    .digest('hex');
}

export function chain(prevHash: string, entry: AuditEntry): ChainedAuditEntry {
  return { ...entry, prevHash, hash: entryHash(prevHash, entry) };
}

/** The chain's head: the last entry written (or the anchor, or genesis). */
export interface ChainHead {
  readonly entryNo: bigint;
  readonly hash: string;
}

/** Entries for a batch of recorded events, numbered and chained on from `head`; `head` after them. */
export function chainBatch(head: ChainHead, sources: readonly AuditSource[]): { entries: ChainedAuditEntry[]; head: ChainHead } {
  const entries: ChainedAuditEntry[] = [];
  let { entryNo, hash } = head;
  for (const source of sources) {
    const entry = auditEntryOf(source, entryNo + 1n);
    if (!entry) continue;
    const chained = chain(hash, entry);
    entries.push(chained);
    entryNo += 1n;
    hash = chained.hash;
  }
  return { entries, head: { entryNo, hash } };
}

export type BrokenLink =
  | { readonly entryNo: string; readonly problem: 'hash_mismatch' }
  /** the entry does not point at the hash of the one before it (one removed, inserted or reordered) */
  | { readonly entryNo: string; readonly problem: 'prev_hash_mismatch' }
  /** numbering jumps: entries were removed from the middle */
  | { readonly entryNo: string; readonly problem: 'missing_entries'; readonly expected: string }
  /** the head recorded by the projection is not where the entries end: the tail was cut or added to */
  | { readonly entryNo: string; readonly problem: 'head_mismatch' }
  /**
   * the chain starts after an entry no retention run recorded as its anchor: entries were removed
   * from its head (and the anchor moved) by something other than retention
   */
  | { readonly entryNo: string; readonly problem: 'anchor_not_recorded'; readonly anchor: string };

/**
 * Walks entries in order from `from` (the anchor: last purged entry, or genesis at 0) and returns
 * the first link that does not hold, or the state to continue from. Call it batch by batch.
 */
export function verifyStep(from: ChainHead, entries: readonly ChainedAuditEntry[]): { ok: true; head: ChainHead } | { ok: false; broken: BrokenLink } {
  let { entryNo, hash } = from;
  for (const entry of entries) {
    const expected = entryNo + 1n;
    if (entry.entryNo !== expected.toString())
      return { ok: false, broken: { entryNo: entry.entryNo, problem: 'missing_entries', expected: expected.toString() } };
    if (entry.prevHash !== hash) return { ok: false, broken: { entryNo: entry.entryNo, problem: 'prev_hash_mismatch' } };
    const recomputed = entryHash(hash, entry);
    if (recomputed !== entry.hash) return { ok: false, broken: { entryNo: entry.entryNo, problem: 'hash_mismatch' } };
    entryNo = expected;
    hash = recomputed;
  }
  return { ok: true, head: { entryNo, hash } };
}

export const auditMigration = {
  id: '0020_audit_log',
  sql: `
    CREATE TABLE audit_log (
      entry_no bigint PRIMARY KEY,
      position_tx numeric(20,0) NOT NULL,
      position_seq numeric(20,0) NOT NULL,
      event_id uuid NOT NULL UNIQUE,
      occurred_at timestamptz NOT NULL,
      actor_kind text NOT NULL,
      actor_id text NOT NULL,
      action text NOT NULL,
      target_kind text NOT NULL,
      target_id text NOT NULL,
      reason text,
      correlation_id text NOT NULL,
      details jsonb NOT NULL,
      prev_hash text NOT NULL,
      hash text NOT NULL
    );
    CREATE INDEX audit_log_occurred_at ON audit_log (occurred_at);
    CREATE INDEX audit_log_actor ON audit_log (actor_id, entry_no);
    CREATE INDEX audit_log_target ON audit_log (target_id, entry_no);
    -- One row: where the chain starts (the last purged entry, or genesis) and where it ends.
    -- The projection and the retention purge both lock it, so numbering and anchoring never race.
    CREATE TABLE audit_chain (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      anchor_entry_no bigint NOT NULL,
      anchor_hash text NOT NULL,
      head_entry_no bigint NOT NULL,
      head_hash text NOT NULL
    );
    INSERT INTO audit_chain VALUES (true, 0, '${GENESIS_HASH}', 0, '${GENESIS_HASH}');
  `,
};
