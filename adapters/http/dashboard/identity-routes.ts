import { NO_LIMITS } from '../../../domain/api-key';
import type { Request, RequestHandler, Response, Router } from 'express';
import { z } from 'zod';
import { memberRoleSchema, roleAllows, type Permission } from '../../../domain/user';
import { adminRoleAllows, type AdminRole } from '../../../domain/admin-roles';
import type { Identity, IdentityRefusal, Outcome, SessionPrincipal } from '../../../src/identity/identity';
import { exportAccount } from '../../../src/compliance/export';
import { commandMetadata } from '../../../src/command-metadata';
import { requestIdOf } from '../observability/request-id';
import { actAsSession } from '../auth';
import { ApiError } from '../openai/errors';
import { parseInput, type GatewayParts } from '../routes/account';
import type { RefundClaimAuthoriser } from '../../../src/payments/claims';
import { DASHBOARD_HEADER, clearSessionCookie, isDashboardCall, sessionIdOf, sessionIdOfCookieHeader, setSessionCookie } from './sessions';

/**
 * People's sign-up, sign-in and profile for the dashboard (src/identity does the work). Every
 * route is a dashboard call (the X-Tollgate-Dashboard header, the CSRF defence with SameSite=Strict
 * cookies). Sessions are PostgreSQL rows (`tgs_` ids in the cookie, only their SHA-256 stored),
 * so they survive a restart and hold on every instance.
 *
 * A signed-in person reaches the account API (/v1/account, /v1/usage, /v1/billing) through
 * `userSessionAccess`: their role in the session's account decides what they may do there.
 */

export const USER_SESSION_PREFIX = 'tgs_';

function csrfRefused(): ApiError {
  return new ApiError(403, 'invalid_request_error', 'dashboard_header_required', null, 'Dashboard calls must carry the header X-Tollgate-Dashboard: 1.');
}

function notSignedIn(): ApiError {
  return new ApiError(401, 'invalid_request_error', 'not_signed_in', null, 'Sign in first.');
}

/** The answer for a refusal from src/identity. */
export function refusal(error: IdentityRefusal): ApiError {
  switch (error.code) {
    case 'invalid_email':
      return new ApiError(400, 'invalid_request_error', error.code, 'email', error.message);
    case 'weak_password':
      return new ApiError(400, 'invalid_request_error', error.code, 'password', error.message);
    case 'invalid_credentials':
      return new ApiError(401, 'invalid_request_error', error.code, null, error.message);
    case 'too_many_attempts':
      return new ApiError(429, 'invalid_request_error', error.code, null, error.message, { 'retry-after': String(error.retryAfterS) });
    case 'invalid_token':
      return new ApiError(400, 'invalid_request_error', error.code, 'token', error.message);
    case 'invalid_code':
      return new ApiError(400, 'invalid_request_error', error.code, 'code', error.message);
    case 'two_factor_not_pending':
    case 'two_factor_already_enabled':
    case 'two_factor_not_enabled':
      return new ApiError(409, 'invalid_request_error', error.code, null, error.message);
    case 'session_not_found':
      return new ApiError(404, 'invalid_request_error', error.code, null, error.message);
    case 'admin_not_found':
      return new ApiError(404, 'invalid_request_error', error.code, null, error.message);
    case 'last_operator':
      return new ApiError(409, 'invalid_request_error', error.code, null, error.message);
    case 'not_a_member':
      return new ApiError(403, 'invalid_request_error', error.code, 'account_id', error.message);
    case 'insufficient_role':
      return new ApiError(403, 'invalid_request_error', error.code, null, error.message);
    case 'last_owner':
    case 'already_a_member':
      return new ApiError(409, 'invalid_request_error', error.code, null, error.message);
    case 'member_not_found':
    case 'invitation_not_found':
      return new ApiError(404, 'invalid_request_error', error.code, null, error.message);
    case 'missing_required_parameter':
      return new ApiError(400, 'invalid_request_error', error.code, error.param, error.message);
  }
}

function value<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw refusal(outcome.error);
  return outcome.value;
}

const email = z.string().min(1).max(320);
const password = z.string().min(1).max(1_024);
const token = z.string().min(1).max(200);
const name = z.string().trim().min(1, 'must not be empty').max(200);

