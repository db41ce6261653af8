import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../../support/mock-llm';
import { OpenApiCheck, type CheckedAnswer, type OpenApiDocument } from '../../support/openapi-check';
import { startPaymentsHarness, WEBHOOK_SECRET, type PaymentsHarness } from '../payments/harness';
import { espeakWav, startSpeechServer, type SpeechServer } from '../../support/speech-server';

/**
 * The OpenAPI document (/openapi.json) against what the gateway really answers. Every request
 * here goes through a real gateway (embedded PostgreSQL, mock-llm upstream; a second gateway
 * with payments on against the Stripe stand-in) and every answer, success or error, is checked
 * against the document the gateway serves: the route and status must be documented and the
 * body must validate. At the end every documented operation must have been exercised, and each
 * group (tag) must have shown at least one success and one error.
 */

const CHAT = 'oa-chat';
const EMBED = 'oa-embed';
const DOWN = 'oa-down';
const WHISPER = 'oa-whisper';
const TTS = 'oa-tts';

let upstream: MockLlm;
let speech: SpeechServer;
let tg: TestGateway;
let pay: PaymentsHarness;
let check: OpenApiCheck;

interface CallOptions {
  readonly key?: string | null;
  readonly body?: unknown;
  readonly accept?: string;
  readonly headers?: Record<string, string>;
  readonly raw?: string;
}

function caller(baseUrl: () => string) {
  return (method: string, path: string, options: CallOptions = {}): Promise<CheckedAnswer> => {
    const headers: Record<string, string> = { ...options.headers };
    if (options.key) headers['authorization'] = `Bearer ${options.key}`;
    if (options.accept) headers['accept'] = options.accept;
    let body: string | undefined;
    if (options.raw !== undefined) body = options.raw;
    else if (options.body !== undefined) body = JSON.stringify(options.body);
    if (body !== undefined) headers['content-type'] ??= 'application/json';
    return check.fetch(`${baseUrl()}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  };
}

const call = caller(() => tg.url);
const callPay = caller(() => pay.tg.url);
const admin = (method: string, path: string, options: CallOptions = {}) => call(method, path, { key: tg.adminKey, ...options });

function expectStatus(answer: CheckedAnswer, status: number, code?: string): void {
  expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status, code: code ?? answer.body?.error?.code });
}

const inOneHour = () => new Date(Date.now() + 3_600_000).toISOString();

/** A customer on `tg`: an account opened by the admin API, a key, and optionally credit. */
async function customer(name: string, topUpUsd?: string): Promise<{ accountId: string; key: string; keyId: string }> {
  const opened = await admin('POST', '/admin/accounts', { body: { display_name: name, email: `${name.toLowerCase()}@example.org` } });
  expectStatus(opened, 201);
  const accountId = opened.body.account_id as string;
  const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { body: { name: 'main' } });
  expectStatus(key, 201);
  if (topUpUsd)
    expectStatus(
      await admin('POST', `/admin/accounts/${accountId}/top-ups`, { body: { amount_usd: topUpUsd, reference: `ref-${name}`, reason: 'test credit' } }),
      201,
    );
  return { accountId, key: key.body.key, keyId: key.body.key_id };
}

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  speech = await startSpeechServer();
  [tg, pay] = await Promise.all([
    startTestGateway({
      models: [
        { id: CHAT, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat', 'completion'] },
        { id: EMBED, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 1, operations: ['embedding'] },
        // Nothing listens on port 9: every request to this model finds no upstream.
        { id: DOWN, upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 8 }], maxOutputTokens: 16, operations: ['chat'] },
        { id: WHISPER, upstreams: [{ baseUrl: speech.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['transcription', 'translation'] },
        { id: TTS, upstreams: [{ baseUrl: speech.baseUrl, capacity: 8 }], maxOutputTokens: 1, operations: ['speech'] },
      ],
      // This file sends a 401 to every authenticated route on purpose; the limiter has its own tests.
      env: { TOLLGATE_AUTH_FAILURES_PER_MINUTE: '10000', TOLLGATE_MAX_AUDIO_BYTES: '100000', TOLLGATE_BCRYPT_COST: '4' },
    }),
    startPaymentsHarness(),
  ]);
  // Both gateways serve the same document; the checker reads it from the one under test.
  const served = await fetch(`${tg.url}/openapi.json`);
  check = new OpenApiCheck((await served.json()) as OpenApiDocument);
}, 90_000);

afterAll(async () => {
  await tg?.stop();
  await pay?.stop();
  await upstream?.stop();
  await speech?.stop();
});

describe('the document', () => {
  test('is OpenAPI 3.1 and describes itself; /docs is served with a strict CSP', async () => {
    const doc = await call('GET', '/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toBe('3.1.0');
    expect(doc.body.info.title).toBe('Tollgate API');
    // Valid against the OpenAPI 3.1 specification's own JSON Schema: the validator's CLI (an ES
    // module, which jest cannot load) as a child process, by its exit code and report.
    const file = join(mkdtempSync(join(tmpdir(), 'tollgate-openapi-')), 'openapi.json');
    writeFileSync(file, doc.text);
    const cli = require.resolve('@seriousme/openapi-schema-validator/bin/validate-api-cli.js');
    const validated = await promisify(execFile)(process.execPath, [cli, file]);
    expect(JSON.parse(validated.stdout)).toEqual({ valid: true });
    const page = await fetch(`${tg.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(page.headers.get('content-security-policy')).not.toContain('unsafe-eval');
    const html = await page.text();
    expect(html).toContain('/docs/assets/swagger-ui-bundle.js');
    expect(html).not.toMatch(/https?:\/\//);
    const bundle = await fetch(`${tg.url}/docs/assets/swagger-ui-bundle.js`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get('content-type')).toContain('javascript');
    await bundle.arrayBuffer();
  });

  test('the checker itself fails on an undocumented status, field or route', () => {
    const json = (status: number, body: unknown): CheckedAnswer => ({
      status,
      headers: new Headers(),
      contentType: 'application/json',
      text: JSON.stringify(body),
      body,
    });
    expect(() => check.check('GET', '/healthz', json(418, { status: 'ok' }))).toThrow(/status 418 is not documented/);
    expect(() => check.check('GET', '/healthz', json(200, { status: 'ok', extra: 1 }))).toThrow(/does not match/);
    expect(() => check.check('GET', '/v1/nowhere', json(200, {}))).toThrow(/not in the OpenAPI document/);
    expect(() => check.check('GET', '/v1/account', json(401, { error: { message: 'x', type: 'nonsense', param: null, code: null } }))).toThrow(
      /does not match/,
    );
    // Each failed before recording: what was seen stays only real answers.
    expect(check.seen.filter((s) => s.status === 418 || s.template === '/v1/nowhere')).toEqual([]);
  });
});

/** Every route express serves, as "GET /v1/account/keys/{keyId}", read from the app's router. */
function servedRoutes(gateway: TestGateway): string[] {
  type Layer = { route?: { path: string; methods: Record<string, boolean> }; handle?: { stack?: Layer[] } };
  // The server's listener is the lean /v1 path in front of the express app (adapters/http/app.ts).
  const listener = gateway.gateway.server.listeners('request')[0] as unknown as { express: { router: { stack: Layer[] } } };
  const app = listener.express;
  const out: string[] = [];
  const walk = (stack: readonly Layer[]) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = layer.route.path.replace(/[:*](\w+)/g, '{$1}');
        for (const method of Object.keys(layer.route.methods)) out.push(`${method.toUpperCase()} ${path}`);
      } else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk(app.router.stack);
  return out;
}

