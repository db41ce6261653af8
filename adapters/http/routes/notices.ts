import { randomUUID } from 'node:crypto';
import type { Router } from 'express';
import { z } from 'zod';
import { OPERATOR_NOTICE_KINDS, checkNotice, noticeKindSchema } from '../../../domain/notice';
import { adminMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import {
  allNotices,
  markNoticeRead,
  noticePreferencesOf,
  noticesOf,
  publishNotice,
  setNoticePreferences,
  setUserNoticePreferences,
  userNoticePreferencesOf,
} from '../../../src/notices/notices';
import { keyOf } from '../auth';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import { authenticated, instantSchema, isId, parseInput, refused } from './account';

/**
 * Notices: a customer's list and banner (unread), marking one read, and which kinds they
 * receive; the operator's list and posting of maintenance windows, terms changes and incidents
 * (their minimum notice is checked: 24 hours, 14 days).
 */

export const noticeListQuerySchema = z.object({
  unread: z.enum(['true', 'false'], { error: 'expected true or false' }).optional(),
  limit: z.coerce.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(200, 'at most 200').default(50),
});

export const noticePreferencesSchema = z.object({
  kinds: z.partialRecord(noticeKindSchema, z.boolean({ error: 'expected true or false' }), { error: 'expected an object of kind: true/false' }),
});

export const postNoticeSchema = z.object({
  kind: z.enum(OPERATOR_NOTICE_KINDS, { error: 'expected maintenance, terms_change or incident' }),
  subject: z.string({ error: 'expected text' }).trim().min(1, 'must not be empty').max(200, 'at most 200 characters'),
  body: z.string({ error: 'expected text' }).trim().min(1, 'must not be empty').max(10_000, 'at most 10000 characters'),
  /** when it takes effect: the window's start, the new terms' date; an incident's start (now by default) */
  effective_at: instantSchema.optional(),
  ends_at: instantSchema.nullable().default(null),
  /** a name for the notice, so posting the same one twice (a retried request) makes one */
  notice_id: z
    .string({ error: 'expected an id' })
    .regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'expected 1-100 letters, digits or _.:-')
    .optional(),
});

export const mountNoticeRoutes: RouteMount = (router: Router, gateway) => {
  const read = authenticated(gateway.keys, 'account_read');
  const admin = authenticated(gateway.keys, 'admin');
  const pool = gateway.database.pool;

  router.get('/v1/account/notices', read, async (req, res) => {
    const query = parseInput(noticeListQuerySchema, req.query);
    const key = keyOf(res);
    const data = await noticesOf(pool, key.accountId, { unreadOnly: query.unread === 'true', limit: query.limit, userId: key.userId });
    res.json({ object: 'list', data });
  });

  // With an API key: read for the account (account_write). In a person's dashboard session: read
  // for that person only (the other members still see its banner), which any member may do.
  router.post('/v1/account/notices/:id/read', read, async (req, res) => {
    const key = keyOf(res);
    if (key.userId === undefined && !key.scopes.includes('account_write')) {
      throw new ApiError(403, 'invalid_request_error', 'insufficient_permissions', null, 'This key does not have the account_write scope.');
    }
    const id = String(req.params['id']);
    if (!isId(id) || !(await markNoticeRead(pool, key.accountId, id, key.userId))) {
      throw new ApiError(404, 'invalid_request_error', 'notice_not_found', null, 'No such notice for this account.');
    }
    res.json({ id, read: true });
  });

  // With an API key: the account's choices (they apply to every recipient of the account). In a
  // person's dashboard session: that person's own, which any member may set, whatever their role.
  const preferencesOf = (key: ReturnType<typeof keyOf>) =>
    key.userId !== undefined ? userNoticePreferencesOf(pool, key.userId) : noticePreferencesOf(pool, key.accountId);

  router.get('/v1/account/notice-preferences', read, async (_req, res) => {
    res.json({ object: 'list', data: await preferencesOf(keyOf(res)) });
  });

  router.put('/v1/account/notice-preferences', read, async (req, res) => {
    const key = keyOf(res);
    if (key.userId === undefined && !key.scopes.includes('account_write')) {
      throw new ApiError(403, 'invalid_request_error', 'insufficient_permissions', null, 'This key does not have the account_write scope.');
    }
    const body = parseInput(noticePreferencesSchema, req.body);
    const changes = Object.entries(body.kinds).map(([kind, enabled]) => ({ kind: noticeKindSchema.parse(kind), enabled: enabled as boolean }));
    const refusal =
      key.userId !== undefined ? await setUserNoticePreferences(pool, key.userId, changes) : await setNoticePreferences(pool, key.accountId, changes);
    if (refusal) {
      throw new ApiError(
        409,
        'invalid_request_error',
        refusal.error,
        `kinds.${refusal.kind}`,
        `${refusal.kind.replaceAll('_', ' ')} notices are essential (the terms promise them) and cannot be turned off.`,
      );
    }
    res.json({ object: 'list', data: await preferencesOf(key) });
  });

  router.get('/admin/notices', admin, async (_req, res) => {
    res.json({ object: 'list', data: await allNotices(pool) });
  });

  router.post('/admin/notices', admin, async (req, res) => {
    const body = parseInput(postNoticeSchema, req.body);
    const now = gateway.clock().toISOString();
    const effectiveAt = body.effective_at ?? now;
    const refusal = checkNotice(body.kind, effectiveAt, body.ends_at, now);
    if (refusal) throw refused(refusal);
    const noticeId = body.notice_id ?? `${body.kind}-${randomUUID()}`;
    await publishNotice(
      gateway.store,
      { noticeId, kind: body.kind, audience: { kind: 'all' }, subject: body.subject, body: body.body, effectiveAt, endsAt: body.ends_at, about: null },
      { ...adminMetadata(keyOf(res).keyId, requestIdOf(res)), now },
    );
    res.status(201).json({ id: noticeId, kind: body.kind, subject: body.subject, effective_at: effectiveAt, ends_at: body.ends_at });
  });
};