export const signUpBody = z.strictObject({ email, name, password, organisation: name });
export const signInBody = z.strictObject({ email, password });
export const codeBody = z.strictObject({ code: z.string().min(1).max(40) });
export const tokenBody = z.strictObject({ token });
export const resetBody = z.strictObject({ token, password });
export const emailBody = z.strictObject({ email });
export const profileBody = z.strictObject({ name: name.optional(), email: email.optional() });
export const passwordBody = z.strictObject({ current_password: password, new_password: password });
export const switchBody = z.strictObject({ account_id: z.string().min(1).max(128) });
export const memberRoleBody = z.strictObject({ role: memberRoleSchema });
export const inviteBody = z.strictObject({ email, role: memberRoleSchema });
export const acceptInvitationBody = z.strictObject({ token, name: name.optional(), password: password.optional() });
export const deleteMeBody = z.strictObject({ password });
export const disableTwoFactorBody = z.strictObject({ password, code: z.string().min(1).max(40) });

function clientAddress(req: Request): string {
  return req.ip ?? req.socket.remoteAddress ?? 'unknown';
}

function userSessionId(req: Request): string | null {
  const id = sessionIdOf(req);
  return id?.startsWith(USER_SESSION_PREFIX) ? id : null;
}

/** The signed-in principal of the request's session, or a 401. */
async function signedIn(identity: Identity, req: Request): Promise<{ id: string; principal: SessionPrincipal }> {
  const id = userSessionId(req);
  const principal = id === null ? null : await identity.session(id);
  if (id === null || !principal || principal.stage !== 'signed_in') throw notSignedIn();
  return { id, principal };
}

export function userSessionView(principal: SessionPrincipal, adminRole: AdminRole | null) {
  return {
    object: 'dashboard.session',
    signed_in: principal.stage === 'signed_in',
    kind: 'user',
    role: 'customer',
    user_id: principal.userId,
    account_id: principal.accountId,
    member_role: principal.role,
    email_verified: principal.emailVerified,
    permissions: principal.role ? (['keys', 'billing', 'members', 'close'] as const).filter((p) => roleAllows(principal.role!, p)) : [],
    /** the person's operator role: the dashboard shows the admin pages it reaches */
    admin_role: principal.stage === 'signed_in' ? adminRole : null,
    ...(principal.stage === 'two_factor' && { two_factor_required: true }),
  };
}

const REFUND_CLAIMS_PATH = '/v1/account/refund-claims';
const NOTICE_READ_PATH = /^\/v1\/account\/notices\/[^/]+\/read$/;

/** What a session of `role` needs for this account-API call: a permission, or only to be a member (reads). */
function permissionFor(method: string, path: string): Permission | 'read' {
  if (method === 'GET' || method === 'HEAD') return 'read';
  // A person's own notice preferences and reads (routes/notices.ts): any member sets theirs.
  if (path === '/v1/account/notice-preferences' || NOTICE_READ_PATH.test(path)) return 'read';
  if (path.startsWith('/v1/account/keys')) return 'keys';
  // A closed account's remaining credit is claimed by whoever handles its billing.
  if (path === REFUND_CLAIMS_PATH) return 'billing';
  if (path.startsWith('/v1/billing/')) return 'billing';
  // Anything else that changes the account (closing it, ...) is the owner's.
  return 'close';
}

/** Creating a key or buying credit waits for a verified email. */
function needsVerifiedEmail(method: string, path: string): boolean {
  return (method === 'POST' && path === '/v1/account/keys') || (method !== 'GET' && method !== 'HEAD' && path.startsWith('/v1/billing/'));
}

/**
 * Before the account routes: a dashboard call carrying a person's session (and no Authorization
 * header) acts as that person in the session's account, within their role. A role that does not
 * allow the call gets 403 `insufficient_role`; an unverified email creating a key or buying credit
 * gets 403 `email_not_verified`. Without a live session the route's own authentication answers 401.
 */
export function userSessionAccess(identity: Identity, isClosed: (accountId: string) => Promise<boolean>): RequestHandler {
  return async (req, res, next) => {
    const id = req.get('authorization') === undefined && isDashboardCall(req) ? userSessionId(req) : null;
    if (id === null) return next();
    const principal = await identity.session(id);
    if (!principal || principal.stage !== 'signed_in' || principal.accountId === null || principal.role === null) return next();
    const path = req.originalUrl.split('?')[0]!;
    if (path.startsWith('/admin')) return next();
    const needed = permissionFor(req.method, path);
    if (needed !== 'read' && !roleAllows(principal.role, needed)) {
      throw new ApiError(403, 'invalid_request_error', 'insufficient_role', null, `Your role in this account (${principal.role}) does not allow this.`);
    }
    // A closed account's people still sign in to read its statement and claim its credit; nothing
    // else changes there (no keys, no top-ups, no settings).
    if (needed !== 'read' && path !== REFUND_CLAIMS_PATH && (await isClosed(principal.accountId))) {
      throw new ApiError(
        403,
        'invalid_request_error',
        'account_closed',
        null,
        'This account is closed: you can read its statement and claim its remaining credit, nothing else.',
      );
    }
    if (needsVerifiedEmail(req.method, path) && !principal.emailVerified) {
      throw new ApiError(403, 'invalid_request_error', 'email_not_verified', null, 'Confirm your email address first: open the link we sent you.');
    }
    const canWrite = (['keys', 'billing', 'members', 'close'] as const).some((p) => roleAllows(principal.role!, p));
    actAsSession(res, {
      keyId: principal.publicId,
      accountId: principal.accountId,
      scopes: canWrite ? ['account_read', 'account_write'] : ['account_read'],
      prefix: `user:${principal.userId}`,
      userId: principal.userId,
      // A session manages the account; it never spends through /v1 inference, so no key limits apply.
      limits: NO_LIMITS,
    });
    next();
  };
}

