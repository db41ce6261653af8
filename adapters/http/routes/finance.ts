import type { Request, Response, Router } from 'express';
import { z } from 'zod';
import { formatUsd } from '../../../domain/money';
import { balanceAsOf } from '../../../src/finance/balance';
import { statementCsv, statementJson, statementOf, usageOf, type Period } from '../../../src/finance/statements';
import type { RouteMount } from '../../../src/gateway';
import { authenticate, keyOf } from '../auth';
import { ApiError, invalidRequest } from '../openai/errors';

type GatewayParts = Parameters<RouteMount>[1];

/**
 * Finance reads over HTTP.
 * Admin key: GET /admin/accounts/:id/statement?from&to (CSV or JSON by Accept),
 *            GET /admin/accounts/:id/balance?as_of=
 * Customer key (account_read), always its own account, never one named in the request:
 *            GET /v1/usage?from&to, GET /v1/account/transactions?from&to
 * Money is decimal USD strings; periods are [from, to), ISO-8601 instants or UTC dates.
 */
export function mountFinanceRoutes(router: Router, gateway: GatewayParts): void {
  const admin = authenticate(gateway.keys, 'admin');
  const read = authenticate(gateway.keys, 'account_read');

  router.get('/admin/accounts/:id/statement', admin, async (req, res) => {
    const period = parsePeriod(req);
    const statement = await statementOf(gateway.store, String(req.params['id']), period);
    if (!statement) throw accountNotFound();
    sendStatement(req, res, statement);
  });

  router.get('/admin/accounts/:id/balance', admin, async (req, res) => {
    const { as_of } = parseQuery(balanceQuerySchema, req.query);
    const balance = await balanceAsOf(gateway.store, String(req.params['id']), as_of ?? new Date().toISOString());
    if (!balance) throw accountNotFound();
    res.json({
      object: 'balance',
      account_id: balance.accountId,
      as_of: balance.asOf,
      purchased: formatUsd(balance.purchased),
      promo: formatUsd(balance.promo),
      balance: formatUsd(balance.balance),
      reserved: formatUsd(balance.reserved),
      available: formatUsd(balance.available),
      negative: balance.negative,
    });
  });

  router.get('/v1/usage', read, async (req, res) => {
    const period = parsePeriod(req);
    const { accountId } = keyOf(res);
    // Read-your-writes: this process's settlements first, then the projection up to the log's head.
    await gateway.settlements.answersSettled(accountId);
    const usage = gateway.projections.get('usage');
    if (!usage) throw new ApiError(503, 'server_error', 'usage_unavailable', null, 'Usage is not available on this gateway.');
    await usage.reached(await gateway.store.latestPosition());
    const lines = await usageOf(gateway.database.pool, accountId, period);
    res.json({
      object: 'list',
      data: lines.map((l) => ({
        day: l.day,
        key_id: l.keyId,
        model: l.model,
        operation: l.operation,
        requests: Number(l.requests),
        input_tokens: Number(l.inputTokens),
        output_tokens: Number(l.outputTokens),
        audio_seconds: Number(l.audioMilliseconds) / 1_000,
        input_characters: Number(l.inputCharacters),
        cost: formatUsd(l.cost),
        errors: Number(l.errors),
        average_latency_ms: l.averageLatencyMs,
      })),
    });
  });

  router.get('/v1/account/transactions', read, async (req, res) => {
    const period = parsePeriod(req);
    const { accountId } = keyOf(res);
    await gateway.settlements.answersSettled(accountId);
    // Read from the account's own stream: as current as a write this client just made.
    const statement = await statementOf(gateway.store, accountId, period);
    if (!statement) throw accountNotFound();
    sendStatement(req, res, statement);
  });
}

const instantSchema = z
  .union([z.iso.datetime({ offset: true }), z.iso.date()], { error: 'expected an ISO-8601 instant or a date such as 2025-01-31' })
  .transform((s) => new Date(Date.parse(s)).toISOString());

export const periodSchema = z.object({ from: instantSchema.optional(), to: instantSchema.optional() });
export const balanceQuerySchema = z.object({ as_of: instantSchema.optional() });

function parsePeriod(req: Request): Period {
  return parseQuery(periodSchema, req.query);
}

function parseQuery<T>(schema: z.ZodType<T>, query: unknown): T {
  const result = schema.safeParse(query ?? {});
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = issue.path.length > 0 ? String(issue.path[0]) : null;
  throw invalidRequest(`Invalid value for '${param ?? 'query'}': ${issue.message}.`, param, 'invalid_value');
}

function sendStatement(req: Request, res: Response, statement: NonNullable<Awaited<ReturnType<typeof statementOf>>>): void {
  if (req.accepts(['application/json', 'text/csv']) === 'text/csv') {
    res.type('text/csv').send(statementCsv(statement));
  } else {
    res.json(statementJson(statement));
  }
}

function accountNotFound(): ApiError {
  return new ApiError(404, 'invalid_request_error', 'account_not_found', null, 'No such account.');
}