describe('the routes', () => {
  test('every route the gateway serves is in the document, but the HTML pages (dashboard, /docs) and their assets', () => {
    const documented = new Set(check.operations().map((o) => `${o.method} ${o.template}`));
    // The dashboard's JSON API (/dashboard/api/) is API: documented like the rest.
    const pages = /^[A-Z]+ \/(?:$|dashboard\/(?!api\/)|docs(?:$|\/))/;
    const served = servedRoutes(tg).filter((route) => !pages.test(route));
    expect(served.length).toBeGreaterThan(40);
    expect(served.filter((route) => !documented.has(route))).toEqual([]);
    // And the other way: nothing documented that the gateway does not serve.
    expect([...documented].filter((route) => !served.includes(route))).toEqual([]);
  });

  test('the security each operation documents is enforced: admin ones refuse a customer key, keyed ones refuse no key', async () => {
    const { key } = await customer('Mallory');
    const concrete = (template: string) => template.replace('{id}', 'acct_nobody').replace('{keyId}', 'key_nobody');
    const document = (await call('GET', '/openapi.json')).body as { paths: Record<string, Record<string, { security?: Record<string, unknown>[] }>> };
    let admins = 0;
    let keyed = 0;
    for (const { method, template } of check.operations()) {
      // The dashboard's people routes need its header and a session cookie: 'users and sessions' below.
      if (template.startsWith('/dashboard/api/')) continue;
      const schemes = (document.paths[template]![method.toLowerCase()]!.security ?? []).flatMap((s) => Object.keys(s));
      const body = method === 'GET' || method === 'DELETE' ? undefined : {};
      if (schemes.includes('adminKey')) {
        admins += 1;
        expectStatus(await call(method, concrete(template), { key, ...(body ? { body } : {}) }), 403, 'insufficient_permissions');
      }
      if (schemes.length > 0) {
        keyed += 1;
        expectStatus(await call(method, concrete(template), body ? { body } : {}), 401, 'invalid_api_key');
      } else {
        // Documented as public: no key is needed (whatever else the request lacks).
        expect((await call(method, concrete(template), body ? { body } : {})).status).not.toBe(401);
      }
    }
    expect(admins).toBeGreaterThan(15);
    expect(keyed).toBeGreaterThan(35);
  });
});

describe('operations and public', () => {
  test('health, readiness, metrics, pricing', async () => {
    expectStatus(await call('GET', '/healthz'), 200);
    expectStatus(await call('GET', '/readyz'), 200);
    expectStatus(await call('GET', '/metrics'), 200);
    expectStatus(await call('GET', '/pricing'), 200);
    // The payments gateway's only upstream is down: not ready, in the readiness shape.
    expectStatus(await callPay('GET', '/readyz'), 503);
  });
});

