import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import { z } from 'zod';
import { noticeStreamId } from '../../../domain/notice';
import { PRICE_BOOK_STREAM_ID } from '../../../domain/price-book';
import { adminMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import { publishNotice } from '../../../src/notices/notices';
import { statusOf, type StatusView } from '../../../src/notices/status';
import { keyOf } from '../auth';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import { modelsOnSale } from './catalogue';
import { authenticated, isId, parseInput } from './account';
import { statusPage } from '../dashboard/status-page';

/** The public status (/status, /status.json), the operator's view of it, and incident updates. */

export const incidentUpdateSchema = z.object({
  body: z.string({ error: 'expected text' }).trim().min(1, 'must not be empty').max(10_000, 'at most 10000 characters'),
  /** true: this update resolves the incident */
  resolved: z.boolean({ error: 'expected true or false' }).default(false),
});

export const mountStatusRoutes: RouteMount = (router: Router, gateway) => {
  const admin = authenticated(gateway.keys, 'admin');
  const status = async (): Promise<StatusView> => {
    const now = gateway.clock();
    const { state } = await gateway.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const models = modelsOnSale(state, now.toISOString()).map((m) => m.id);
    return statusOf(gateway.database.pool, models, now);
  };

  router.get('/status.json', async (_req, res) => {
    res.set('cache-control', 'no-cache').json(await status());
  });

  router.get('/status', async (_req, res) => {
    res.set({ 'content-security-policy': "default-src 'none'; style-src 'self'; img-src data:; frame-ancestors 'none'", 'cache-control': 'no-cache' });
    res.type('html').send(statusPage(await status()));
  });

  router.get('/admin/status', admin, async (_req, res) => {
    res.json(await status());
  });

  router.post('/admin/incidents/:id/updates', admin, async (req, res) => {
    const incidentId = String(req.params['id']);
    const body = parseInput(incidentUpdateSchema, req.body);
    // From the notice's own stream, not the read model: an update may follow its incident at once.
    const root = isId(incidentId) ? (await gateway.store.readStream(noticeStreamId(incidentId))).events[0]?.event : undefined;
    if (root?.type !== 'NoticePublished' || root.data.kind !== 'incident' || root.data.about !== null) {
      throw new ApiError(404, 'invalid_request_error', 'incident_not_found', null, 'No such incident.');
    }
    const now = gateway.clock().toISOString();
    const noticeId = `${incidentId}-update-${randomUUID().slice(0, 8)}`;
    const subject = `${body.resolved ? 'Resolved' : 'Update'}: ${root.data.subject}`;
    // Each update is a notice to every account (mailed unless they turned incidents off).
    await publishNotice(
      gateway.store,
      {
        noticeId,
        kind: 'incident',
        audience: { kind: 'all' },
        subject,
        body: body.body,
        effectiveAt: now,
        endsAt: body.resolved ? now : null,
        about: incidentId,
      },
      { ...adminMetadata(keyOf(res).keyId, requestIdOf(res)), now },
    );
    res.status(201).json({ id: noticeId, incident_id: incidentId, subject, resolved: body.resolved, posted_at: now });
  });
};
