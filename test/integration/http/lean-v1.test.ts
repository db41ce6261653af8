import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { createApp, type AppDeps } from '../../../adapters/http/app';
import { RateLimiter } from '../../../adapters/http/admission/rate-limiter';
import { AuthFailureLimiter } from '../../../adapters/http/admission/auth-failures';
import { leanV1 } from '../../../adapters/http/lean-v1';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../../support/mock-llm';
import { addModel, issueKey, openAccount } from '../../support/e2e-setup';
import { capturedLogger, eventually } from './serve';

/**
 * The lean /v1 path (adapters/http/lean-v1.ts) answers exactly as the express stack does. One
 * server here runs the lean handler in front of the express app, over a real gateway's ledger,
 * keys and upstream; every case is sent twice: to the route itself (the lean path) and to the
 * same route with a trailing slash, which express's router matches and the lean path declines.
 * Status, error body, the headers a client reads and the request's log line must agree, and a
 * spy on the fallback shows which path served each request.
 */

const MODEL = 'llama';
const BODY_LIMIT = 2_048;
let upstream: MockLlm;
let tg: TestGateway;
let server: Server;
let baseUrl: string;
let key: string;
let readOnlyKey: string;
const fellBack: string[] = [];
const { logger, lines } = capturedLogger();

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  tg = await startTestGateway({
    models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat', 'completion', 'embedding'] }],
    env: { LOG_LEVEL: 'warn' },
  });
  const g = tg.gateway;
  await addModel(g.ledger, MODEL, { chat: { input: '1', output: '2' }, completion: { input: '1', output: '2' }, embedding: { input: '1', output: '0' } }, 256);
  const accountId = await openAccount(g.ledger, { topUpUsd: '10' });
  key = (await issueKey(g.keys, accountId)).secret;
  readOnlyKey = (await issueKey(g.keys, accountId, ['account_read'])).secret;
  const deps: AppDeps = {
    ledger: g.ledger,
    keys: g.keys,
    inference: g.inference,
    historicalCosts: g.historicalCosts,
    limiter: new RateLimiter({}),
    limits: { requestsPerMinute: 1_000, tokensPerMinute: null },
    accountLimits: { requestsPerMinute: null, tokensPerMinute: null },
    metrics: g.metrics,
    settlements: g.settlements,
    logger,
    marginBasisPoints: 0n,
    checkDatabase: async () => {},
    startedAt: new Date(),
    bodyLimit: BODY_LIMIT,
    authFailures: new AuthFailureLimiter({ failuresPerMinute: 1_000 }),
  };
  const app = createApp(deps);
  const lean = leanV1({ ...deps, bodyLimit: BODY_LIMIT }, (req: IncomingMessage, res: ServerResponse) => {
    fellBack.push(`${req.method} ${req.url}`);
    app(req, res);
  });
  server = createServer(lean);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await tg?.stop();
  await upstream?.stop();
});

interface Case {
  readonly name: string;
  readonly path?: string;
  readonly headers?: Record<string, string>;
  readonly body: string | Buffer | (() => Readable);
  readonly status: number;
}

const chat = (extra: object = {}) => JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hello' }], max_tokens: 16, ...extra });
const json = { 'content-type': 'application/json' };

const cases: readonly Case[] = [
  { name: 'a chat completion', body: chat(), status: 200 },
  { name: 'a streamed chat completion', body: chat({ stream: true }), status: 200 },
  { name: 'a completion', path: '/v1/completions', body: JSON.stringify({ model: MODEL, prompt: 'hi', max_tokens: 4 }), status: 200 },
  { name: 'an embedding', path: '/v1/embeddings', body: JSON.stringify({ model: MODEL, input: 'hi' }), status: 200 },
  { name: 'charset=utf-8 declared', headers: { 'content-type': 'application/json; charset=UTF-8' }, body: chat(), status: 200 },
  { name: 'a byte order mark before the JSON', body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(chat())]), status: 200 },
  { name: 'a chunked body', body: () => Readable.from([Buffer.from(chat().slice(0, 10)), Buffer.from(chat().slice(10))]), status: 200 },
  { name: 'no key', headers: { authorization: '' }, body: chat(), status: 401 },
  { name: 'a malformed Authorization header', headers: { authorization: 'Basic abc' }, body: chat(), status: 401 },
  { name: 'an unknown key', headers: { authorization: 'Bearer tg_live_nothing_like_a_real_key' }, body: chat(), status: 401 },
  { name: 'a key without the inference scope', headers: { authorization: 'ADMIN' }, body: chat(), status: 403 },
  { name: 'malformed JSON', body: '{"model": ', status: 400 },
  { name: 'JSON that is not an object (strict)', body: '"a string"', status: 400 },
  { name: 'an empty body', body: '', status: 400 },
  { name: 'invalid UTF-8', body: Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]), status: 400 },
  { name: 'nesting too deep', body: `${'['.repeat(100)}${']'.repeat(100)}`, status: 400 },
  { name: 'a declared body over the limit', body: chat({ user: 'x'.repeat(BODY_LIMIT) }), status: 400 },
  { name: 'a chunked body over the limit', body: () => Readable.from([Buffer.from(chat({ user: 'x'.repeat(BODY_LIMIT) }))]), status: 400 },
  { name: 'a missing model', body: JSON.stringify({ messages: [] }), status: 400 },
  { name: 'an unknown model', body: chat({ model: 'no-such-model' }), status: 404 },
  { name: 'max_tokens over the model limit', body: chat({ max_tokens: 100_000 }), status: 400 },
];