describe('admin', () => {
  test('models and prices', async () => {
    expectStatus(await admin('POST', '/admin/models', { body: { id: CHAT, operations: ['chat', 'completion'], max_output_tokens: 256 } }), 201);
    expectStatus(await admin('POST', '/admin/models', { body: { id: CHAT, operations: ['chat'], max_output_tokens: 256 } }), 409, 'model_already_exists');
    expectStatus(await admin('POST', '/admin/models', { body: { id: EMBED, operations: ['embedding'], max_output_tokens: 1 } }), 201);
    expectStatus(await admin('POST', '/admin/models', { body: { id: DOWN, operations: ['chat'], max_output_tokens: 16 } }), 201);
    expectStatus(await admin('POST', '/admin/models', { body: { id: 'x', operations: ['dance'], max_output_tokens: 5 } }), 400, 'invalid_value');
    expectStatus(await admin('POST', '/admin/models', { body: { id: WHISPER, operations: ['transcription', 'translation'], max_output_tokens: 256 } }), 201);
    expectStatus(await admin('POST', '/admin/models', { body: { id: TTS, operations: ['speech'], max_output_tokens: 1 } }), 201);
    for (const operation of ['transcription', 'translation'] as const) {
      const set = await admin('POST', '/admin/prices', {
        body: { model: WHISPER, operation, input_usd_per_million: '0', output_usd_per_million: '0', usd_per_audio_second: '0.0001' },
      });
      expectStatus(set, 201);
      expect(set.body.usd_per_audio_second).toBe('0.000100');
    }
    const tts = await admin('POST', '/admin/prices', {
      body: { model: TTS, operation: 'speech', input_usd_per_million: '0', output_usd_per_million: '0', usd_per_million_characters: '15' },
    });
    expectStatus(tts, 201);
    expect(tts.body.usd_per_million_characters).toBe('15.000000');
    for (const [model, operation] of [
      [CHAT, 'chat'],
      [CHAT, 'completion'],
      [EMBED, 'embedding'],
      [DOWN, 'chat'],
    ] as const) {
      expectStatus(await admin('POST', '/admin/prices', { body: { model, operation, input_usd_per_million: '0.50', output_usd_per_million: '1.50' } }), 201);
    }
    expectStatus(
      await admin('POST', '/admin/prices', {
        body: {
          model: CHAT,
          operation: 'chat',
          input_usd_per_million: '0.60',
          output_usd_per_million: '1.80',
          effective_at: inOneHour(),
          short_notice_reason: 'test',
        },
      }),
      201,
    );
    expectStatus(
      await admin('POST', '/admin/prices', {
        body: { model: CHAT, operation: 'chat', input_usd_per_million: '0.70', output_usd_per_million: '1.80', effective_at: inOneHour() },
      }),
      409,
      'price_increase_notice_too_short',
    );
    const card = {
      description: 'Chat model.',
      context_length: 8192,
      licence: 'Apache-2.0',
      rules_text: 'Apache terms.',
      rules_url: 'https://example.org/rules',
      status: 'preview',
    };
    expectStatus(await admin('PUT', `/admin/models/${CHAT}/catalogue`, { body: card }), 200);
    expectStatus(await admin('PUT', `/admin/models/${CHAT}/catalogue`, { body: { ...card, status: 'deprecated' } }), 400, 'missing_required_parameter');
    expectStatus(await admin('PUT', '/admin/models/never-added/catalogue', { body: card }), 404, 'model_not_found');
    expectStatus(
      await admin('POST', '/admin/prices', { body: { model: 'nope', operation: 'chat', input_usd_per_million: '1', output_usd_per_million: '1' } }),
      404,
      'model_not_found',
    );
    expectStatus(await admin('GET', '/admin/models'), 200);
    expectStatus(await call('GET', '/admin/models'), 401, 'invalid_api_key');
    expectStatus(await admin('POST', '/admin/models', { body: { id: 'old-model', operations: ['chat'], max_output_tokens: 8 } }), 201);
    expectStatus(await admin('DELETE', '/admin/models/old-model'), 200);
    expectStatus(await admin('DELETE', '/admin/models/old-model'), 409, 'model_retired');
    expectStatus(await admin('DELETE', '/admin/models/never-added'), 404, 'model_not_found');
    expectStatus(await call('GET', '/pricing'), 200);
  });

  test('accounts, credit, suspension, keys', async () => {
    const created = await admin('POST', '/admin/accounts', {
      body: { display_name: 'Grace Hopper', email: 'grace@example.org', promo_credit_usd: '5', promo_expires_at: inOneHour() },
    });
    expectStatus(created, 201);
    const id = created.body.account_id as string;
    expectStatus(await admin('POST', '/admin/accounts', { body: { display_name: 'No Email' } }), 400, 'missing_required_parameter');
    expectStatus(await admin('GET', '/admin/accounts?q=grace'), 200);
    expectStatus(await admin('GET', '/admin/accounts?limit=0'), 400);
    expectStatus(await admin('GET', `/admin/accounts/${id}`), 200);
    expectStatus(await admin('GET', '/admin/accounts/acct_nobody'), 404, 'account_not_found');

    expectStatus(await admin('POST', `/admin/accounts/${id}/top-ups`, { body: { amount_usd: '20', reference: 'inv-1', reason: 'bank transfer' } }), 201);
    expectStatus(await admin('POST', `/admin/accounts/${id}/top-ups`, { body: { amount_usd: '20', reference: 'inv-1', reason: 'bank transfer' } }), 200);
    expectStatus(await admin('POST', `/admin/accounts/${id}/top-ups`, { body: { amount_usd: 20, reference: 'inv-2', reason: 'x' } }), 400, 'invalid_type');
    const paid = await admin('POST', '/admin/accounts', { body: { display_name: 'Payout Person', email: 'payout@example.org' } });
    expectStatus(paid, 201);
    const payee = paid.body.account_id as string;
    expectStatus(await admin('POST', `/admin/accounts/${payee}/top-ups`, { body: { amount_usd: '20', reference: 'inv-p', reason: 'bank transfer' } }), 201);
    const payoutBody = { method: 'bank_transfer', reference: 'TR-1', amount_usd: '5', reason: 'asked for it back' };
    expectStatus(await admin('POST', `/admin/accounts/${payee}/payouts`, { body: payoutBody }), 201);
    expectStatus(await admin('POST', `/admin/accounts/${payee}/payouts`, { body: payoutBody }), 200);
    expectStatus(
      await admin('POST', `/admin/accounts/${payee}/payouts`, { body: { ...payoutBody, reference: 'TR-2', amount_usd: '16' } }),
      409,
      'exceeds_refundable_credit',
    );
    expectStatus(await admin('POST', `/admin/accounts/${payee}/payouts`, { body: { ...payoutBody, method: 'cash' } }), 400);
    const grant = await admin('POST', `/admin/accounts/${id}/promo-grants`, { body: { amount_usd: '1', expires_at: inOneHour(), reason: 'welcome' } });
    expectStatus(grant, 201);
    expectStatus(await admin('POST', `/admin/accounts/${id}/promo-grants/${grant.body.grant_id}/revoke`, { body: { amount_usd: '0.5', reason: 'test' } }), 200);
    expectStatus(
      await admin('POST', `/admin/accounts/${id}/promo-grants/${grant.body.grant_id}/revoke`, { body: { amount_usd: '0.6', reason: 'test' } }),
      409,
      'exceeds_unspent_promo',
    );
    expectStatus(await admin('POST', `/admin/accounts/${id}/promo-grants/g_nothing/revoke`, { body: { reason: 'test' } }), 404, 'promo_grant_not_found');
    expectStatus(await admin('POST', `/admin/accounts/${id}/maximum-balance`, { body: { maximum_usd: '20000', reason: 'contract' } }), 200);
    expectStatus(
      await admin('POST', `/admin/accounts/${id}/maximum-balance`, { body: { maximum_usd: '1', reason: 'contract' } }),
      409,
      'maximum_below_default',
    );
    expectStatus(await admin('POST', `/admin/accounts/${id}/promo-grants`, { body: { amount_usd: '1', expires_at: 'tomorrow', reason: 'x' } }), 400);

    const key = await admin('POST', `/admin/accounts/${id}/keys`, { body: { name: 'ci' } });
    expectStatus(key, 201);
    expectStatus(await admin('POST', `/admin/accounts/${id}/keys`, { body: { scopes: ['admin'] } }), 400);
    expectStatus(await admin('GET', `/admin/accounts/${id}/keys`), 200);
    expectStatus(await admin('GET', '/admin/accounts/acct_nobody/keys'), 404);
    // A customer key is refused on every admin route.
    expectStatus(await call('GET', '/admin/accounts', { key: key.body.key }), 403, 'insufficient_permissions');

    expectStatus(await admin('POST', `/admin/accounts/${id}/suspend`, { body: { reason: 'terms_violation' } }), 200);
    expectStatus(await admin('POST', `/admin/accounts/${id}/suspend`, { body: { reason: 'because' } }), 400);
    // Suspended: inference is refused before anything is reserved.
    expectStatus(
      await call('POST', '/v1/chat/completions', { key: key.body.key, body: { model: CHAT, messages: [{ role: 'user', content: 'hi' }] } }),
      403,
      'account_suspended',
    );
    expectStatus(await admin('POST', `/admin/accounts/${id}/reinstate`), 200);
    expectStatus(await admin('POST', `/admin/accounts/${id}/reinstate`), 409);

    expectStatus(await admin('PATCH', `/admin/keys/${key.body.key_id}/limits`, { body: { spend_limit: { period: 'month', amount_usd: '100.00' } } }), 200);
    expectStatus(await admin('PATCH', `/admin/keys/${key.body.key_id}/limits`, { body: { expires_at: '2001-01-01T00:00:00Z' } }), 400);
    expectStatus(await admin('PATCH', '/admin/keys/key_nobody/limits', { body: { expires_at: null } }), 404);
    expectStatus(await admin('DELETE', `/admin/keys/${key.body.key_id}`, { body: { reason: 'rotated' } }), 200);
    expectStatus(await admin('DELETE', '/admin/keys/admin'), 409, 'admin_key_not_revocable');
    expectStatus(await admin('DELETE', '/admin/keys/key_nobody'), 404);
    // A revoked key is refused everywhere.
    expectStatus(await call('GET', '/v1/account', { key: key.body.key }), 401, 'invalid_api_key');

    expectStatus(await admin('GET', `/admin/accounts/${id}/statement?from=2020-01-01`), 200);
    const csv = await admin('GET', `/admin/accounts/${id}/statement`, { accept: 'text/csv' });
    expect(csv.status).toBe(200);
    expect(csv.contentType).toBe('text/csv');
    expectStatus(await admin('GET', '/admin/accounts/acct_nobody/statement'), 404);
    expectStatus(await admin('GET', `/admin/accounts/${id}/statement?from=yesterday`), 400);
    expectStatus(await admin('GET', `/admin/accounts/${id}/balance?as_of=${encodeURIComponent(new Date().toISOString())}`), 200);
    expectStatus(await admin('GET', `/admin/accounts/${id}/balance?as_of=soon`), 400);
    expectStatus(await admin('GET', '/admin/accounts/acct_nobody/balance'), 404);
    expectStatus(await admin('GET', '/admin/audit?action=account.suspended'), 200);
    expectStatus(await admin('GET', '/admin/audit?limit=0'), 400);
    expectStatus(await admin('GET', '/admin/retention'), 200);
  });
});

