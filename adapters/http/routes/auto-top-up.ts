import type { Actor } from '../../../domain/events/metadata';
import { actorOfKey } from '../../../src/api-keys';
import type { Router } from 'express';
import { z } from 'zod';
import { accountStreamId } from '../../../domain/account';
import { formatUsd, type MicroUsd } from '../../../domain/money';
import { commandMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import { recentAutoTopUpAttempts } from '../../../src/process-managers/auto-top-up';
import { newSigningSecret, recentNotices, type AlertThreshold } from '../../../src/process-managers/low-balance-alerts';
import { alertSettingsOf, deleteAlertSettings, saveAlertSettings } from '../../../src/process-managers/low-balance-alert-settings';
import { keyOf } from '../auth';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import { AccountReader, accountNotFound, authenticated, parseInput, positiveUsdSchema, refused } from './account';

/**
 * The customer's billing automation: auto top-up (threshold and amount; the last attempts and
 * why one failed) and low-balance alerts (callback URL and thresholds; the secret is shown once;
 * recent notices with every delivery attempt). Always the key's own account.
 */

/** A USD amount in whole cents: the card is charged exactly this. */
const centsUsdSchema = positiveUsdSchema.refine((amount) => amount % 10_000n === 0n, 'expected whole cents, such as "25.00"');
const zeroOrMoreUsdSchema = z
  .string({ error: 'expected a USD amount as a decimal string, such as "5.00"' })
  .regex(/^\d+(\.\d{1,6})?$/, 'expected a USD amount of 0 or more as a decimal string, such as "5.00"')
  .transform((s) => {
    const [whole, fraction = ''] = s.split('.');
    return BigInt(whole!) * 1_000_000n + BigInt(fraction.padEnd(6, '0'));
  });

export const autoTopUpSchema = z.union([
  z.strictObject({ threshold_usd: zeroOrMoreUsdSchema, amount_usd: centsUsdSchema }),
  z.strictObject({ enabled: z.literal(false) }),
]);

const thresholdSchema = z.union([
  z.strictObject({ usd: positiveUsdSchema }).transform((t): AlertThreshold => ({ kind: 'usd', amount: t.usd })),
  z
    .strictObject({
      percent_of_last_top_up: z.number({ error: 'expected a number' }).int('expected a whole percentage').min(1, 'at least 1').max(100, 'at most 100'),
    })
    .transform((t): AlertThreshold => ({ kind: 'percent_of_last_top_up', percent: t.percent_of_last_top_up })),
]);

export function alertsSchema(allowLoopbackHttp: boolean) {
  return z.strictObject({
    url: z
      .string({ error: 'expected a URL' })
      .max(2_000, 'at most 2000 characters')
      .refine((s) => {
        let url: URL;
        try {
          url = new URL(s);
        } catch {
          return false;
        }
        if (url.username || url.password) return false;
        if (url.protocol === 'https:') return true;
        return allowLoopbackHttp && url.protocol === 'http:' && url.hostname === '127.0.0.1';
      }, 'expected an https:// URL without credentials'),
    thresholds: z.array(thresholdSchema, { error: 'expected an array of thresholds' }).min(1, 'at least one threshold').max(10, 'at most 10 thresholds'),
  });
}

export const noticesQuerySchema = z.object({
  limit: z.coerce.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(200, 'at most 200').default(50),
});

function thresholdView(t: AlertThreshold) {
  return t.kind === 'usd' ? { usd: formatUsd(t.amount) } : { percent_of_last_top_up: t.percent };
}

/**
 * PUT|GET|DELETE /v1/billing/auto-top-up, PUT|GET|DELETE /v1/billing/alerts, GET /v1/billing/alerts/notices.
 * (A JSON body of `null` is refused by the JSON parser, so disabling is `{"enabled": false}` or DELETE.)
 */
export const mountAutoTopUpRoutes: RouteMount = (router: Router, gateway) => {
  const reader = new AccountReader(gateway);
  const pool = gateway.database.pool;
  const read = authenticated(gateway.keys, 'account_read');
  const write = authenticated(gateway.keys, 'account_write');

  const autoTopUpView = async (accountId: string) => {
    const loaded = await reader.state(accountId);
    if (!loaded) throw accountNotFound();
    const { state } = loaded;
    const attempts = await recentAutoTopUpAttempts(pool, accountId, 10);
    const failure = attempts.find((a) => a.status === 'failed');
    const money = (amount: MicroUsd | null) => (amount === null ? null : formatUsd(amount));
    return {
      object: 'auto_top_up',
      enabled: state.autoTopUp !== null,
      threshold_usd: state.autoTopUp ? formatUsd(state.autoTopUp.threshold) : null,
      amount_usd: state.autoTopUp ? formatUsd(state.autoTopUp.amount) : null,
      account_status: state.status,
      suspension_reason: state.suspensionReason,
      pending_attempt: state.pendingAutoTopUp ? { attempt_id: state.pendingAutoTopUp.attemptId, amount_usd: formatUsd(state.pendingAutoTopUp.amount) } : null,
      last_failure: failure
        ? { attempt_id: failure.attemptId, reason: failure.reason, amount_usd: money(failure.amount), at: failure.updatedAt.toISOString() }
        : null,
      recent_attempts: attempts.map((a) => ({
        attempt_id: a.attemptId,
        status: a.status,
        amount_usd: money(a.amount),
        reason: a.reason,
        created_at: a.createdAt.toISOString(),
      })),
    };
  };

  const configure = async (accountId: string, actor: Actor, correlationId: string, autoTopUp: { threshold: MicroUsd; amount: MicroUsd } | null) => {
    if (!(await reader.state(accountId))) throw accountNotFound();
    const handled = await gateway.ledger.accounts.handle(accountStreamId(accountId), {
      type: 'ConfigureAutoTopUp',
      data: { autoTopUp },
      metadata: commandMetadata(actor, correlationId),
    });
    if (!handled.ok) throw refused(handled.error);
  };

  router.get('/v1/billing/auto-top-up', read, async (_req, res) => {
    res.json(await autoTopUpView(keyOf(res).accountId));
  });

  router.put('/v1/billing/auto-top-up', write, async (req, res) => {
    const key = keyOf(res);
    const body = parseInput(autoTopUpSchema, req.body);
    await configure(key.accountId, actorOfKey(key), requestIdOf(res), 'enabled' in body ? null : { threshold: body.threshold_usd, amount: body.amount_usd });
    res.json(await autoTopUpView(key.accountId));
  });

  router.delete('/v1/billing/auto-top-up', write, async (_req, res) => {
    const key = keyOf(res);
    await configure(key.accountId, actorOfKey(key), requestIdOf(res), null);
    res.json(await autoTopUpView(key.accountId));
  });

  const schema = alertsSchema(gateway.config.TOLLGATE_ALERTS_ALLOW_LOOPBACK_HTTP);

  router.put('/v1/billing/alerts', write, async (req, res) => {
    const { accountId } = keyOf(res);
    const body = parseInput(schema, req.body);
    const loaded = await reader.state(accountId);
    if (!loaded) throw accountNotFound();
    if (loaded.state.status === 'closed') throw refused({ error: 'account_closed' });
    const secret = newSigningSecret();
    const ciphertext = await reader.vault.encrypt(accountId, secret);
    await saveAlertSettings(pool, accountId, { url: body.url, thresholds: body.thresholds, secretCiphertext: ciphertext });
    // The only time the secret leaves the server.
    res.json({ object: 'low_balance_alerts', url: body.url, thresholds: body.thresholds.map(thresholdView), signing_secret: secret });
  });

  router.get('/v1/billing/alerts', read, async (_req, res) => {
    const { accountId } = keyOf(res);
    const settings = await alertSettingsOf(pool, accountId);
    if (!settings) throw new ApiError(404, 'invalid_request_error', 'alerts_not_configured', null, 'No low-balance alerts are configured.');
    res.json({ object: 'low_balance_alerts', url: settings.url, thresholds: settings.thresholds.map(thresholdView) });
  });

  router.delete('/v1/billing/alerts', write, async (_req, res) => {
    const { accountId } = keyOf(res);
    await deleteAlertSettings(pool, accountId);
    res.json({ object: 'low_balance_alerts', deleted: true });
  });

  router.get('/v1/billing/alerts/notices', read, async (req, res) => {
    const { limit } = parseInput(noticesQuerySchema, req.query);
    res.json({ object: 'list', data: await recentNotices(pool, keyOf(res).accountId, limit) });
  });
};