interface Seen {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function send(path: string, c: Case, requestId: string): Promise<Seen> {
  const headers: Record<string, string> = { ...json, authorization: `Bearer ${key}`, 'x-request-id': requestId, ...c.headers };
  if (headers['authorization'] === '') delete headers['authorization'];
  if (headers['authorization'] === 'ADMIN') headers['authorization'] = `Bearer ${readOnlyKey}`;
  const body = typeof c.body === 'function' ? c.body() : c.body;
  const answer = await request(`${baseUrl}${path}`, { method: 'POST', headers, body });
  return { status: answer.statusCode, headers: answer.headers, text: await answer.body.text() };
}

/** What must agree between the paths: no ids, no timestamps. */
function comparable(seen: Seen) {
  const h = seen.headers;
  const ratelimit = Object.keys(h)
    .filter((name) => name.startsWith('x-ratelimit-'))
    .sort();
  let body: unknown = seen.text;
  if (String(h['content-type']).startsWith('application/json')) {
    const parsed = JSON.parse(seen.text) as Record<string, unknown>;
    body = 'error' in parsed ? parsed : { object: parsed['object'], choices: parsed['choices'], data: parsed['data'], usage: parsed['usage'] };
  } else {
    body = seen.text.replace(/"id":"[^"]*"/g, '"id":"-"').replace(/"created":\d+/g, '"created":0');
  }
  return {
    status: seen.status,
    contentType: h['content-type'],
    cacheControl: h['cache-control'],
    retryAfter: h['retry-after'],
    shouldRetry: h['x-should-retry'],
    ratelimit,
    poweredBy: h['x-powered-by'],
    etag: h['etag'],
    body,
  };
}

function logLineOf(requestId: string) {
  const line = lines.find((l) => l['requestId'] === requestId && l['msg'] === 'request');
  if (!line) return undefined;
  const { route, status, model, inputTokens, outputTokens, accountId, keyPrefix } = line;
  return { route, status, model, inputTokens, outputTokens, accountId, keyPrefix };
}

let n = 0;
it.each(cases)('$name: the lean path answers as express does', async (c) => {
  const path = c.path ?? '/v1/chat/completions';
  const leanId = `lean-${++n}-${Date.now()}`;
  const expressId = `express-${n}-${Date.now()}`;
  fellBack.length = 0;
  const lean = await send(path, c, leanId);
  expect(fellBack).toEqual([]);
  const viaExpress = await send(`${path}/`, c, expressId);
  expect(fellBack).toEqual([`POST ${path}/`]);

  expect(lean.status).toBe(c.status);
  expect(comparable(lean)).toEqual(comparable(viaExpress));
  expect(lean.headers['x-request-id']).toBe(leanId);
  expect(viaExpress.headers['x-request-id']).toBe(expressId);
  await eventually(() => logLineOf(leanId) !== undefined && logLineOf(expressId) !== undefined);
  expect(logLineOf(leanId)).toEqual(logLineOf(expressId));
});

it('hands express what is not the plain case: other methods, paths, media types, charsets and compressed bodies', async () => {
  fellBack.length = 0;
  const auth = { authorization: `Bearer ${key}` };
  const get = await request(`${baseUrl}/v1/chat/completions`, { method: 'GET', headers: auth });
  expect(get.statusCode).toBe(404);
  await get.body.text();
  const models = await request(`${baseUrl}/v1/models`, { headers: auth });
  expect(models.statusCode).toBe(200);
  await models.body.text();
  const text = await request(`${baseUrl}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: chat() });
  expect(text.statusCode).toBe(400);
  await text.body.text();
  const utf16 = await request(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, 'content-type': 'application/json; charset=utf-16' },
    body: chat(),
  });
  expect(utf16.statusCode).toBe(400);
  await utf16.body.text();
  const gzip = await request(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...auth, ...json, 'content-encoding': 'gzip' },
    body: gzipSync(chat()),
  });
  expect(gzip.statusCode).toBe(200); // express inflates it, as before
  await gzip.body.text();
  expect(fellBack).toEqual([
    'GET /v1/chat/completions',
    'GET /v1/models',
    'POST /v1/chat/completions',
    'POST /v1/chat/completions',
    'POST /v1/chat/completions',
  ]);
});

it('keeps a request with a query string on the lean path', async () => {
  fellBack.length = 0;
  const answer = await request(`${baseUrl}/v1/chat/completions?trace=1`, {
    method: 'POST',
    headers: { ...json, authorization: `Bearer ${key}` },
    body: chat(),
  });
  expect(answer.statusCode).toBe(200);
  await answer.body.text();
  expect(fellBack).toEqual([]);
});