describe('OpenAI-compatible', () => {
  test('chat, completions, embeddings and models, with their errors', async () => {
    const { key } = await customer('Ada', '10');
    const ask = { model: CHAT, messages: [{ role: 'user', content: 'hello upstream' }], max_tokens: 20 };
    expectStatus(await call('POST', '/v1/chat/completions', { key, body: ask }), 200);
    const streamed = await call('POST', '/v1/chat/completions', { key, body: { ...ask, stream: true, stream_options: { include_usage: true } } });
    expect(streamed.status).toBe(200);
    expect(streamed.contentType).toBe('text/event-stream');
    expect(streamed.text).toContain('data: [DONE]');
    expectStatus(await call('POST', '/v1/completions', { key, body: { model: CHAT, prompt: 'once upon', max_tokens: 10 } }), 200);
    expectStatus(await call('POST', '/v1/embeddings', { key, body: { model: EMBED, input: 'embed this' } }), 200);
    expectStatus(await call('GET', '/v1/models', { key }), 200);
    expectStatus(await call('GET', `/v1/models/${CHAT}`, { key }), 200);
    expectStatus(await call('GET', '/v1/models/no-such-model', { key }), 404, 'model_not_found');

    expectStatus(
      await call('POST', '/v1/chat/completions', { key, body: { model: CHAT, messages: [{ role: 'wizard', content: 'x' }] } }),
      400,
      'invalid_value',
    );
    expectStatus(await call('POST', '/v1/chat/completions', { key, raw: '{"model": ' }), 400, 'invalid_json');
    expectStatus(await call('POST', '/v1/chat/completions', { body: ask }), 401, 'invalid_api_key');
    expectStatus(await call('POST', '/v1/chat/completions', { key, body: { ...ask, model: 'no-such-model' } }), 404, 'model_not_found');
    expectStatus(await call('POST', '/v1/chat/completions', { key, body: { ...ask, model: DOWN, max_tokens: 5 } }), 503, 'upstream_unavailable');
    expectStatus(await call('POST', '/v1/completions', { key, body: { model: CHAT } }), 400, 'missing_required_parameter');
    expectStatus(await call('POST', '/v1/embeddings', { key, body: { model: EMBED, input: '' } }), 400);
    expectStatus(await call('GET', '/v1/models'), 401);

    // Out of credit: 429 insufficient_quota with x-should-retry: false, not 402.
    const poor = await customer('Poor');
    const refused = await call('POST', '/v1/chat/completions', { key: poor.key, body: ask });
    expectStatus(refused, 429, 'insufficient_quota');
    expect(refused.headers.get('x-should-retry')).toBe('false');

    // An account_read-only key lacks the inference scope.
    const readOnly = await call('POST', '/v1/account/keys', { key, body: { name: 'reader', scopes: ['account_read'] } });
    expectStatus(readOnly, 201);
    expectStatus(await call('POST', '/v1/embeddings', { key: readOnly.body.key, body: { model: EMBED, input: 'x' } }), 403, 'insufficient_permissions');
  });
});

