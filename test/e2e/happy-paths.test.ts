import type OpenAI from 'openai';
import { countChatPromptTokens, countCompletionPromptTokens, countTextTokens } from '../../adapters/inference';
import { requestCost, usd } from '../../domain/money';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, mockChatUsage, mockEmbeddingUsage, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, accountState, addModel, eventsOfType, issueKey, openAccount, openAiClient, requestEvents, requestLogEntry } from '../support/e2e-setup';

/**
 * The official openai client through a real gateway (real PostgreSQL) to a real upstream
 * process (@dwmkerr/mock-llm). After each call, the account's stored events show exactly one
 * reservation placed and settled, at exactly requestCost(usage, price) to the micro-USD.
 */

// Odd prices so rounding up to the next micro-USD matters.
const chatPrice = { input: '3.333333', output: '15.000001' };
const completionPrice = { input: '1.000007', output: '2.000003' };
const embeddingPrice = { input: '0.130001', output: '0' };
const micro = (p: { input: string; output: string }) => ({ inputPerMillion: usd(p.input), outputPerMillion: usd(p.output) });

let upstream: MockLlm;
let gw: TestGateway;
let client: OpenAI;
let accountId: string;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [
      { id: 'llama-e2e', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 512, operations: ['chat', 'completion'] },
      { id: 'embed-e2e', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 1, operations: ['embedding'] },
    ],
  });
  const { ledger, keys } = gw.gateway;
  await addModel(ledger, 'llama-e2e', { chat: chatPrice, completion: completionPrice }, 512);
  await addModel(ledger, 'embed-e2e', { embedding: embeddingPrice }, 1);
  accountId = await openAccount(ledger, { topUpUsd: '10' });
  client = openAiClient(gw.url, (await issueKey(keys, accountId)).secret);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

/** The events this request added: one placed, then one settled for the same request id. */
async function settledSince(before: number) {
  await gw.gateway.settlements.settled(accountId);
  const events = requestEvents(await accountEvents(gw.gateway.ledger, accountId)).slice(before);
  expect(events.map((e) => e.type)).toEqual(['ReservationPlaced', 'ReservationSettled']);
  const [placed] = eventsOfType(events, 'ReservationPlaced');
  const [settled] = eventsOfType(events, 'ReservationSettled');
  expect(settled!.data.requestId).toBe(placed!.data.requestId);
  expect(settled!.data.reservedAmount).toBe(placed!.data.amount);
  const state = await accountState(gw.gateway.ledger, accountId);
  expect(state.openReservations.size).toBe(0);
  expect(state.reserved).toBe(0n);
  return settled!;
}

async function eventCount(): Promise<number> {
  await gw.gateway.settlements.settled(accountId);
  return requestEvents(await accountEvents(gw.gateway.ledger, accountId)).length;
}

it('lists the offered models', async () => {
  const ids = [];
  for await (const model of client.models.list()) ids.push(model.id);
  expect(ids.sort()).toEqual(['embed-e2e', 'llama-e2e']);
});

it('chat, not streaming: usage comes from the upstream and is charged exactly', async () => {
  const before = await eventCount();
  const answer = await client.chat.completions.create({ model: 'llama-e2e', messages: [{ role: 'user', content: 'hello upstream' }] });
  expect(answer.choices[0]!.message.content).toBe('hello upstream');
  expect(answer.usage).toMatchObject(mockChatUsage);

  const settled = await settledSince(before);
  expect(settled.data).toMatchObject({
    outcome: 'completed',
    operation: 'chat',
    model: 'llama-e2e',
    usage: { inputTokens: BigInt(mockChatUsage.prompt_tokens), outputTokens: BigInt(mockChatUsage.completion_tokens), estimated: false },
  });
  const expected = requestCost({ inputTokens: 11n, outputTokens: 7n }, micro(chatPrice));
  expect(expected).toBe(142n); // (11 x 3.333333 + 7 x 15.000001) = 141.666670 micro-USD, rounded up
  expect(settled.data.actualCost).toBe(expected);
});

