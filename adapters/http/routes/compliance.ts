import type { Router } from 'express';
import { z } from 'zod';
import { describeBrokenLink, queryAudit, recordedAuditAnchors, verifyAuditChain } from '../../../src/compliance/audit-log';
import { retentionPlan } from '../../../src/compliance/retention';
import { lastRetentionRun } from '../../../src/compliance/retention-schedule';
import type { Gateway } from '../../../src/gateway';
import { authenticate } from '../auth';
import { invalidRequest } from '../openai/errors';

type GatewayParts = Omit<Gateway, 'server' | 'url' | 'close'>;

const instant = z.union([z.iso.datetime({ offset: true }), z.iso.date()]).transform((s) => new Date(Date.parse(s)).toISOString());
const text = z.string().min(1).max(200);

export const auditQuerySchema = z.object({
  actor: text.optional(),
  action: text.optional(),
  target: text.optional(),
  from: instant.optional(),
  to: instant.optional(),
  limit: z.coerce.number().int().min(1).max(10_000).default(1_000),
  /** paging: entries after this entry number */
  after: z
    .string()
    .regex(/^\d{1,18}$/)
    .transform((s) => BigInt(s))
    .optional(),
});

/**
 * Compliance queries for an admin key. GET /admin/audit: the audit log (filters as the CLI's),
 * with the hash chain's verification so a reader knows whether to trust the answer.
 * GET /admin/retention: what goes when (as `tollgate retention plan`) and the last run.
 */
export function mountComplianceRoutes(router: Router, gateway: GatewayParts): void {
  const admin = authenticate(gateway.keys, 'admin');

  router.get('/admin/audit', admin, async (req, res) => {
    const parsed = auditQuerySchema.safeParse(req.query);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const param = issue.path.join('.') || null;
      throw invalidRequest(
        `Invalid query parameter ${param ?? '(query)'}: ${issue.code}.`,
        param,
        issue.code === 'invalid_type' ? 'invalid_type' : 'invalid_value',
      );
    }
    const filter = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined)) as typeof parsed.data;
    // Read-your-writes: the entries of acts made just before this request are there.
    await gateway.projections.get('audit')?.reached(await gateway.store.latestPosition());
    const pool = gateway.database.pool;
    const anchors = await recordedAuditAnchors(gateway.store);
    const [entries, chain] = await Promise.all([queryAudit(pool, filter), verifyAuditChain(pool, anchors)]);
    res.json({
      object: 'list',
      data: entries.map((e) => ({
        entry_no: e.entryNo,
        position: { tx: e.positionTx, seq: e.positionSeq },
        event_id: e.eventId,
        occurred_at: e.occurredAt,
        actor: { kind: e.actorKind, id: e.actorId },
        action: e.action,
        target: { kind: e.targetKind, id: e.targetId },
        reason: e.reason,
        correlation_id: e.correlationId,
        details: e.details,
        hash: e.hash,
      })),
      has_more: entries.length === filter.limit,
      chain: chain.ok
        ? {
            verified: true,
            entries: chain.entries,
            anchor_entry_no: chain.anchor.entryNo.toString(),
            head_entry_no: chain.head.entryNo.toString(),
            head_hash: chain.head.hash,
          }
        : {
            verified: false,
            entries: chain.entries,
            anchor_entry_no: chain.anchor.entryNo.toString(),
            first_broken_entry_no: chain.broken.entryNo,
            problem: chain.broken.problem,
            message: describeBrokenLink(chain.broken),
          },
    });
  });

  router.get('/admin/retention', admin, async (_req, res) => {
    // The plan reads the retention and audit projections: bring them to the head of the log first.
    const head = await gateway.store.latestPosition();
    await Promise.all(['retention', 'audit'].map((name) => gateway.projections.get(name)?.reached(head)));
    const now = new Date().toISOString();
    const [items, last] = await Promise.all([retentionPlan(gateway.database.pool, { now }), lastRetentionRun(gateway.ledger)]);
    res.json({
      object: 'retention.plan',
      as_of: now,
      check_interval_s: gateway.config.TOLLGATE_RETENTION_CHECK_INTERVAL_S,
      items: items.map((i) => ({ category: i.category, subject: i.subject, count: i.count, expires_at: i.expiresAt, due: i.due, action: i.action })),
      last_run:
        last === null
          ? null
          : {
              run_id: last.runId,
              as_of: last.asOf,
              request_log_entries_deleted: last.requestMetadataPurged.toString(),
              audit_entries_deleted: last.auditEntriesPurged.toString(),
              audit_anchor_entry_no: last.auditAnchor?.entryNo.toString() ?? null,
              personal_data_erased_accounts: last.personalDataErased.length,
            },
    });
  });
}