describe('audio', () => {
  test('transcriptions, translations and speech, with their errors', async () => {
    const { key } = await customer('Audrey', '10');
    const wav = espeakWav('documented audio');
    const form = (fields: Record<string, string>, file: Buffer | null = wav) => {
      const data = new FormData();
      for (const [name, value] of Object.entries(fields)) data.append(name, value);
      if (file) data.append('file', new Blob([file], { type: 'audio/wav' }), 'clip.wav');
      return data;
    };
    const post = (path: string, body: FormData, withKey = true) =>
      check.fetch(`${tg.url}${path}`, { method: 'POST', headers: withKey ? { authorization: `Bearer ${key}` } : {}, body });

    expectStatus(await post('/v1/audio/transcriptions', form({ model: WHISPER })), 200);
    const text = await post('/v1/audio/transcriptions', form({ model: WHISPER, response_format: 'srt' }));
    expect({ status: text.status, type: text.contentType }).toEqual({ status: 200, type: 'text/plain' });
    const streamed = await post('/v1/audio/transcriptions', form({ model: WHISPER, stream: 'true' }));
    expect({ status: streamed.status, type: streamed.contentType }).toEqual({ status: 200, type: 'text/event-stream' });
    expectStatus(await post('/v1/audio/translations', form({ model: WHISPER, response_format: 'verbose_json' })), 200);
    const audio = await call('POST', '/v1/audio/speech', { key, body: { model: TTS, voice: 'alloy', input: 'documented speech' } });
    expect({ status: audio.status, type: audio.contentType }).toEqual({ status: 200, type: 'audio/wav' });

    expectStatus(await post('/v1/audio/transcriptions', form({ model: WHISPER }, Buffer.alloc(100_001))), 413, 'request_too_large');
    expectStatus(await post('/v1/audio/transcriptions', form({ model: WHISPER }, Buffer.from('not audio at all'))), 400, 'invalid_value');
    expectStatus(await post('/v1/audio/transcriptions', form({ model: WHISPER }, null)), 400, 'missing_required_parameter');
    expectStatus(await post('/v1/audio/translations', form({ model: WHISPER, response_format: 'mp3' })), 400, 'invalid_value');
    expectStatus(await post('/v1/audio/transcriptions', form({ model: 'no-such-model' })), 404, 'model_not_found');
    expectStatus(await post('/v1/audio/translations', form({ model: WHISPER }), false), 401, 'invalid_api_key');
    expectStatus(await call('POST', '/v1/audio/speech', { key, body: { model: TTS, voice: 'alloy' } }), 400, 'missing_required_parameter');
    const poor = await customer('Quiet');
    expectStatus(
      await call('POST', '/v1/audio/speech', { key: poor.key, body: { model: TTS, voice: 'alloy', input: 'no credit' } }),
      429,
      'insufficient_quota',
    );
    const prices = await call('GET', '/pricing');
    expect(prices.body.prices).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ model: WHISPER, operation: 'transcription', unit: 'audio_second', usd_per_audio_second: '0.000100' }),
        expect.objectContaining({ model: TTS, operation: 'speech', unit: 'character', usd_per_million_characters: '15.000000' }),
      ]),
    );
  });
});

describe('customer', () => {
  test('account, keys, requests, statement and usage', async () => {
    const { key } = await customer('Barbara', '10');
    expectStatus(
      await call('POST', '/v1/chat/completions', { key, body: { model: CHAT, messages: [{ role: 'user', content: 'count me' }], max_tokens: 5 } }),
      200,
    );
    expectStatus(await call('GET', '/v1/account', { key }), 200);
    expectStatus(await call('GET', '/v1/account'), 401);
    expectStatus(await call('GET', '/v1/account/keys', { key }), 200);
    const made = await call('POST', '/v1/account/keys', { key, body: { name: 'laptop' } });
    expectStatus(made, 201);
    expectStatus(await call('POST', '/v1/account/keys', { key, body: { name: '' } }), 400);
    expectStatus(await call('PATCH', `/v1/account/keys/${made.body.key_id}`, { key, body: { name: 'desktop' } }), 200);
    expectStatus(await call('PATCH', '/v1/account/keys/key_nobody', { key, body: { name: 'x' } }), 404, 'api_key_not_found');
    expectStatus(await call('PATCH', `/v1/account/keys/${made.body.key_id}`, { key, body: { name: 'x', extra: 1 } }), 400);
    const limited = await call('PATCH', `/v1/account/keys/${made.body.key_id}/limits`, {
      key,
      body: { spend_limit: { period: 'day', amount_usd: '0.00' }, expires_at: new Date(Date.now() + 3_600_000).toISOString() },
    });
    expectStatus(limited, 200);
    expectStatus(
      await call('PATCH', `/v1/account/keys/${made.body.key_id}/limits`, { key, body: { spend_limit: { period: 'day', amount_usd: '1.001' } } }),
      400,
    );
    expectStatus(await call('PATCH', '/v1/account/keys/key_nobody/limits', { key, body: { expires_at: null } }), 404, 'api_key_not_found');
    // A zero spend limit refuses every request with 429 key_spend_limit_reached; an allowlist without the model, 403.
    const spent = await call('POST', '/v1/chat/completions', {
      key: made.body.key,
      body: { model: CHAT, messages: [{ role: 'user', content: 'x' }], max_tokens: 5 },
    });
    expectStatus(spent, 429, 'key_spend_limit_reached');
    expect(spent.headers.get('x-should-retry')).toBe('false');
    expectStatus(await call('PATCH', `/v1/account/keys/${made.body.key_id}/limits`, { key, body: { spend_limit: null, allowed_models: [EMBED] } }), 200);
    expectStatus(
      await call('POST', '/v1/chat/completions', { key: made.body.key, body: { model: CHAT, messages: [{ role: 'user', content: 'x' }], max_tokens: 5 } }),
      403,
      'model_not_allowed',
    );
    expectStatus(await call('GET', '/v1/account/keys', { key }), 200);
    expectStatus(await call('DELETE', `/v1/account/keys/${made.body.key_id}`, { key }), 200);
    expectStatus(await call('DELETE', '/v1/account/keys/key_nobody', { key }), 404);
    const requests = await call('GET', '/v1/account/requests?limit=5', { key });
    expectStatus(requests, 200);
    expect(requests.body.data).toHaveLength(1);
    expectStatus(await call('GET', '/v1/account/requests?limit=0', { key }), 400);
    expectStatus(await call('GET', '/v1/account/transactions', { key }), 200);
    expect((await call('GET', '/v1/account/transactions', { key, accept: 'text/csv' })).contentType).toBe('text/csv');
    expectStatus(await call('GET', '/v1/account/transactions?to=never', { key }), 400);
    const usage = await call('GET', '/v1/usage?from=2020-01-01', { key });
    expectStatus(usage, 200);
    expect(usage.body.data.length).toBeGreaterThan(0);
    expectStatus(await call('GET', '/v1/usage?from=then', { key }), 400);
  });

  test('billing automation: auto top-up, alerts, notices; card billing off without Stripe', async () => {
    const { key } = await customer('Claude', '10');
    expectStatus(await call('GET', '/v1/billing/auto-top-up', { key }), 200);
    expectStatus(await call('PUT', '/v1/billing/auto-top-up', { key, body: { threshold_usd: '5', amount_usd: '20.00' } }), 200);
    expectStatus(await call('PUT', '/v1/billing/auto-top-up', { key, body: { threshold_usd: '5', amount_usd: '20.001' } }), 400);
    expectStatus(await call('DELETE', '/v1/billing/auto-top-up', { key }), 200);
    expectStatus(await call('GET', '/v1/billing/alerts', { key }), 404, 'alerts_not_configured');
    expectStatus(
      await call('PUT', '/v1/billing/alerts', {
        key,
        body: { url: 'https://hooks.example.org/tollgate', thresholds: [{ usd: '2' }, { percent_of_last_top_up: 10 }] },
      }),
      200,
    );
    expectStatus(await call('PUT', '/v1/billing/alerts', { key, body: { url: 'http://hooks.example.org/x', thresholds: [{ usd: '2' }] } }), 400);
    expectStatus(await call('GET', '/v1/billing/alerts', { key }), 200);
    expectStatus(await call('GET', '/v1/billing/alerts/notices', { key }), 200);
    expectStatus(await call('GET', '/v1/billing/alerts/notices?limit=1000', { key }), 400);
    expectStatus(await call('DELETE', '/v1/billing/alerts', { key }), 200);
    expectStatus(await call('DELETE', '/v1/billing/alerts'), 401);
    expectStatus(await call('POST', '/v1/billing/top-ups', { key, body: { amount_usd: '25.00' } }), 503, 'payments_not_configured');
    expectStatus(await call('POST', '/v1/billing/refunds', { key, body: {} }), 503, 'payments_not_configured');
    expectStatus(await call('POST', '/webhooks/stripe', { raw: '{}', headers: { 'stripe-signature': 't=1,v1=00' } }), 503, 'payments_not_configured');
    // Only manual credit, which cannot go back to a card: the account closes at once.
    const leaving = await customer('Leaving');
    expectStatus(await call('POST', '/v1/account/close', { key: leaving.key }), 200);
    // Closing revoked the key that closed it.
    expectStatus(await call('POST', '/v1/account/close', { key: leaving.key }), 401, 'invalid_api_key');
  });
});

