import { randomBytes } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';

/**
 * Dashboard sign-in sessions with an API key (operators' scripts; people sign in with a password,
 * see identity-routes.ts, whose sessions live in PostgreSQL). The browser holds only a random
 * session id, in a cookie marked HttpOnly and SameSite=Strict (and Secure over TLS); the key it
 * was exchanged for stays in this process's memory, so a restart (or another instance) signs a
 * key session out.
 *
 * Every call the dashboard makes goes to the ordinary JSON API: for a request that carries the
 * session cookie and the dashboard header, `sessionBearer` supplies the session's key as the
 * Bearer token, and the API's own authentication, scopes and deciders do the rest. A revoked
 * key therefore ends its sessions at once.
 */

export const SESSION_COOKIE = 'tollgate_session';
/**
 * Required on every dashboard call. A cross-site page cannot send a custom header without a CORS
 * preflight, which this gateway never grants: with SameSite=Strict this is the CSRF defence.
 */
export const DASHBOARD_HEADER = 'x-tollgate-dashboard';

const IDLE_MS = 8 * 3_600_000;
const MAX_SESSIONS = 10_000;

interface Session {
  readonly secret: string;
  expiresAt: number;
}

export class DashboardSessions {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  open(secret: string): string {
    // Oldest first in a Map: past the bound, the least recently opened session goes.
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    this.sessions.set(id, { secret, expiresAt: this.now() + IDLE_MS });
    return id;
  }

  /** The key behind a live session (its idle timer restarts), or null. */
  secretOf(id: string): string | null {
    const session = this.sessions.get(id);
    if (!session) return null;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return null;
    }
    session.expiresAt = this.now() + IDLE_MS;
    return session.secret;
  }

  close(id: string): void {
    this.sessions.delete(id);
  }
}

export function sessionIdOf(req: Request): string | null {
  return sessionIdOfCookieHeader(req.get('cookie'));
}

/** The session id in a Cookie header, or null. */
export function sessionIdOfCookieHeader(header: string | undefined): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === SESSION_COOKIE) return part.slice(eq + 1).trim() || null;
  }
  return null;
}

/**
 * TLS here, or at a proxy in front that says so. Trusting X-Forwarded-Proto for this alone is
 * safe: a forged header can only make the cookie stricter (Secure), never weaker.
 */
function overTls(req: Request): boolean {
  return req.secure || req.get('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase() === 'https';
}

export function setSessionCookie(req: Request, res: Response, id: string, maxAgeMs?: number): void {
  // Key sessions: no Max-Age (the browser forgets it when it closes; the server after IDLE_MS
  // unused). A person's session lives in PostgreSQL up to its absolute expiry: the cookie as long.
  res.cookie(SESSION_COOKIE, id, { httpOnly: true, sameSite: 'strict', secure: overTls(req), path: '/', ...(maxAgeMs !== undefined && { maxAge: maxAgeMs }) });
}

export function clearSessionCookie(req: Request, res: Response): void {
  res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', secure: overTls(req), path: '/' });
}

export function isDashboardCall(req: Request): boolean {
  return req.get(DASHBOARD_HEADER) === '1';
}

/**
 * A dashboard call without an Authorization header gets its session's key as the Bearer token;
 * anything else passes through untouched (and the API answers 401 as usual).
 */
export function sessionBearer(sessions: DashboardSessions): RequestHandler {
  return (req, _res, next) => {
    if (req.get('authorization') === undefined && isDashboardCall(req)) {
      const id = sessionIdOf(req);
      const secret = id === null ? null : sessions.secretOf(id);
      if (secret !== null) req.headers.authorization = `Bearer ${secret}`;
    }
    next();
  };
}
