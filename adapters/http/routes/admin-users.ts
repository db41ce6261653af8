import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { adminRoleSchema } from '../../../domain/admin-roles';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { formatUsd } from '../../../domain/money';
import { adminMetadata } from '../../../src/command-metadata';
import { exportAccount } from '../../../src/compliance/export';
import { verifyFinance } from '../../../src/finance/verify';
import { recordFinanceReportRun } from '../../../src/finance/report-access';
import { journalLines, journalCsv } from '../../../src/finance/statements';
import type { RouteMount } from '../../../src/gateway';
import { keyOf } from '../auth';
import { refusal } from '../dashboard/identity-routes';
import { requestIdOf } from '../observability/request-id';
import { ApiError } from '../openai/errors';
import { accountNotFound, authenticated, isId, parseInput, shortTextSchema } from './account';
import { periodSchema } from './finance';

/**
 * Operators as people over HTTP, and the finance and compliance reads that were CLI-only.
 *
 * Admin users (operator role; the bootstrap admin key too): GET, POST /admin/admin-users,
 * PATCH, DELETE /admin/admin-users/:userId, as `tollgate admins list | add | role | remove`.
 * Finance: GET /admin/finance/journal (as `tollgate journal`), GET /admin/finance/verification
 * (as `tollgate verify`), each recorded as FinanceReportRun (audited) before it is answered. Compliance: GET /admin/compliance/exports/:accountId (as `tollgate
 * export`, recorded as PersonalDataViewed before it is returned). Which role reaches which is
 * decided before the route, by adminRoleAllows (403 `insufficient_role`); each change records the
 * acting person's user id (or the key's id) as the admin actor, so the audit log names them.
 */

export const addAdminUserSchema = z.object({
  email: z.email({ error: 'expected an email address' }).max(254, 'at most 254 characters'),
  role: adminRoleSchema,
  /** needed only to create a new user; an existing user keeps theirs */
  password: z.string({ error: 'expected a string' }).max(1_000, 'at most 1000 characters').optional(),
});
export const changeAdminRoleSchema = z.object({ role: adminRoleSchema });
export const journalQuerySchema = periodSchema;
export const verificationQuerySchema = z.object({
  grace_seconds: z.coerce.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(86_400, 'at most 86400').default(60),
});
export const exportQuerySchema = z.object({ purpose: shortTextSchema.optional() });

const adminUserId = (req: Request): string => {
  const id = String(req.params['userId']);
  if (!isId(id)) throw new ApiError(404, 'invalid_request_error', 'admin_not_found', null, 'No admin user with this id.');
  return id;
};

export const mountAdminUserRoutes: RouteMount = (router: Router, gateway) => {
  const admin = authenticated(gateway.keys, 'admin');
  const identity = gateway.identity;
  const metadataOf = (res: Response): CommandMetadata => ({ ...adminMetadata(keyOf(res).keyId, requestIdOf(res)), causationId: requestIdOf(res) });
  const adminsProjected = async () => {
    await gateway.projections.get('admin-roles')?.reached(await gateway.store.latestPosition());
  };

  router.get('/admin/admin-users', admin, async (_req, res) => {
    await adminsProjected();
    res.json({ object: 'list', data: (await identity.listAdmins()).map((a) => ({ object: 'admin_user', ...a })) });
  });

  router.post('/admin/admin-users', admin, async (req, res) => {
    const body = parseInput(addAdminUserSchema, req.body);
    const added = await identity.addAdminUser({ email: body.email, password: body.password ?? null, role: body.role }, metadataOf(res));
    if (!added.ok) throw refusal(added.error);
    res.status(added.value.created ? 201 : 200).json({ object: 'admin_user', user_id: added.value.userId, role: body.role, created: added.value.created });
  });

  router.patch('/admin/admin-users/:userId', admin, async (req, res) => {
    const userId = adminUserId(req);
    const body = parseInput(changeAdminRoleSchema, req.body);
    const changed = await identity.changeAdminRole(userId, body.role, metadataOf(res));
    if (!changed.ok) throw refusal(changed.error);
    res.json({ object: 'admin_user', user_id: userId, role: body.role });
  });

  router.delete('/admin/admin-users/:userId', admin, async (req, res) => {
    const userId = adminUserId(req);
    const removed = await identity.removeAdmin(userId, metadataOf(res));
    if (!removed.ok) throw refusal(removed.error);
    res.json({ object: 'admin_user', user_id: userId, removed: true });
  });

  router.get('/admin/finance/journal', admin, async (req, res) => {
    const period = parseInput(journalQuerySchema, req.query);
    // Read-your-writes: the postings of whatever the log holds when the request came.
    await gateway.projections.get('journal')?.reached(await gateway.store.latestPosition());
    const lines = await journalLines(gateway.database.pool, period);
    await recordFinanceReportRun(gateway.store, { report: 'journal', from: period.from ?? null, to: period.to ?? null, ok: null }, metadataOf(res));
    if (req.accepts(['application/json', 'text/csv']) === 'text/csv') {
      res.type('text/csv').send(journalCsv(lines));
      return;
    }
    res.json({
      object: 'list',
      data: lines.map((l) => ({
        log_tx: l.tx.toString(),
        log_seq: l.seq.toString(),
        line: l.line,
        occurred_at: l.occurredAt,
        event_type: l.eventType,
        customer_account: l.accountId,
        ledger_account: l.ledgerAccount,
        debit_usd: l.amount > 0n ? formatUsd(l.amount) : null,
        credit_usd: l.amount < 0n ? formatUsd(-l.amount) : null,
      })),
    });
  });

  router.get('/admin/finance/verification', admin, async (req, res) => {
    const { grace_seconds } = parseInput(verificationQuerySchema, req.query);
    const report = await verifyFinance(gateway.database.pool, gateway.store, { graceMs: grace_seconds * 1_000 });
    await recordFinanceReportRun(gateway.store, { report: 'verification', from: null, to: null, ok: report.ok }, metadataOf(res));
    res.json({
      object: 'finance_verification',
      ok: report.ok,
      accounts: report.accounts,
      events: report.events,
      differences: report.differences.map((d) => ({ check: d.check, account_id: d.accountId, detail: d.detail })),
    });
  });

  router.get('/admin/compliance/exports/:accountId', admin, async (req, res) => {
    const accountId = String(req.params['accountId']);
    if (!isId(accountId)) throw accountNotFound();
    const { purpose } = parseInput(exportQuerySchema, req.query);
    await gateway.projections.get('audit')?.reached(await gateway.store.latestPosition());
    await gateway.projections.get('retention')?.reached(await gateway.store.latestPosition());
    const exported = await exportAccount({ pool: gateway.database.pool, store: gateway.store, vault: gateway.vault }, accountId, {
      metadata: metadataOf(res),
      purpose: purpose ?? null,
    });
    if (!exported) throw accountNotFound();
    res.set('cache-control', 'no-store').json(exported);
  });
};