describe('notices and status', () => {
  test('notices, preferences, incidents and the status page', async () => {
    const { key } = await customer('Noticed');
    expectStatus(await call('GET', '/status.json'), 200);
    expectStatus(await call('GET', '/status'), 200);
    expectStatus(await admin('GET', '/admin/status'), 200);
    const incident = await admin('POST', '/admin/notices', { body: { kind: 'incident', subject: 'Errors', body: 'Looking.' } });
    expectStatus(incident, 201);
    expectStatus(
      await admin('POST', '/admin/notices', { body: { kind: 'maintenance', subject: 'Soon', body: 'x', effective_at: inOneHour() } }),
      409,
      'notice_too_short',
    );
    expectStatus(await admin('POST', '/admin/notices', { body: { kind: 'party', subject: 'x', body: 'x' } }), 400, 'invalid_value');
    expectStatus(await admin('POST', `/admin/incidents/${incident.body.id}/updates`, { body: { body: 'Fixed.', resolved: true } }), 201);
    expectStatus(await admin('POST', '/admin/incidents/nope/updates', { body: { body: 'x' } }), 404, 'incident_not_found');
    expectStatus(await admin('GET', '/admin/notices'), 200);
    for (let i = 0; ; i++) {
      const listed = await call('GET', '/v1/account/notices', { key });
      expectStatus(listed, 200);
      if (listed.body.data.some((n: { id: string }) => n.id === incident.body.id)) break;
      if (i > 400) throw new Error('the incident never reached the account');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expectStatus(await call('GET', '/v1/account/notices?limit=0', { key }), 400);
    expectStatus(await call('POST', `/v1/account/notices/${incident.body.id}/read`, { key }), 200);
    expectStatus(await call('POST', '/v1/account/notices/nope/read', { key }), 404, 'notice_not_found');
    expectStatus(await call('GET', '/v1/account/notice-preferences', { key }), 200);
    expectStatus(await call('PUT', '/v1/account/notice-preferences', { key, body: { kinds: { incident: false } } }), 200);
    expectStatus(await call('PUT', '/v1/account/notice-preferences', { key, body: { kinds: { terms_change: false } } }), 409, 'notice_kind_essential');
  });
});

describe('billing with Stripe', () => {
  test('checkout, webhook, refunds and closure', async () => {
    const alice = await pay.openCustomer('Alice');
    const started = await callPay('POST', '/v1/billing/top-ups', { key: alice.key, body: { amount_usd: '50.00' } });
    expectStatus(started, 201);
    expectStatus(await callPay('POST', '/v1/billing/top-ups', { key: alice.key, body: { amount_usd: '5.00' } }), 409);
    expectStatus(await callPay('POST', '/v1/billing/top-ups', { key: alice.key, body: { amount_usd: '50.001' } }), 400);

    const { paymentIntent } = pay.stripeServer.payCheckoutSession(started.body.checkout_session_id) as {
      paymentIntent: Record<string, unknown> & { id: string };
    };
    const payload = JSON.stringify(pay.stripeServer.event('payment_intent.succeeded', paymentIntent));
    const signature = pay.signer.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET });
    const credited = await callPay('POST', '/webhooks/stripe', { raw: payload, headers: { 'stripe-signature': signature } });
    expectStatus(credited, 200);
    expect(credited.body).toMatchObject({ received: true, duplicate: false, outcome: 'credited' });
    expect((await callPay('POST', '/webhooks/stripe', { raw: payload, headers: { 'stripe-signature': signature } })).body.duplicate).toBe(true);
    expectStatus(await callPay('POST', '/webhooks/stripe', { raw: payload, headers: { 'stripe-signature': 't=1,v1=forged' } }), 400);

    // Invoices and the VAT id.
    const invoices = await callPay('GET', '/v1/billing/invoices', { key: alice.key });
    expectStatus(invoices, 200);
    const invoice = invoices.body.data[0];
    expect(invoice).toMatchObject({ object: 'billing.invoice', subtotal_usd: '50.000000' });
    const download = await check.fetch(`${pay.tg.url}${invoice.download_url}`, {
      method: 'GET',
      headers: { authorization: `Bearer ${alice.key}` },
      redirect: 'manual',
    });
    expect(download.status).toBe(302);
    expectStatus(await callPay('GET', '/v1/billing/invoices/in_nobody/pdf', { key: alice.key }), 404, 'invoice_not_found');
    expectStatus(await callPay('PUT', '/v1/billing/tax-id', { key: alice.key, body: { vat_id: 'DE 123.456.789' } }), 200);
    expectStatus(await callPay('PUT', '/v1/billing/tax-id', { key: alice.key, body: { vat_id: '123456789' } }), 400);
    expect((await callPay('GET', '/v1/billing/tax-id', { key: alice.key })).body).toMatchObject({ vat_id: 'DE123456789', reverse_charge: true });

    expectStatus(await callPay('POST', '/v1/billing/refunds', { key: alice.key, body: { amount_usd: '10.00' } }), 200);
    expectStatus(await callPay('POST', '/v1/billing/refunds', { key: alice.key, body: { amount_usd: '1000.00' } }), 409, 'exceeds_refundable_credit');
    expectStatus(
      await callPay('POST', `/admin/accounts/${alice.accountId}/refunds`, { key: pay.tg.adminKey, body: { amount_usd: '5.00', reason: 'goodwill' } }),
      200,
    );
    expectStatus(await callPay('POST', `/admin/accounts/${alice.accountId}/refunds`, { key: pay.tg.adminKey, body: { reason: '' } }), 400);
    expectStatus(await callPay('POST', '/admin/accounts/acct_nobody/refunds', { key: pay.tg.adminKey, body: { reason: 'x' } }), 404);
    const closed = await callPay('POST', '/v1/account/close', { key: alice.key });
    expectStatus(closed, 200);
    expect(closed.body.status).toBe('closed');

    const bob = await pay.openCustomer('Bob');
    expectStatus(await callPay('POST', `/admin/accounts/${bob.accountId}/terminate`, { key: pay.tg.adminKey, body: {} }), 400);
    expectStatus(
      await callPay('POST', `/admin/accounts/${bob.accountId}/terminate`, { key: pay.tg.adminKey, body: { reason: 'breach', for_abuse: true } }),
      200,
    );
    expectStatus(
      await callPay('POST', `/admin/accounts/${bob.accountId}/terminate`, { key: pay.tg.adminKey, body: { reason: 'breach' } }),
      409,
      'account_closed',
    );

    // Claims after closure: credit bought by bank transfer stays on the closed account until claimed.
    const carol = await pay.openCustomer('Carol');
    expectStatus(
      await callPay('POST', `/admin/accounts/${carol.accountId}/top-ups`, {
        key: pay.tg.adminKey,
        body: { amount_usd: '12', reference: 'TR-carol', reason: 'bank' },
      }),
      201,
    );
    expectStatus(
      await callPay('POST', `/admin/accounts/${carol.accountId}/refund-claims`, { key: pay.tg.adminKey, body: { reason: 'x' } }),
      409,
      'account_not_closed',
    );
    expectStatus(await callPay('POST', '/v1/account/close', { key: carol.key }), 200);
    // No sign-in for a closed account's customer exists yet: nobody is authorised on the customer route.
    expectStatus(await callPay('POST', '/v1/account/refund-claims', { body: {} }), 403, 'refund_claim_not_authorised');
    const claimed = await callPay('POST', `/admin/accounts/${carol.accountId}/refund-claims`, { key: pay.tg.adminKey, body: { reason: 'asked by email' } });
    expectStatus(claimed, 201);
    expect(claimed.body).toMatchObject({ claimed_usd: '12.000000', refund: null, outstanding_usd: '12.000000' });
    expectStatus(
      await callPay('POST', `/admin/accounts/${carol.accountId}/refund-claims`, { key: pay.tg.adminKey, body: { reason: 'again' } }),
      409,
      'nothing_to_claim',
    );
    expectStatus(
      await callPay('POST', `/admin/accounts/${carol.accountId}/forfeit-unclaimed`, { key: pay.tg.adminKey, body: { reason: 'tidy up' } }),
      409,
      'claim_period_not_over',
    );
    expectStatus(await callPay('POST', `/admin/accounts/${carol.accountId}/forfeit-unclaimed`, { key: pay.tg.adminKey, body: {} }), 400);
  });
});