it('chat, streaming without include_usage: no usage chunk reaches the client; counted tokens are charged', async () => {
  const before = await eventCount();
  const messages = [{ role: 'user' as const, content: 'stream me a fairly long answer please, chunk by chunk' }];
  const stream = await client.chat.completions.create({ model: 'llama-e2e', messages, stream: true });
  let text = '';
  let chunks = 0;
  let usageChunks = 0;
  let finishReason: string | null = null;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usageChunks++;
    text += chunk.choices[0]?.delta.content ?? '';
    finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
  }
  expect(text).toBe(messages[0]!.content);
  expect(chunks).toBeGreaterThan(3);
  expect(usageChunks).toBe(0);
  expect(finishReason).toBe('stop');

  // mock-llm reports no usage in streams: the gateway counts both sides and says so.
  const settled = await settledSince(before);
  const usage = { inputTokens: BigInt(countChatPromptTokens(messages)), outputTokens: BigInt(countTextTokens(text)) };
  expect(settled.data).toMatchObject({ outcome: 'completed', usage: { ...usage, estimated: true } });
  expect(settled.data.actualCost).toBe(requestCost(usage, micro(chatPrice)));
  expect(settled.data).not.toHaveProperty('request');
  expect(await requestLogEntry(gw.gateway.ledger, accountId, settled.data.requestId, settled.metadata.occurredAt)).toMatchObject({
    stream: true,
    httpStatus: 200,
    ended: 'settled',
    outcome: 'completed',
    model: 'llama-e2e',
  });
});

it('chat, streaming with include_usage: one usage chunk, last, equal to what is charged', async () => {
  const before = await eventCount();
  const messages = [{ role: 'user' as const, content: 'count these tokens for me' }];
  const stream = await client.chat.completions.create({
    model: 'llama-e2e',
    messages,
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const withUsage = chunks.filter((c) => c.usage);
  expect(withUsage).toHaveLength(1);
  expect(chunks[chunks.length - 1]).toBe(withUsage[0]);
  expect(withUsage[0]!.choices).toEqual([]);
  const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
  expect(text).toBe(messages[0]!.content);

  const settled = await settledSince(before);
  const usage = withUsage[0]!.usage!;
  expect(settled.data.usage).toEqual({ inputTokens: BigInt(usage.prompt_tokens), outputTokens: BigInt(usage.completion_tokens), estimated: true });
  expect(usage.completion_tokens).toBe(countTextTokens(text));
  expect(settled.data.actualCost).toBe(requestCost(settled.data.usage, micro(chatPrice)));
});

it('completions: the completion price applies, usage counted when the upstream reports none', async () => {
  const before = await eventCount();
  const prompt = 'Once upon a time in a gateway';
  const answer = await client.completions.create({ model: 'llama-e2e', prompt, max_tokens: 50 });
  expect(answer.choices[0]!.text).toBe(prompt);

  const settled = await settledSince(before);
  const usage = { inputTokens: BigInt(countCompletionPromptTokens(prompt)), outputTokens: BigInt(countTextTokens(prompt)) };
  expect(settled.data).toMatchObject({ outcome: 'completed', operation: 'completion', usage: { ...usage, estimated: true } });
  expect(settled.data.actualCost).toBe(requestCost(usage, micro(completionPrice)));
  expect(settled.data.actualCost).not.toBe(requestCost(usage, micro(chatPrice)));
});

it('embeddings: input tokens only, from the upstream', async () => {
  const before = await eventCount();
  const answer = await client.embeddings.create({ model: 'embed-e2e', input: 'embed this sentence', encoding_format: 'float' });
  expect(answer.data[0]!.embedding).toEqual([0.1, 0.2, 0.3]);

  const settled = await settledSince(before);
  const usage = { inputTokens: BigInt(mockEmbeddingUsage.prompt_tokens), outputTokens: 0n };
  expect(settled.data).toMatchObject({ outcome: 'completed', operation: 'embedding', usage: { ...usage, estimated: false } });
  expect(settled.data.actualCost).toBe(requestCost(usage, micro(embeddingPrice)));
  expect(settled.data.actualCost).toBe(1n); // 5 x 0.130001 = 0.650005, rounded up
});

it('the balance is the top-up less every settled cost, to the micro-USD', async () => {
  await gw.gateway.settlements.settled(accountId);
  const events = await accountEvents(gw.gateway.ledger, accountId);
  const settled = eventsOfType(events, 'ReservationSettled');
  expect(settled.length).toBe(5);
  const spent = settled.reduce((sum, e) => sum + e.data.actualCost, 0n);
  const state = await accountState(gw.gateway.ledger, accountId);
  expect(state.purchased).toBe(usd('10') - spent);
  // What this process serves from its cache agrees with the stored log.
  const { state: cached } = await gw.gateway.ledger.accounts.load(`account-${accountId}`);
  expect(cached.purchased).toBe(state.purchased);
});
