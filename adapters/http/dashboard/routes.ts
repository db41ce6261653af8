import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Router } from 'express';
import { accountStreamId } from '../../../domain/account';
import { PRICE_BOOK_STREAM_ID } from '../../../domain/price-book';
import type { RouteMount } from '../../../src/gateway';
import { bearerToken } from '../auth';
import { ApiError, apiKeyExpired, invalidApiKey } from '../openai/errors';
import { modelsOnSale, pricesInForce, pricesScheduled } from '../routes/catalogue';
import { pricingPage } from './pricing-page';
import { DashboardSessions, clearSessionCookie, isDashboardCall, sessionBearer, sessionIdOf, setSessionCookie } from './sessions';
import {
  USER_SESSION_PREFIX,
  adminSessionAccess,
  mountIdentityRoutes,
  mountMemberRoutes,
  signOutUser,
  userSessionAccess,
  userSessionView,
} from './identity-routes';

/**
 * The web dashboard, served by the gateway itself: a Preact + htm single-page app loaded as ES
 * modules (no build step; the libraries come from node_modules, never a CDN), a server-made
 * public pricing page, and sign-in sessions that let the page call the ordinary JSON API.
 *
 * Mount it before the other API routers (see src/routes.ts): `sessionBearer` must run before
 * their authentication.
 */

const STATIC_DIR = join(__dirname, 'static');

/** The browser's module names for the libraries, and the files that provide them. */
const VENDOR: Record<string, { specifier?: string; file: string }> = {
  'preact.mjs': { specifier: 'preact', file: packageFile('preact', 'dist/preact.mjs') },
  'hooks.mjs': { specifier: 'preact/hooks', file: packageFile('preact', 'hooks/dist/hooks.mjs') },
  'htm.mjs': { specifier: 'htm', file: packageFile('htm', 'dist/htm.mjs') },
  'htm-preact.mjs': { specifier: 'htm/preact', file: packageFile('htm', 'preact/index.mjs') },
  'uPlot.esm.js': { specifier: 'uplot', file: packageFile('uplot', 'dist/uPlot.esm.js') },
  'uPlot.min.css': { file: packageFile('uplot', 'dist/uPlot.min.css') },
};

/** A file inside an installed package, found as Node finds the package (not every one exports package.json). */
function packageFile(name: string, path: string): string {
  for (const modules of require.resolve.paths(name) ?? []) {
    const file = join(modules, name, path);
    if (existsSync(file)) return file;
  }
  throw new Error(`the dashboard needs ${name}/${path}: run npm install`);
}

function csrfRefused(): ApiError {
  return new ApiError(403, 'invalid_request_error', 'dashboard_header_required', null, 'Dashboard calls must carry the header X-Tollgate-Dashboard: 1.');
}