/**
 * The customer's refund claim after closure (POST /v1/account/refund-claims): a dashboard call
 * (X-Tollgate-Dashboard, the CSRF defence) with a signed-in person's session whose role in the
 * session's account handles billing (owner or billing). A closed account's keys are revoked; its
 * people still sign in. Anything else (no session, a key, another role) is not authorised.
 */
export function sessionRefundClaimAuthoriser(identity: Identity): RefundClaimAuthoriser {
  return {
    async authorise({ headers }) {
      const header = (name: string) => {
        const v = headers[name];
        return Array.isArray(v) ? v.join('; ') : v;
      };
      if (header('authorization') !== undefined || header(DASHBOARD_HEADER) !== '1') return null;
      const id = sessionIdOfCookieHeader(header('cookie'));
      if (id === null || !id.startsWith(USER_SESSION_PREFIX)) return null;
      const principal = await identity.session(id);
      if (!principal || principal.stage !== 'signed_in' || principal.accountId === null || principal.role === null) return null;
      if (!roleAllows(principal.role, 'billing')) return null;
      return { accountId: principal.accountId, actor: { kind: 'user', userId: principal.userId } };
    },
  };
}

/**
 * Before the /admin routes: a dashboard call carrying the session of an admin user (a person with
 * an operator role, `tollgate admins add`) and no Authorization header acts with the admin scope
 * within that role (adminRoleAllows); another call gets 403 `insufficient_role`. The routes record
 * the person's user id as the admin actor, so the audit log names them. Without a live session,
 * or for a customer's session, the route's own authentication answers 401.
 */
export function adminSessionAccess(identity: Identity): RequestHandler {
  return async (req, res, next) => {
    const id = req.get('authorization') === undefined && isDashboardCall(req) ? userSessionId(req) : null;
    if (id === null) return next();
    const principal = await identity.session(id);
    if (!principal || principal.stage !== 'signed_in') return next();
    const role = await identity.adminRole(principal.userId);
    if (role === null) return next();
    const path = req.originalUrl.split('?')[0]!;
    if (!adminRoleAllows(role, req.method, path)) {
      throw new ApiError(403, 'invalid_request_error', 'insufficient_role', null, `Your operator role (${role}) does not allow this.`);
    }
    actAsSession(res, {
      keyId: principal.userId,
      accountId: 'admin',
      scopes: ['admin'],
      prefix: `admin-user:${principal.userId}`,
      limits: NO_LIMITS,
      userId: principal.userId,
    });
    next();
  };
}