describe('users and sessions', () => {
  test('sign-up, verification, sign-in, profile, sessions, two-factor and resets answer as documented', async () => {
    const dashboard = { 'x-tollgate-dashboard': '1' };
    let cookie = '';
    const as = (method: string, path: string, options: CallOptions = {}) =>
      call(method, path, { ...options, headers: { ...dashboard, ...(cookie && { cookie }), ...options.headers } });
    const password = 'openapi checks every answer';
    expectStatus(await call('POST', '/dashboard/api/sign-up', { body: {} }), 403, 'dashboard_header_required');
    expectStatus(
      await as('POST', '/dashboard/api/sign-up', { body: { email: 'oa@example.org', name: 'OA', password: 'short', organisation: 'OA Ltd' } }),
      400,
      'weak_password',
    );
    expectStatus(await as('POST', '/dashboard/api/sign-up', { body: { email: 'oa@example.org', name: 'OA', password, organisation: 'OA Ltd' } }), 202);
    expectStatus(await as('POST', '/dashboard/api/verify-email', { body: { token: 'x'.repeat(43) } }), 400, 'invalid_token');
    expectStatus(await as('POST', '/dashboard/api/sign-in', { body: { email: 'oa@example.org', password: 'not the right one' } }), 401, 'invalid_credentials');
    expectStatus(await as('POST', '/dashboard/api/sign-in/two-factor', { body: { code: '123456' } }), 409, 'two_factor_not_pending');
    expectStatus(await as('GET', '/dashboard/api/me'), 401, 'not_signed_in');
    const signedIn = await as('POST', '/dashboard/api/sign-in', { body: { email: 'oa@example.org', password } });
    expectStatus(signedIn, 200);
    cookie = signedIn.headers.get('set-cookie')!.split(';')[0]!;
    expectStatus(await as('GET', '/dashboard/api/me'), 200);
    expectStatus(await as('PATCH', '/dashboard/api/me', { body: { name: 'O. A.' } }), 200);
    expectStatus(await as('PATCH', '/dashboard/api/me', { body: { email: 'nope' } }), 400, 'invalid_email');
    expectStatus(
      await as('POST', '/dashboard/api/me/password', { body: { current_password: 'wrong wrong wrong', new_password: 'another long passphrase here' } }),
      401,
      'invalid_credentials',
    );
    expectStatus(await as('POST', '/dashboard/api/me/resend-verification'), 202);
    expectStatus(await as('GET', '/dashboard/api/me/sessions'), 200);
    expectStatus(await as('GET', '/dashboard/api/me/export'), 200);
    expectStatus(await as('DELETE', '/dashboard/api/me', { body: { password } }), 409, 'last_owner');
    expectStatus(await as('DELETE', '/dashboard/api/me/sessions/ses_nobody'), 404, 'session_not_found');
    expectStatus(await as('POST', '/dashboard/api/me/account', { body: { account_id: 'acct_nobody' } }), 403, 'not_a_member');
    expectStatus(await as('DELETE', '/dashboard/api/me/two-factor', { body: { password, code: '123456' } }), 409, 'two_factor_not_enabled');
    expectStatus(await as('POST', '/dashboard/api/me/two-factor'), 200);
    expectStatus(await as('POST', '/dashboard/api/me/two-factor/confirm', { body: { code: 'abc' } }), 400, 'invalid_code');
    expectStatus(await as('POST', '/dashboard/api/forgot-password', { body: { email: 'oa@example.org' } }), 202);
    expectStatus(await as('POST', '/dashboard/api/reset-password', { body: { token: 'y'.repeat(43), password } }), 400, 'invalid_token');
    // Members of the account (issue 14): the only owner cannot step down.
    const me = signedIn.body.user_id as string;
    expectStatus(await as('GET', '/dashboard/api/members'), 200);
    const invited = await as('POST', '/dashboard/api/members/invitations', { body: { email: 'invitee@example.org', role: 'developer' } });
    expectStatus(invited, 201);
    expectStatus(await as('POST', '/dashboard/api/members/invitations', { body: { email: 'oa@example.org', role: 'viewer' } }), 409, 'already_a_member');
    expectStatus(await as('DELETE', `/dashboard/api/members/invitations/${invited.body.id}`), 200);
    expectStatus(await as('DELETE', `/dashboard/api/members/invitations/${invited.body.id}`), 404, 'invitation_not_found');
    expectStatus(await as('PATCH', `/dashboard/api/members/${me}`, { body: { role: 'viewer' } }), 409, 'last_owner');
    expectStatus(await as('DELETE', `/dashboard/api/members/${me}`), 409, 'last_owner');
    expectStatus(await as('DELETE', '/dashboard/api/members/usr_nobody'), 404, 'member_not_found');
    expectStatus(await as('POST', '/dashboard/api/invitations/accept', { body: { token: 'z'.repeat(43) } }), 400, 'invalid_token');
    expect((await as('GET', '/dashboard/api/session')).body).toMatchObject({ signed_in: true, kind: 'user' });
    expectStatus(await as('DELETE', '/dashboard/api/session'), 200);
    expect((await as('GET', '/dashboard/api/session')).body).toEqual({ object: 'dashboard.session', signed_in: false });
    // The operators' way in: an API key exchanged for a (process-memory) session.
    cookie = '';
    expectStatus(await as('POST', '/dashboard/api/session', { key: 'tg_nobody' }), 401, 'invalid_api_key');
    const keyed = await as('POST', '/dashboard/api/session', { key: tg.adminKey });
    expectStatus(keyed, 201);
    cookie = keyed.headers.get('set-cookie')!.split(';')[0]!;
    expect((await as('GET', '/dashboard/api/session')).body).toMatchObject({ signed_in: true, role: 'admin' });
    expectStatus(await call('GET', '/dashboard/api/session'), 403, 'dashboard_header_required');
  });
});

