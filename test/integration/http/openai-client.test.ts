import express from 'express';
import OpenAI from 'openai';
import { RateLimiter } from '../../../adapters/http/admission/rate-limiter';
import { errorHandler, notFound } from '../../../adapters/http/openai/error-handler';
import { insufficientQuota, invalidApiKey, modelNotFound, upstreamUnavailable } from '../../../adapters/http/openai/errors';
import { parseChatCompletionRequest } from '../../../adapters/http/openai/requests';
import { requestId, requestIdOf } from '../../../adapters/http/observability/request-id';
import { capturedLogger, serve, type Running } from './serve';

/**
 * The official `openai` client against our error shapes on a real express server: each error
 * must come out as the SDK class a client catches, with code, param and type set, and the
 * SDK must retry what retrying can cure and nothing else.
 */

const MARKER = 'MARKER-51c2e0-prompt-text';

// Frozen clock: once a key's one request per millisecond is spent it stays spent, so every retry is refused too.
const limiter = new RateLimiter({ now: () => 0 });
// One request per 10 ms, so the advertised wait (retry-after-ms) is 10 ms.
const busyLimits = { requestsPerMinute: 6_000, tokensPerMinute: null };
const { logger, raw: logLines } = capturedLogger();
let received = 0;
let server: Running;

function app() {
  const a = express();
  a.use(requestId());
  a.use((_req, _res, next) => {
    received += 1;
    next();
  });
  a.use(express.json({ limit: '16kb' }));
  a.post('/v1/chat/completions', (req, res) => {
    if (req.get('authorization') !== 'Bearer tg-good-key') throw invalidApiKey('invalid');
    const parsed = parseChatCompletionRequest(req.body);
    if (!parsed.ok) throw parsed.error;
    const { model } = parsed.body;
    if (model === 'broke') throw insufficientQuota({ available: 400n, needed: 12_345n });
    if (model === 'down') throw upstreamUnavailable();
    if (model === 'crash') throw new Error(`database said something internal about ${MARKER}`);
    if (model === 'busy') {
      const admission = limiter.admit('busy-key', busyLimits, 0);
      res.set(admission.headers);
      if (!admission.ok) throw admission.error;
    }
    if (model !== 'llama' && model !== 'busy') throw modelNotFound(model);
    res.json({
      id: `chatcmpl-${requestIdOf(res)}`,
      object: 'chat.completion',
      created: 1,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
    });
  });
  a.use(notFound());
  a.use(errorHandler(logger));
  return a;
}

function client(options: { apiKey?: string; maxRetries?: number } = {}) {
  return new OpenAI({ baseURL: `${server.baseUrl}/v1`, apiKey: options.apiKey ?? 'tg-good-key', maxRetries: options.maxRetries ?? 0 });
}

const ask = (model: string, c = client()) => c.chat.completions.create({ model, messages: [{ role: 'user', content: `Say ${MARKER}` }] });

async function caught(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  server = await serve(app());
});
afterAll(async () => {
  await server.close();
});
beforeEach(() => {
  received = 0;
});

it('a well-formed request succeeds through the SDK, with the request id echoed', async () => {
  const { data, response } = await ask('llama').withResponse();
  expect(data.choices[0]!.message.content).toBe('hello');
  expect(response.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
});

it('a malformed body is a BadRequestError naming the param, without the value', async () => {
  const error = await caught(client().chat.completions.create({ model: 'llama', messages: [{ role: 'wizard', content: MARKER } as never] }));
  expect(error).toBeInstanceOf(OpenAI.BadRequestError);
  const e = error as InstanceType<typeof OpenAI.BadRequestError>;
  expect(e).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'messages[0].role', code: 'invalid_value' });
  expect(e.message).not.toContain(MARKER);
  expect(e.requestID).toMatch(/^req_/);
});

it('a bad key is an AuthenticationError with code invalid_api_key', async () => {
  const error = await caught(ask('llama', client({ apiKey: 'tg-wrong' })));
  expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
  expect(error).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'invalid_request_error' });
  expect((error as Error).message).not.toContain('tg-wrong');
});

it('an unknown model is a NotFoundError with code model_not_found and param model', async () => {
  const error = await caught(ask('no-such-model'));
  expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  expect(error).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
});

it('an unknown route is a NotFoundError in the same shape', async () => {
  const error = await caught(client().models.retrieve('anything'));
  expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  expect(error).toMatchObject({ status: 404, code: 'unknown_url', type: 'invalid_request_error' });
});

it('insufficient credit is a RateLimitError with code insufficient_quota, and the SDK does not retry it', async () => {
  const error = await caught(ask('broke', client({ maxRetries: 2 })));
  expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  expect(error).toMatchObject({ status: 429, code: 'insufficient_quota', type: 'insufficient_quota' });
  expect((error as Error).message).toContain('USD 0.012345');
  expect((error as Error).message).toContain('USD 0.000400');
  expect(received).toBe(1);
});

it('a per-key rate limit is a RateLimitError the SDK does retry, honouring retry-after-ms', async () => {
  // Spend the key's whole allowance (a minute's burst); the frozen clock never refills it.
  while (limiter.admit('busy-key', busyLimits, 0).ok);
  const error = await caught(ask('busy', client({ maxRetries: 2 })));
  expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  const e = error as InstanceType<typeof OpenAI.RateLimitError>;
  expect(e).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'requests' });
  expect(e.headers?.get('retry-after')).toBe('1');
  expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
  expect(e.headers?.get('x-ratelimit-limit-requests')).toBe('6000');
  expect(received).toBe(3);
});

it('an unavailable upstream is a 503 InternalServerError', async () => {
  const error = await caught(ask('down'));
  expect(error).toBeInstanceOf(OpenAI.InternalServerError);
  expect(error).toMatchObject({ status: 503, code: 'upstream_unavailable' });
});

it('an unexpected error is a generic 500: no detail to the client, logged under the request id without its message', async () => {
  const error = await caught(ask('crash'));
  expect(error).toBeInstanceOf(OpenAI.InternalServerError);
  const e = error as InstanceType<typeof OpenAI.InternalServerError>;
  expect(e).toMatchObject({ status: 500, code: 'internal_error', type: 'server_error' });
  expect(e.message).not.toContain(MARKER);
  expect(e.message).not.toMatch(/database|\bat\s/);
  const logged = logLines.find((line) => line.includes(e.requestID!));
  expect(logged).toBeDefined();
  expect(logged).toContain('"name":"Error"');
  expect(logLines.join('\n')).not.toContain(MARKER);
});

it('malformed JSON is a 400 invalid_request_error, without the parser message', async () => {
  const response = await fetch(`${server.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer tg-good-key' },
    body: `{"model": "llama", "messages": [${MARKER}`,
  });
  expect(response.status).toBe(400);
  const body = await response.text();
  expect(JSON.parse(body)).toEqual({
    error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_json' },
  });
  expect(body).not.toContain(MARKER);
});

it('a body over the limit is a 400 invalid_request_error', async () => {
  const response = await fetch(`${server.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer tg-good-key' },
    body: JSON.stringify({ model: 'llama', messages: [{ role: 'user', content: MARKER.repeat(1000) }] }),
  });
  expect(response.status).toBe(400);
  expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'request_too_large' } });
});