export function mountIdentityRoutes(router: Router, gateway: GatewayParts): void {
  const identity = gateway.identity;
  const sessionMaxMs = gateway.config.TOLLGATE_SESSION_MAX_S * 1_000;
  const dashboard: RequestHandler = (req, _res, next) => (isDashboardCall(req) ? next() : next(csrfRefused()));
  const startSession = async (req: Request, res: Response, sessionId: string) => {
    setSessionCookie(req, res, sessionId, sessionMaxMs);
    const principal = await identity.session(sessionId);
    return userSessionView(principal!, await identity.adminRole(principal!.userId));
  };

  router.post('/dashboard/api/sign-up', dashboard, async (req, res) => {
    const body = parseInput(signUpBody, req.body);
    value(await identity.signUp(body));
    // The same answer whether or not the address was registered already.
    res.status(202).json({ object: 'sign_up', status: 'check_your_email', message: 'If this address can be used, a confirmation link is on its way.' });
  });

  router.post('/dashboard/api/verify-email', dashboard, async (req, res) => {
    const body = parseInput(tokenBody, req.body);
    value(await identity.verifyEmail(body.token));
    res.json({ object: 'email_verification', verified: true });
  });

  router.post('/dashboard/api/sign-in', dashboard, async (req, res) => {
    const body = parseInput(signInBody, req.body);
    const previous = userSessionId(req);
    const signed = value(await identity.signIn({ ...body, clientAddress: clientAddress(req), userAgent: req.get('user-agent') ?? null }));
    if (previous !== null) await identity.signOut(previous);
    res.json(await startSession(req, res, signed.sessionId));
  });

  router.post('/dashboard/api/sign-in/two-factor', dashboard, async (req, res) => {
    const body = parseInput(codeBody, req.body);
    const id = userSessionId(req);
    if (id === null) throw refusal({ code: 'two_factor_not_pending', message: 'Sign in with your email and password first.' });
    const done = value(await identity.completeTwoFactor(id, body.code));
    res.json(await startSession(req, res, done.sessionId));
  });

  router.post('/dashboard/api/forgot-password', dashboard, async (req, res) => {
    const body = parseInput(emailBody, req.body);
    value(await identity.forgotPassword(body.email));
    res.status(202).json({ object: 'password_reset', status: 'check_your_email', message: 'If this address has an account, a reset link is on its way.' });
  });

  router.post('/dashboard/api/reset-password', dashboard, async (req, res) => {
    const body = parseInput(resetBody, req.body);
    value(await identity.resetPassword(body.token, body.password));
    res.json({ object: 'password_reset', reset: true });
  });

  router.get('/dashboard/api/me', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    res.json({ object: 'user', ...(await identity.profile(principal.userId, principal.accountId)) });
  });

  router.patch('/dashboard/api/me', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const body = parseInput(profileBody, req.body);
    const updated = value(await identity.updateProfile(principal.userId, body));
    res.json({ object: 'user', ...(await identity.profile(principal.userId, principal.accountId)), email_change_pending: updated.emailChangePending });
  });

  // Everything held about the signed-in person, and for an owner about the current account (the
  // operator's `tollgate export`, self-served), as a JSON download. The account part records
  // PersonalDataViewed (what: export) with the person as the actor.
  router.get('/dashboard/api/me/export', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const user = await identity.exportUser(principal.userId, principal.publicId);
    if (!user) throw notSignedIn();
    const owner = principal.accountId !== null && principal.role === 'owner';
    const account = owner
      ? await exportAccount({ pool: gateway.database.pool, store: gateway.store, vault: gateway.vault }, principal.accountId!, {
          metadata: commandMetadata({ kind: 'user', userId: principal.userId }, requestIdOf(res)),
          purpose: 'self-served export from the dashboard',
        })
      : null;
    const exportedAt = new Date().toISOString();
    res.set('content-disposition', `attachment; filename="tollgate-export-${exportedAt.slice(0, 10)}.json"`);
    res.json({ object: 'data_export', exported_at: exportedAt, user, account });
  });

  // The person deletes themselves (password to confirm): refused while they are an account's only
  // owner; otherwise memberships removed, personal data crypto-shredded, every session ended.
  router.delete('/dashboard/api/me', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const body = parseInput(deleteMeBody, req.body);
    value(await identity.deleteUser(principal.userId, body.password));
    clearSessionCookie(req, res);
    res.json({ object: 'user', id: principal.userId, deleted: true });
  });

  router.post('/dashboard/api/me/password', dashboard, async (req, res) => {
    const { id, principal } = await signedIn(identity, req);
    const body = parseInput(passwordBody, req.body);
    value(await identity.changePassword(principal.userId, id, body.current_password, body.new_password));
    res.json({ object: 'password_change', changed: true });
  });

  router.post('/dashboard/api/me/resend-verification', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    await identity.resendVerification(principal.userId);
    res.status(202).json({ object: 'email_verification', status: 'check_your_email' });
  });

  router.get('/dashboard/api/me/sessions', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    res.json({ object: 'list', data: await identity.listSessions(principal.userId, principal.publicId) });
  });

  router.delete('/dashboard/api/me/sessions/:id', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    value(await identity.revokeSession(principal.userId, String(req.params['id'])));
    res.json({ object: 'session', id: String(req.params['id']), revoked: true });
  });

  router.post('/dashboard/api/me/account', dashboard, async (req, res) => {
    const { id, principal } = await signedIn(identity, req);
    const body = parseInput(switchBody, req.body);
    value(await identity.switchAccount(id, principal.userId, body.account_id));
    const switched = (await identity.session(id))!;
    res.json(userSessionView(switched, await identity.adminRole(switched.userId)));
  });

  router.post('/dashboard/api/me/two-factor', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const started = value(await identity.beginTwoFactor(principal.userId));
    res.json({ object: 'two_factor_enrolment', secret: started.secret, otpauth_uri: started.uri });
  });

  router.post('/dashboard/api/me/two-factor/confirm', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const body = parseInput(codeBody, req.body);
    const confirmed = value(await identity.confirmTwoFactor(principal.userId, body.code));
    res.json({ object: 'two_factor', enabled: true, recovery_codes: confirmed.recoveryCodes });
  });

  router.delete('/dashboard/api/me/two-factor', dashboard, async (req, res) => {
    const { principal } = await signedIn(identity, req);
    const body = parseInput(disableTwoFactorBody, req.body);
    value(await identity.disableTwoFactor(principal.userId, body.password, body.code));
    res.json({ object: 'two_factor', enabled: false });
  });
}

