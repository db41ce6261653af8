import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pricingPage } from '../../../adapters/http/dashboard/pricing-page';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { apiClient } from '../admin/http';

/**
 * The dashboard's server side over plain HTTP: sign-in sessions (cookie flags, the CSRF header,
 * revocation), the admin account search, key renaming, and what the page is served with.
 */

let tg: TestGateway;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, tg.adminKey, body);
let ada: { accountId: string; key: string; keyId: string };
let grace: { accountId: string; key: string; keyId: string };

async function openAccount(name: string, email: string) {
  const created = await admin('POST', '/admin/accounts', { display_name: name, email });
  expect(created.status).toBe(201);
  const accountId = created.body.account_id as string;
  const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name: 'main' });
  return { accountId, key: key.body.key as string, keyId: key.body.key_id as string };
}

/** A dashboard call: the session cookie, and the header unless told otherwise. */
async function dashboard(
  method: string,
  path: string,
  options: { cookie?: string | null; header?: boolean; body?: unknown; headers?: Record<string, string> } = {},
) {
  const headers: Record<string, string> = { ...options.headers };
  if (options.header !== false) headers['x-tollgate-dashboard'] = '1';
  if (options.cookie) headers['cookie'] = options.cookie;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${tg.url}${path}`, {
    method,
    headers,
    redirect: 'manual',
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
  });
  const text = await response.text();
  let body: any = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: response.status, body, headers: response.headers };
}

async function signIn(key: string, headers: Record<string, string> = {}) {
  const answer = await dashboard('POST', '/dashboard/api/session', { headers: { authorization: `Bearer ${key}`, ...headers } });
  const setCookie = answer.headers.get('set-cookie') ?? '';
  return { ...answer, setCookie, cookie: setCookie.split(';')[0]! };
}

beforeAll(async () => {
  tg = await startTestGateway({
    models: [{ id: 'dash-model', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 16, operations: ['chat'] }],
  });
  call = apiClient(tg.url);
  expect((await admin('POST', '/admin/models', { id: 'dash-model', operations: ['chat'], max_output_tokens: 16 })).status).toBe(201);
  expect(
    (await admin('POST', '/admin/prices', { model: 'dash-model', operation: 'chat', input_usd_per_million: '0.25', output_usd_per_million: '1.000001' }))
      .status,
  ).toBe(201);
  ada = await openAccount('Ada Lovelace', 'ada@analytical.example');
  grace = await openAccount('Grace Hopper', 'grace@cobol.example');
});

afterAll(() => tg?.stop());

describe('sessions', () => {
  test('sign-in sets an HttpOnly SameSite=Strict cookie holding a random id, not the key', async () => {
    const signedIn = await signIn(ada.key);
    expect(signedIn.status).toBe(201);
    expect(signedIn.body).toMatchObject({ signed_in: true, role: 'customer', account_id: ada.accountId, key_id: ada.keyId });
    expect(signedIn.setCookie).toMatch(/^tollgate_session=[A-Za-z0-9_-]{43};/);
    expect(signedIn.setCookie).toMatch(/; HttpOnly/);
    expect(signedIn.setCookie).toMatch(/; SameSite=Strict/);
    expect(signedIn.setCookie).toMatch(/; Path=\//);
    expect(signedIn.setCookie).not.toMatch(/Secure/);
    // A browser-session cookie: gone when the browser closes (the server forgets it after 8 idle hours).
    expect(signedIn.setCookie).not.toMatch(/Max-Age|Expires/);
    expect(signedIn.setCookie).not.toContain(ada.key.split('_').pop());
    expect(JSON.stringify(signedIn.body)).not.toContain(ada.key);
  });

  test('over TLS (a proxy saying https) the cookie is Secure too', async () => {
    expect((await signIn(ada.key, { 'x-forwarded-proto': 'https' })).setCookie).toMatch(/; Secure/);
  });

  test('the session calls the ordinary API only with the dashboard header, and never inference', async () => {
    const { cookie } = await signIn(ada.key);
    const account = await dashboard('GET', '/v1/account', { cookie });
    expect(account.status).toBe(200);
    expect(account.body.account_id).toBe(ada.accountId);
    // Without the header (a cross-site form or link), the cookie is not a credential.
    expect((await dashboard('GET', '/v1/account', { cookie, header: false })).status).toBe(401);
    expect((await dashboard('POST', '/v1/account/keys', { cookie, header: false, body: { name: 'csrf' } })).status).toBe(401);
    expect(
      (await dashboard('POST', '/v1/chat/completions', { cookie, body: { model: 'dash-model', messages: [{ role: 'user', content: 'hi' }] } })).status,
    ).toBe(401);
    expect((await dashboard('GET', '/admin/accounts', { cookie })).status).toBe(403);
  });

  test('sign-in refuses a call without the dashboard header, a key in the body, a wrong key (never echoed) and a key without account_read', async () => {
    expect((await dashboard('POST', '/dashboard/api/session', { header: false, headers: { authorization: `Bearer ${ada.key}` } })).body.error.code).toBe(
      'dashboard_header_required',
    );
    // The key travels as a Bearer token (where the API's guards on keys apply), never in a body.
    const inBody = await dashboard('POST', '/dashboard/api/session', { body: { key: ada.key } });
    expect(inBody.status).toBe(401);
    expect(inBody.body.error.code).toBe('invalid_api_key');
    const wrong = await signIn(`${ada.key}x`);
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_api_key');
    expect(JSON.stringify(wrong.body)).not.toContain(ada.key);
    expect(wrong.setCookie).toBe('');
    const inferenceOnly = await admin('POST', `/admin/accounts/${ada.accountId}/keys`, { name: 'inference only', scopes: ['inference'] });
    const refused = await signIn(inferenceOnly.body.key);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_permissions');
  });

  test('revoking the key ends its sessions at once; signing out ends one', async () => {
    const extra = await admin('POST', `/admin/accounts/${ada.accountId}/keys`, { name: 'short-lived' });
    const { cookie } = await signIn(extra.body.key);
    expect((await dashboard('GET', '/dashboard/api/session', { cookie })).body).toMatchObject({ signed_in: true, key_id: extra.body.key_id });
    expect((await admin('DELETE', `/admin/keys/${extra.body.key_id}`, { reason: 'test' })).status).toBe(200);
    expect((await dashboard('GET', '/v1/account', { cookie })).status).toBe(401);
    const after = await dashboard('GET', '/dashboard/api/session', { cookie });
    expect(after.body).toEqual({ object: 'dashboard.session', signed_in: false });
    expect(after.headers.get('set-cookie')).toMatch(/^tollgate_session=;/);

    const other = await signIn(ada.key);
    expect((await dashboard('DELETE', '/dashboard/api/session', { cookie: other.cookie })).status).toBe(200);
    expect((await dashboard('GET', '/v1/account', { cookie: other.cookie })).status).toBe(401);
  });

  test('the admin key signs in as admin and reaches the admin API', async () => {
    const { body, cookie } = await signIn(tg.adminKey);
    expect(body).toMatchObject({ role: 'admin', key_id: 'admin' });
    expect((await dashboard('GET', '/admin/models', { cookie })).status).toBe(200);
  });
});

describe('admin account search', () => {
  const search = async (q: string) =>
    (await admin('GET', `/admin/accounts?q=${encodeURIComponent(q)}`)).body.data.map((a: { account_id: string }) => a.account_id);

  test('matches part of a name or an email (any case) or an account id, newest first', async () => {
    expect(await search('LOVELACE')).toEqual([ada.accountId]);
    expect(await search('cobol.example')).toEqual([grace.accountId]);
    expect(await search(grace.accountId.slice(-8))).toEqual([grace.accountId]);
    expect(await search('.example')).toEqual([grace.accountId, ada.accountId]);
    expect(await search('nobody')).toEqual([]);
  });

  test('answers each account with its status and balance; limit bounds the list', async () => {
    const all = await admin('GET', '/admin/accounts?limit=1');
    expect(all.body.data).toEqual([
      expect.objectContaining({
        account_id: grace.accountId,
        status: 'open',
        display_name: 'Grace Hopper',
        email: 'grace@cobol.example',
        available_usd: '0.000000',
        suspension_reason: null,
      }),
    ]);
    expect((await admin('GET', '/admin/accounts?limit=0')).status).toBe(400);
  });

  test('is for the admin key only', async () => {
    expect((await call('GET', '/admin/accounts?q=ada', ada.key)).status).toBe(403);
  });
});

describe('key renaming', () => {
  test('renames the key through the decider; another account’s key is not found; a revoked one is refused', async () => {
    const renamed = await call('PATCH', `/v1/account/keys/${ada.keyId}`, ada.key, { name: 'laptop' });
    expect(renamed.status).toBe(200);
    expect(renamed.body).toMatchObject({ key_id: ada.keyId, name: 'laptop', status: 'active' });
    expect((await call('GET', '/v1/account/keys', ada.key)).body.data.find((k: { key_id: string }) => k.key_id === ada.keyId).name).toBe('laptop');
    expect((await call('PATCH', `/v1/account/keys/${grace.keyId}`, ada.key, { name: 'mine now' })).status).toBe(404);
    expect((await call('PATCH', `/v1/account/keys/${ada.keyId}`, ada.key, { name: '  ' })).status).toBe(400);
    const spare = await call('POST', '/v1/account/keys', ada.key, { name: 'spare' });
    await call('DELETE', `/v1/account/keys/${spare.body.key_id}`, ada.key);
    const refused = await call('PATCH', `/v1/account/keys/${spare.body.key_id}`, ada.key, { name: 'again' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('api_key_revoked');
  });
});

describe('the page', () => {
  test('/ and /dashboard lead to /dashboard/, served with a CSP that allows exactly its import map', async () => {
    expect((await dashboard('GET', '/')).headers.get('location')).toBe('/dashboard/');
    expect((await dashboard('GET', '/dashboard')).headers.get('location')).toBe('/dashboard/');
    const page = await dashboard('GET', '/dashboard/');
    expect(page.status).toBe(200);
    const importMap = /<script type="importmap">(.*?)<\/script>/.exec(page.body)![1]!;
    const hash = createHash('sha256').update(importMap).digest('base64');
    expect(page.headers.get('content-security-policy')).toContain(`script-src 'self' 'sha256-${hash}'`);
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'");
    for (const url of Object.values(JSON.parse(importMap).imports) as string[]) {
      const module = await fetch(`${tg.url}${url}`);
      expect(module.status).toBe(200);
      expect(module.headers.get('content-type')).toMatch(/javascript/);
    }
    expect((await dashboard('GET', '/dashboard/vendor/package.json')).status).toBe(404);
    const traversal = await dashboard('GET', '/dashboard/static/%2e%2e/routes.ts');
    expect(traversal.status).toBeGreaterThanOrEqual(400);
    expect(String(JSON.stringify(traversal.body))).not.toContain('mountDashboardRoutes');
  });

  test('no asset comes from another host: the page works offline', () => {
    const dir = join(__dirname, '../../../adapters/http/dashboard/static');
    const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => /\.(js|html|css)$/.test(f));
    expect(files.length).toBeGreaterThan(5);
    for (const file of files)
      expect({ file, urls: readFileSync(join(dir, file), 'utf8').match(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}\//gi) ?? [] }).toEqual({ file, urls: [] });
  });

  test('the public pricing page is made from the price book, escaped', async () => {
    const page = await dashboard('GET', '/dashboard/pricing', { header: false });
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/<th scope="row">dash-model<\/th><td>chat<\/td><td class="num">\$0\.25<\/td><td class="num">\$1\.000001<\/td>/);
    // Model ids cannot hold markup today; the page escapes them all the same.
    const crafted = pricingPage(
      [
        {
          model: '<img src=x onerror=alert(1)>',
          operation: 'chat',
          price_version: 1,
          input_usd_per_million: '1.000000',
          output_usd_per_million: '2.500000',
          unit: 'token',
        },
      ],
      new Date().toISOString(),
    );
    expect(crafted).not.toContain('<img');
    expect(crafted).toContain('&#60;img src=x onerror=alert(1)&#62;');
  });
});
