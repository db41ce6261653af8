import OpenAI from 'openai';
import { countTextTokens } from '../../adapters/inference';
import { requestCost, usd } from '../../domain/money';
import { accountEvents, addModel, eventsOfType, issueKey, openAccount, openAiClient, requestEvents } from '../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { slowStreamMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';

/**
 * A stream that reaches the gateway's maximum request duration: the gateway ends it with a last
 * error event in OpenAI's shape (no [DONE], as for the other mid-stream failures), so the
 * official client raises instead of taking a short answer for a whole one, and the charge policy
 * settles what was produced (max_duration_reached). The upstream is mock-llm slowed to 4
 * characters every 100 ms on a long prompt: a minute of answer against a 3 s limit.
 */

const MAX_DURATION_S = 3;
const price = { input: '2.000001', output: '8.000003' };
const priceMicro = { inputPerMillion: usd(price.input), outputPerMillion: usd(price.output) };
const longPrompt = 'The quick brown fox jumps over the lazy dog again and again. '.repeat(40);

let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(slowStreamMockLlmConfig(100));
  gw = await startTestGateway({
    models: [{ id: 'slow', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 2_048, operations: ['chat' as const] }],
    // The upstream timeouts must be shorter than the maximum duration (the config refuses otherwise).
    env: { TOLLGATE_MAX_REQUEST_DURATION_S: String(MAX_DURATION_S), TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: '2', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '2' },
  });
  await addModel(gw.gateway.ledger, 'slow', { chat: price }, 2_048);
}, 60_000);

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

async function customer() {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  return { accountId, secret };
}

/** The one reservation, settled as max_duration_reached at exactly requestCost(usage, price). */
async function expectSettledAtMaxDuration(accountId: string, relayedText: string) {
  await gw.gateway.settlements.settled(accountId);
  const events = requestEvents(await accountEvents(gw.gateway.ledger, accountId));
  expect(events.map((e) => e.type)).toEqual(['ReservationPlaced', 'ReservationSettled']);
  const [settled] = eventsOfType(events, 'ReservationSettled');
  expect(settled!.data.outcome).toBe('max_duration_reached');
  expect(Number(settled!.data.usage.outputTokens)).toBeGreaterThanOrEqual(countTextTokens(relayedText));
  expect(settled!.data.usage.outputTokens).toBeLessThan(BigInt(countTextTokens(longPrompt)));
  expect(settled!.data.actualCost).toBe(requestCost(settled!.data.usage, priceMicro));
  expect(settled!.data.actualCost).toBeGreaterThan(0n);
}

it('the official client raises an APIError (request_timeout) after part of the answer, and what was produced is charged', async () => {
  const { accountId, secret } = await customer();
  const stream = await openAiClient(gw.url, secret).chat.completions.create({
    model: 'slow',
    stream: true,
    messages: [{ role: 'user', content: longPrompt }],
  });
  let text = '';
  let raised: unknown;
  try {
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  } catch (error) {
    raised = error;
  }
  expect(raised).toBeInstanceOf(OpenAI.APIError);
  expect(raised).toMatchObject({ type: 'server_error', code: 'request_timeout', param: null });
  expect((raised as Error).message).toContain(`maximum request duration (${MAX_DURATION_S} s)`);
  // Part of the answer came first, as relayed.
  expect(text.length).toBeGreaterThan(0);
  expect(text.length).toBeLessThan(longPrompt.length);
  expect(longPrompt.startsWith(text)).toBe(true);
  await expectSettledAtMaxDuration(accountId, text);
}, 60_000);

it("on the wire: the stream's last event is the error in OpenAI's shape, with no [DONE] after it", async () => {
  const { accountId, secret } = await customer();
  const response = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'slow', stream: true, messages: [{ role: 'user', content: longPrompt }] }),
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events = (await response.text())
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => e.slice('data: '.length));
  expect(events.length).toBeGreaterThan(1);
  expect(events).not.toContain('[DONE]');
  expect(JSON.parse(events.at(-1)!)).toEqual({
    error: {
      message: `The request ran longer than this gateway's maximum request duration (${MAX_DURATION_S} s) and was ended.`,
      type: 'server_error',
      param: null,
      code: 'request_timeout',
    },
  });
  // Every event before it is an answer chunk.
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: { delta: { content?: string } }[] });
  expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
  await expectSettledAtMaxDuration(accountId, chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''));
}, 60_000);