/** The signed-in person and their role in the session's account, or 401 / 403 `not_a_member`. */
async function inAccount(
  identity: Identity,
  req: Request,
): Promise<{ principal: SessionPrincipal; accountId: string; role: NonNullable<SessionPrincipal['role']> }> {
  const { principal } = await signedIn(identity, req);
  if (principal.accountId === null || principal.role === null) throw refusal({ code: 'not_a_member', message: 'You are not a member of any account.' });
  return { principal, accountId: principal.accountId, role: principal.role };
}

/** An id from the path: the shape of ours, or a 404 that changes nothing. */
function pathId(req: Request, code: 'member_not_found' | 'invitation_not_found'): string {
  const id = String(req.params['id']);
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(id))
    throw refusal({ code, message: code === 'member_not_found' ? 'No such member in this account.' : 'No such pending invitation.' });
  return id;
}

/**
 * Members of the session's account: list, invite, change a role, remove (src/identity does the
 * rules: owners and admins manage, an admin never touches owners, the last owner stays). Accepting
 * an invitation needs no session: the emailed link's token is the proof.
 */
export function mountMemberRoutes(router: Router, gateway: GatewayParts): void {
  const identity = gateway.identity;
  const dashboard: RequestHandler = (req, _res, next) => (isDashboardCall(req) ? next() : next(csrfRefused()));

  router.get('/dashboard/api/members', dashboard, async (req, res) => {
    const { principal, accountId } = await inAccount(identity, req);
    const listed = await identity.listMembers(accountId, principal.userId);
    res.json({ object: 'list', account_id: accountId, data: listed.members, invitations: listed.invitations });
  });

  router.post('/dashboard/api/members/invitations', dashboard, async (req, res) => {
    const { principal, accountId, role } = await inAccount(identity, req);
    const body = parseInput(inviteBody, req.body);
    const invitation = value(await identity.invite({ accountId, actorId: principal.userId, actorRole: role, email: body.email, role: body.role }));
    res.status(201).json({ object: 'invitation', ...invitation });
  });

  router.delete('/dashboard/api/members/invitations/:id', dashboard, async (req, res) => {
    const { accountId, role } = await inAccount(identity, req);
    const id = pathId(req, 'invitation_not_found');
    value(await identity.revokeInvitation({ accountId, actorRole: role, invitationId: id }));
    res.json({ object: 'invitation', id, revoked: true });
  });

  router.patch('/dashboard/api/members/:id', dashboard, async (req, res) => {
    const { principal, accountId, role } = await inAccount(identity, req);
    const id = pathId(req, 'member_not_found');
    const body = parseInput(memberRoleBody, req.body);
    const changed = value(await identity.changeRole({ accountId, actorId: principal.userId, actorRole: role, userId: id, role: body.role }));
    res.json({ object: 'member', user_id: id, role: changed.role });
  });

  router.delete('/dashboard/api/members/:id', dashboard, async (req, res) => {
    const { principal, accountId, role } = await inAccount(identity, req);
    const id = pathId(req, 'member_not_found');
    const removed = value(await identity.removeMember({ accountId, actorId: principal.userId, actorRole: role, userId: id }));
    res.json({ object: 'member', user_id: id, removed: true, sessions_ended: removed.sessionsEnded });
  });

  router.post('/dashboard/api/invitations/accept', dashboard, async (req, res) => {
    const body = parseInput(acceptInvitationBody, req.body);
    const accepted = value(await identity.acceptInvitation(body));
    res.json({ object: 'invitation_acceptance', account_id: accepted.accountId, user_id: accepted.userId, role: accepted.role, new_user: accepted.newUser });
  });
}

/** Ends a person's session on sign-out (the key sessions are the dashboard's own). */
export async function signOutUser(identity: Identity, req: Request, res: Response): Promise<boolean> {
  const id = userSessionId(req);
  if (id === null) return false;
  await identity.signOut(id);
  clearSessionCookie(req, res);
  return true;
}
