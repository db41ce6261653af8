import OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, slowStreamMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { manualClock } from '../support/clock';
import { startGatedProxy, type GatedProxy } from '../support/gated-proxy';
import { accountEvents, addModel, eventsOfType, issueKey, openAccount, openAiClient, rejectionOf, requestEvents } from '../support/e2e-setup';

/**
 * Authentication and admission through the openai client: missing, malformed and unknown keys,
 * a key without the inference scope, the per-key request rate limit (2 per minute here), and an
 * upstream at capacity answering an immediate 429 instead of queueing.
 */

let upstream: MockLlm;
let slowUpstream: MockLlm;
let narrowGate: GatedProxy;
let gw: TestGateway;
// The rate limiter's clock stands still: nothing refills between the requests a test counts.
const clock = manualClock();

beforeAll(async () => {
  [upstream, slowUpstream] = await Promise.all([startMockLlm(defaultMockLlmConfig()), startMockLlm(slowStreamMockLlmConfig(50))]);
  // The narrow model's stream is held after its first event until the test releases it.
  narrowGate = await startGatedProxy(slowUpstream.baseUrl, 1);
  gw = await startTestGateway({
    admissionClock: clock.now,
    models: [
      { id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] },
      { id: 'narrow', upstreams: [{ baseUrl: narrowGate.baseUrl, capacity: 1 }], maxOutputTokens: 256, operations: ['chat'] },
    ],
    env: { TOLLGATE_RATE_LIMIT_RPM: '2' },
  });
  await addModel(gw.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 256);
  await addModel(gw.gateway.ledger, 'narrow', { chat: { input: '1', output: '2' } }, 256);
});

afterAll(async () => {
  await gw?.stop();
  await narrowGate?.close();
  await Promise.all([upstream?.stop(), slowUpstream?.stop()]);
});

const hello = { model: 'llama', messages: [{ role: 'user' as const, content: 'hello' }] };

async function customer(scopes: Parameters<typeof issueKey>[2] = ['inference']) {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId, scopes);
  return { accountId, secret, client: openAiClient(gw.url, secret) };
}

it('no key: 401 AuthenticationError', async () => {
  // The SDK always sends its apiKey; a null default header removes the Authorization header.
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0, defaultHeaders: { authorization: null } });
  const error = await rejectionOf(client.chat.completions.create(hello));
  expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
  expect(error).toMatchObject({ status: 401, code: 'invalid_api_key' });
  expect((error as Error).message).toMatch(/didn't provide an API key/);
});

it('a malformed key and an unknown well-formed key: 401 AuthenticationError, the key not quoted', async () => {
  for (const apiKey of ['tg_not-a-key', `tg_${'A'.repeat(16)}_${'b'.repeat(43)}`]) {
    const error = await rejectionOf(openAiClient(gw.url, apiKey).chat.completions.create(hello));
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect((error as Error).message).not.toContain(apiKey);
  }
});

it('a key without the inference scope: 403 PermissionDeniedError, nothing reserved', async () => {
  const { accountId, client } = await customer(['account_read']);
  const error = await rejectionOf(client.chat.completions.create(hello));
  expect(error).toBeInstanceOf(OpenAI.PermissionDeniedError);
  expect(error).toMatchObject({ status: 403, code: 'insufficient_permissions' });
  expect(requestEvents(await accountEvents(gw.gateway.ledger, accountId))).toEqual([]);
});

it('rate limit: the third request in a minute is a 429 rate_limit_exceeded with x-ratelimit-* headers', async () => {
  const { accountId, client } = await customer();
  const first = await client.chat.completions.create(hello).withResponse();
  expect(first.response.headers.get('x-ratelimit-limit-requests')).toBe('2');
  expect(first.response.headers.get('x-ratelimit-remaining-requests')).toBe('1');
  const second = await client.chat.completions.create(hello).withResponse();
  expect(second.response.headers.get('x-ratelimit-remaining-requests')).toBe('0');

  const error = await rejectionOf(client.chat.completions.create(hello));
  expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  const e = error as InstanceType<typeof OpenAI.RateLimitError>;
  expect(e).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'requests' });
  expect(e.headers?.get('x-ratelimit-limit-requests')).toBe('2');
  expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('0');
  expect(e.headers?.get('x-ratelimit-reset-requests')).toMatch(/^\d+(\.\d+)?(ms|s|m)/);
  expect(Number(e.headers?.get('retry-after'))).toBeGreaterThan(0);

  await gw.gateway.settlements.settled(accountId);
  const events = await accountEvents(gw.gateway.ledger, accountId);
  expect(eventsOfType(events, 'ReservationPlaced')).toHaveLength(2); // the refused one reserved nothing

  // Once the advertised wait has passed (on the limiter's clock), one more request is admitted, and only one.
  clock.advance(Number(e.headers?.get('retry-after-ms')));
  const fourth = await client.chat.completions.create(hello).withResponse();
  expect(fourth.response.headers.get('x-ratelimit-remaining-requests')).toBe('0');
  expect(await rejectionOf(client.chat.completions.create(hello))).toBeInstanceOf(OpenAI.RateLimitError);
});

it('upstream at capacity: an immediate 429 with Retry-After while a slow stream holds the only slot; nothing reserved', async () => {
  const holder = await customer();
  // A stream of many events, held after the first one until the refusal has been seen.
  const stream = await holder.client.chat.completions.create({
    model: 'narrow',
    messages: [{ role: 'user', content: 'a slow answer, chunk by chunk.' }],
    stream: true,
  });
  const iterator = stream[Symbol.asyncIterator]();
  const first = await iterator.next(); // the slow stream is flowing: the slot is taken
  expect(first.done).toBe(false);
  expect(gw.gateway.inference.inFlight('narrow')).toEqual([1]);

  const other = await customer();
  const error = await rejectionOf(other.client.chat.completions.create({ ...hello, model: 'narrow' }));
  // Answered while the holder's stream could not have ended (the gate still holds it): at once,
  // not queued behind the stream, which would wait for the release below forever.
  expect(narrowGate.holding()).toBe(true);
  expect(gw.gateway.inference.inFlight('narrow')).toEqual([1]);
  narrowGate.release();
  let rest = 0;
  while (!(await iterator.next()).done) rest++;
  expect(rest).toBeGreaterThan(3); // the holder's stream went on after the other was refused

  expect(error).toBeInstanceOf(OpenAI.RateLimitError);
  const e = error as InstanceType<typeof OpenAI.RateLimitError>;
  expect(e).toMatchObject({ status: 429, code: 'model_at_capacity' });
  expect(e.headers?.get('retry-after')).toBe('1');
  expect(requestEvents(await accountEvents(gw.gateway.ledger, other.accountId))).toEqual([]);

  // The holder's reservation ends with its stream, and the slot is free again.
  await gw.gateway.settlements.settled(holder.accountId);
  expect(gw.gateway.inference.inFlight('narrow')).toEqual([0]);
  const held = await accountEvents(gw.gateway.ledger, holder.accountId);
  expect(eventsOfType(held, 'ReservationPlaced')).toHaveLength(1);
  expect(eventsOfType(held, 'ReservationSettled')).toHaveLength(1);
});
