import express from 'express';
import { register as globalRegistry } from 'prom-client';
import { errorHandler, notFound } from '../../../adapters/http/openai/error-handler';
import { createGatewayMetrics, metricsHandler } from '../../../adapters/http/observability/metrics';
import { annotateRequest, holdRequestLog, observeRequests } from '../../../adapters/http/observability/request-log';
import { requestId } from '../../../adapters/http/observability/request-id';
import { capturedLogger, eventually, serve, type Running } from './serve';

const MARKER = 'MARKER-9d1b77-prompt-text';
const FULL_KEY = 'tg_live_abcdefghijklmnopqrstuvwxyz0123456789';
const PINO_FIELDS = ['level', 'time', 'pid', 'hostname', 'msg'];
const ALLOWED = ['requestId', 'accountId', 'keyPrefix', 'model', 'route', 'status', 'inputTokens', 'outputTokens', 'latencyMs'];

const { logger, lines, raw } = capturedLogger();
const metrics = createGatewayMetrics();
let server: Running;
let streamFinished: Promise<void>;

function app() {
  const a = express();
  a.use(requestId());
  a.use(observeRequests({ logger, metrics }));
  a.use(express.json());
  a.get('/metrics', metricsHandler(metrics.registry));
  const v1 = express.Router();
  v1.post('/chat/completions', (req, res) => {
    annotateRequest(res, { accountId: 'acct_1', keyPrefix: FULL_KEY, model: 'llama', inputTokens: 12 });
    annotateRequest(res, { outputTokens: 5 });
    res.json({ ok: true, echoed: typeof req.body });
  });
  v1.post('/stream', (_req, res) => {
    annotateRequest(res, { accountId: 'acct_1', model: 'llama', inputTokens: 3 });
    const release = holdRequestLog(res);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"n":1}\n\n');
    streamFinished = new Promise((done) => {
      res.on('close', () => {
        // Tokens become known only after the upstream is cancelled: a moment after the client left.
        setTimeout(() => {
          annotateRequest(res, { outputTokens: 7 });
          release();
          done();
        }, 50);
      });
    });
  });
  v1.post('/broken-stream', async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"n":1}\n\n');
    await new Promise((r) => setTimeout(r, 10));
    throw new Error(`upstream parse failed near ${MARKER}`);
  });
  a.use('/v1', v1);
  a.use(notFound());
  a.use(errorHandler(logger));
  return a;
}

beforeAll(async () => {
  server = await serve(app());
});
afterAll(async () => {
  await server.close();
});

const post = (path: string, headers: Record<string, string> = {}) =>
  fetch(`${server.baseUrl}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${FULL_KEY}`, ...headers },
    body: JSON.stringify({ model: 'llama', messages: [{ role: 'user', content: MARKER }] }),
  });

const lineFor = (id: string) => lines.filter((line) => line['requestId'] === id);

describe('request ids', () => {
  it('adopts a sane x-request-id and echoes it', async () => {
    const response = await post('/v1/chat/completions', { 'x-request-id': 'trace-1234.abcd:5' });
    expect(response.headers.get('x-request-id')).toBe('trace-1234.abcd:5');
  });

  it.each([
    ['spaces', 'has some spaces'],
    ['quotes', 'abc"def"ghi'],
    ['too short', 'abc'],
    ['too long', 'a'.repeat(129)],
  ])('replaces one with %s by a fresh id', async (_name, offered) => {
    const response = await post('/v1/chat/completions', { 'x-request-id': offered });
    expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
  });
});

describe('the request log', () => {
  it('writes exactly one line per request, with only metadata', async () => {
    const response = await post('/v1/chat/completions');
    const id = response.headers.get('x-request-id')!;
    await eventually(() => lineFor(id).length > 0);
    await new Promise((r) => setTimeout(r, 30)); // room for a wrongly written second line
    const found = lineFor(id);
    expect(found).toHaveLength(1);
    const line = found[0]!;
    expect(line).toMatchObject({
      msg: 'request',
      requestId: id,
      accountId: 'acct_1',
      keyPrefix: FULL_KEY.slice(0, 12),
      model: 'llama',
      route: '/v1/chat/completions',
      status: 200,
      inputTokens: 12,
      outputTokens: 5,
    });
    expect(typeof line['latencyMs']).toBe('number');
    const extra = Object.keys(line).filter((k) => !PINO_FIELDS.includes(k) && !ALLOWED.includes(k));
    expect(extra).toEqual([]);
    expect(raw.join('\n')).not.toContain(MARKER);
    expect(raw.join('\n')).not.toContain(FULL_KEY);
  });

  it('logs an unknown path as route "unmatched" with status 404', async () => {
    const response = await post('/v1/nothing-here');
    expect(response.status).toBe(404);
    const id = response.headers.get('x-request-id')!;
    await eventually(() => lineFor(id).length > 0);
    expect(lineFor(id)[0]).toMatchObject({ route: 'unmatched', status: 404 });
  });

  it('a client that leaves mid-stream is logged once, as 499, after the route releases its hold with the final tokens', async () => {
    const response = await post('/v1/stream');
    const id = response.headers.get('x-request-id')!;
    const reader = response.body!.getReader();
    await reader.read();
    await reader.cancel(); // the client leaves after the first chunk
    await streamFinished;
    await eventually(() => lineFor(id).length > 0);
    expect(lineFor(id)).toHaveLength(1);
    expect(lineFor(id)[0]).toMatchObject({ status: 499, route: '/v1/stream', inputTokens: 3, outputTokens: 7 });
  });
});

describe('an error after the response started', () => {
  it('cuts the connection, logs the error without its message, and logs the request as not completed', async () => {
    const response = await post('/v1/broken-stream');
    const id = response.headers.get('x-request-id')!;
    await expect(response.text()).rejects.toThrow();
    await eventually(() => lineFor(id).length >= 2);
    expect(
      lineFor(id)
        .map((line) => line['msg'])
        .sort(),
    ).toEqual(['request', 'unhandled error']);
    expect(lineFor(id).find((line) => line['msg'] === 'request')).toMatchObject({ status: 499 });
    expect(raw.join('\n')).not.toContain(MARKER);
  });
});

describe('GET /metrics', () => {
  it('serves Prometheus text with requests and tokens by label, from its own registry', async () => {
    const before = await post('/v1/chat/completions');
    await eventually(() => lineFor(before.headers.get('x-request-id')!).length > 0);
    metrics.reservationsOpen.set(2);
    metrics.observeUpstreamLatency('llama', 250);
    metrics.observeEventStoreAppend(3);

    const response = await fetch(`${server.baseUrl}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    const text = await response.text();
    expect(text).toMatch(/^tollgate_http_requests_total\{route="\/v1\/chat\/completions",status="200",model="llama"\} [1-9]\d*$/m);
    expect(text).toMatch(/^tollgate_tokens_total\{model="llama",direction="input"\} [1-9]\d*$/m);
    expect(text).toMatch(/^tollgate_tokens_total\{model="llama",direction="output"\} [1-9]\d*$/m);
    expect(text).toMatch(/^tollgate_reservations_open 2$/m);
    expect(text).toMatch(/^tollgate_upstream_latency_seconds_bucket\{le="0.25",model="llama"\} 1$/m);
    expect(text).toMatch(/^tollgate_eventstore_append_seconds_count 1$/m);
    expect(await globalRegistry.metrics()).not.toContain('tollgate_');
  });
});