export const mountDashboardRoutes: RouteMount = (router: Router, gateway) => {
  const sessions = new DashboardSessions();
  const page = indexPage();

  // Before every other router: a signed-in page's API calls carry its session's key.
  router.use(['/v1/account', '/v1/usage', '/v1/billing', '/admin'], sessionBearer(sessions));
  // A person's session (PostgreSQL) acts within their role in the session's account.
  router.use(
    ['/v1/account', '/v1/usage', '/v1/billing'],
    userSessionAccess(gateway.identity, async (accountId) => (await gateway.ledger.accounts.load(accountStreamId(accountId))).state.status === 'closed'),
  );
  router.use('/admin', adminSessionAccess(gateway.identity));
  mountIdentityRoutes(router, gateway);
  mountMemberRoutes(router, gateway);

  router.get('/', (_req, res) => res.redirect(302, '/dashboard/'));
  // The router is not strict ('/dashboard' matches '/dashboard/'): the page's relative links need the slash.
  router.get('/dashboard/', (req, res) => {
    if (!req.originalUrl.split('?')[0]!.endsWith('/')) return res.redirect(301, '/dashboard/');
    res.set({ 'content-security-policy': page.csp, 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', 'referrer-policy': 'same-origin' });
    res.type('html').send(page.html);
  });
  router.use('/dashboard/static', express.static(STATIC_DIR, { index: false, setHeaders: (res) => res.setHeader('cache-control', 'no-cache') }));
  router.get('/dashboard/vendor/:file', (req, res) => {
    const vendor = VENDOR[String(req.params['file'])];
    if (!vendor) throw new ApiError(404, 'invalid_request_error', 'not_found', null, 'No such file.');
    res.sendFile(vendor.file, { headers: { 'cache-control': 'public, max-age=86400' } });
  });

  router.get('/dashboard/pricing', async (_req, res) => {
    const { state } = await gateway.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
    const at = gateway.clock().toISOString();
    res.set({ 'content-security-policy': "default-src 'none'; style-src 'self'; img-src data:; frame-ancestors 'none'", 'cache-control': 'no-cache' });
    res.type('html').send(pricingPage(pricesInForce(state, at), at, pricesScheduled(state, at), modelsOnSale(state, at)));
  });

  // Sessions ------------------------------------------------------------------------------------

  router.post('/dashboard/api/session', async (req, res) => {
    if (!isDashboardCall(req)) throw csrfRefused();
    // The key comes as a Bearer token, as on every API call, so whatever guards keys in that
    // header (checks, limits on failed attempts) guards the sign-in too; never in a body.
    const key = bearerToken(req);
    const checked = await gateway.keys.check(key);
    if (!checked.ok) throw checked.reason === 'expired' ? apiKeyExpired(checked.expiresAt) : invalidApiKey('invalid');
    const verified = checked.key;
    const admin = verified.scopes.includes('admin');
    if (!admin && !verified.scopes.includes('account_read')) {
      throw new ApiError(403, 'invalid_request_error', 'insufficient_permissions', null, 'This key does not have the account_read scope the dashboard needs.');
    }
    const previous = sessionIdOf(req);
    if (previous !== null) sessions.close(previous);
    setSessionCookie(req, res, sessions.open(key));
    res.status(201).json(sessionView(verified));
  });

  router.get('/dashboard/api/session', async (req, res) => {
    if (!isDashboardCall(req)) throw csrfRefused();
    const id = sessionIdOf(req);
    if (id?.startsWith(USER_SESSION_PREFIX)) {
      const principal = await gateway.identity.session(id);
      if (principal) {
        res.json(userSessionView(principal, await gateway.identity.adminRole(principal.userId)));
        return;
      }
      clearSessionCookie(req, res);
      res.json({ object: 'dashboard.session', signed_in: false });
      return;
    }
    const secret = id === null ? null : sessions.secretOf(id);
    // The key may have been revoked since sign-in: verified again, as every API call is.
    const verified = secret === null ? null : await gateway.keys.verify(secret);
    if (!verified) {
      if (id !== null) sessions.close(id);
      clearSessionCookie(req, res);
      // Not an error: the page asks this to know whether to show the sign-in form.
      res.json({ object: 'dashboard.session', signed_in: false });
      return;
    }
    res.json(sessionView(verified));
  });

  router.delete('/dashboard/api/session', async (req, res) => {
    if (!isDashboardCall(req)) throw csrfRefused();
    if (await signOutUser(gateway.identity, req, res)) {
      res.json({ object: 'dashboard.session', signed_in: false });
      return;
    }
    const id = sessionIdOf(req);
    if (id !== null) sessions.close(id);
    clearSessionCookie(req, res);
    res.json({ object: 'dashboard.session', signed_in: false });
  });
};

function sessionView(key: { keyId: string; accountId: string; prefix: string; scopes: readonly string[] }) {
  return {
    object: 'dashboard.session',
    signed_in: true,
    role: key.scopes.includes('admin') ? 'admin' : 'customer',
    account_id: key.accountId,
    key_id: key.keyId,
    prefix: key.prefix,
    scopes: key.scopes,
  };
}

/** The app's one HTML page; its import map is inline, so the CSP names it by hash. */
function indexPage(): { html: string; csp: string } {
  const imports = Object.fromEntries(Object.entries(VENDOR).flatMap(([file, v]) => (v.specifier ? [[v.specifier, `/dashboard/vendor/${file}`]] : [])));
  const importMap = JSON.stringify({ imports });
  const hash = createHash('sha256').update(importMap).digest('base64');
  const html = readFileSync(join(STATIC_DIR, 'index.html'), 'utf8').replace('<!--importmap-->', `<script type="importmap">${importMap}</script>`);
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${hash}'`,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}