describe('admin users and operator roles', () => {
  test('admin users, the finance and compliance reads, and the 403 of a role that does not reach a route answer as documented', async () => {
    const password = 'openapi operator passphrase';
    const dashboard = { 'x-tollgate-dashboard': '1' };
    const signIn = async (email: string) => {
      const signed = await call('POST', '/dashboard/api/sign-in', { body: { email, password }, headers: dashboard });
      expectStatus(signed, 200);
      const cookie = signed.headers.get('set-cookie')!.split(';')[0]!;
      return (method: string, path: string, options: CallOptions = {}) =>
        call(method, path, { ...options, headers: { ...dashboard, cookie, ...options.headers } });
    };
    expectStatus(await admin('POST', '/admin/admin-users', { body: { email: 'oa-op@ops.example.org', role: 'operator' } }), 400, 'missing_required_parameter');
    const op = await admin('POST', '/admin/admin-users', { body: { email: 'oa-op@ops.example.org', role: 'operator', password } });
    expectStatus(op, 201);
    expectStatus(await admin('POST', '/admin/admin-users', { body: { email: 'oa-op@ops.example.org', role: 'operator' } }), 200);
    const fin = await admin('POST', '/admin/admin-users', { body: { email: 'oa-fin@ops.example.org', role: 'finance', password } });
    expectStatus(fin, 201);
    const operator = await signIn('oa-op@ops.example.org');
    const finance = await signIn('oa-fin@ops.example.org');
    expectStatus(await operator('GET', '/admin/admin-users'), 200);
    expectStatus(await finance('GET', '/admin/admin-users'), 403, 'insufficient_role');
    expectStatus(await finance('POST', '/admin/models', { body: { id: 'nope', operations: ['chat'], max_output_tokens: 5 } }), 403, 'insufficient_role');
    expectStatus(await finance('GET', '/admin/finance/journal'), 200);
    expectStatus(await finance('GET', '/admin/finance/journal', { accept: 'text/csv' }), 200);
    expectStatus(await finance('GET', '/admin/finance/journal?from=yesterday'), 400, 'invalid_value');
    expectStatus(await finance('GET', '/admin/finance/verification'), 200);
    expectStatus(await finance('GET', '/admin/compliance/exports/acct_nobody'), 403, 'insufficient_role');
    expectStatus(await admin('GET', '/admin/compliance/exports/acct_nobody'), 404, 'account_not_found');
    const { accountId } = await customer('OaExport');
    expectStatus(await admin('GET', `/admin/compliance/exports/${accountId}?purpose=openapi`), 200);
    expectStatus(await operator('PATCH', `/admin/admin-users/${fin.body.user_id}`, { body: { role: 'compliance' } }), 200);
    expectStatus(await operator('PATCH', `/admin/admin-users/${op.body.user_id}`, { body: { role: 'finance' } }), 409, 'last_operator');
    expectStatus(await operator('PATCH', '/admin/admin-users/usr_nobody', { body: { role: 'finance' } }), 404, 'admin_not_found');
    expectStatus(await operator('DELETE', `/admin/admin-users/${op.body.user_id}`), 409, 'last_operator');
    expectStatus(await operator('DELETE', `/admin/admin-users/${fin.body.user_id}`), 200);
    expectStatus(await operator('DELETE', `/admin/admin-users/${fin.body.user_id}`), 404, 'admin_not_found');
  });
});

describe('coverage', () => {
  test('every documented operation was exercised, and every group showed a success and an error', () => {
    const hit = new Set(check.seen.map((s) => `${s.method} ${s.template}`));
    const missed = check
      .operations()
      .filter((o) => !hit.has(`${o.method} ${o.template}`))
      .map((o) => `${o.method} ${o.template}`);
    expect(missed).toEqual([]);
    const groups = [...new Set(check.operations().flatMap((o) => o.tags))];
    for (const group of groups) {
      const statuses = check.seen.filter((s) => s.tags.includes(group)).map((s) => s.status);
      expect({ group, success: statuses.some((s) => s < 300), error: statuses.some((s) => s >= 400) }).toEqual({ group, success: true, error: true });
    }
  });
});
