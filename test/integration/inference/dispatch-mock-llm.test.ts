import { InferenceAdapter } from '../../../adapters/inference/dispatch';
import type { DispatchOptions, InferenceRequest } from '../../../adapters/inference/dispatch';
import type { ModelSpec } from '../../../adapters/inference/models-file';
import type { DispatchResult } from '../../../adapters/inference/outcome';
import { countChatPromptTokens, countTextTokens } from '../../../adapters/inference/tokens';
import { freePort, mockChatUsage, mockEmbeddingUsage, slowStreamMockLlmConfig, startMockLlm } from '../../support/mock-llm';
import type { MockLlm } from '../../support/mock-llm';
import { startGatedProxy, type GatedProxy } from '../../support/gated-proxy';
import { until, within } from '../../support/wait';
import { recordingSink } from './scripted-upstream';

// Real mock-llm processes: one quick, one streaming in small chunks (many events per answer).
// The stream tests reach the latter through proxies that hold its stream back after a few
// events, so what they prove (relayed as it came; cancelled mid-answer) holds at any speed.
let fast: MockLlm;
let slow: MockLlm;
let relayGate: GatedProxy;
let abortGate: GatedProxy;
let refusedBaseUrl: string;
let adapter: InferenceAdapter;

const prompt = 'The quick brown fox jumps over the lazy dog';

function model(id: string, baseUrls: string[], extra: Partial<ModelSpec> = {}): ModelSpec {
  return {
    id,
    upstreams: baseUrls.map((baseUrl) => ({ baseUrl, capacity: 4 })),
    maxOutputTokens: 256,
    operations: ['chat', 'completion', 'embedding'],
    ...extra,
  };
}

async function run(modelId: string, request: InferenceRequest, options?: DispatchOptions): Promise<DispatchResult> {
  const acquired = adapter.tryAcquire(modelId);
  if (acquired.kind !== 'acquired') throw new Error(`no slot: ${acquired.kind}`);
  return adapter.dispatch(acquired.lease, request, options);
}

const chat = (extra: Record<string, unknown> = {}): InferenceRequest => ({
  operation: 'chat',
  body: { model: 'ignored', messages: [{ role: 'user', content: prompt }], ...extra },
});

beforeAll(async () => {
  [fast, slow, refusedBaseUrl] = await Promise.all([
    startMockLlm(),
    startMockLlm(slowStreamMockLlmConfig(60)),
    freePort().then((port) => `http://127.0.0.1:${port}/v1`),
  ]);
  [relayGate, abortGate] = await Promise.all([startGatedProxy(slow.baseUrl, 2), startGatedProxy(slow.baseUrl, 3)]);
  adapter = new InferenceAdapter([
    model('echo', [fast.baseUrl]),
    model('renamed', [fast.baseUrl], { upstreams: [{ baseUrl: fast.baseUrl, capacity: 2, upstreamModel: 'org/Echo-7B' }] }),
    model('failing', [fast.baseUrl]),
    model('moderated', [fast.baseUrl]),
    model('relay-gated', [relayGate.baseUrl]),
    model('abort-gated', [abortGate.baseUrl]),
    model('failover', [refusedBaseUrl, fast.baseUrl]),
    model('dead', [refusedBaseUrl, `http://127.0.0.1:${await freePort()}/v1`]),
    model('single', [fast.baseUrl], { upstreams: [{ baseUrl: fast.baseUrl, capacity: 1 }] }),
  ]);
});

afterAll(async () => {
  await adapter?.close();
  await Promise.all([relayGate?.close(), abortGate?.close()]);
  await Promise.all([fast?.stop(), slow?.stop()]);
});

test('non-streaming chat relays the upstream body and bills the usage it reports', async () => {
  const result = await run('echo', chat());
  expect(result.outcome).toMatchObject({
    kind: 'completed',
    httpStatus: 200,
    usage: { inputTokens: mockChatUsage.prompt_tokens, outputTokens: mockChatUsage.completion_tokens, estimated: false },
    tokensProduced: mockChatUsage.completion_tokens,
    upstream: fast.baseUrl,
    finishReason: 'stop',
    failovers: 0,
  });
  expect(result.body).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: prompt } }] });
  expect(result.clientError).toBeUndefined();
  expect(adapter.inFlight('echo')).toEqual([0]);
});

test('the upstream is asked for its own model name and the client sees the public id', async () => {
  const result = await run('renamed', chat());
  expect(result.outcome.kind).toBe('completed');
  expect(result.body).toMatchObject({ model: 'renamed' });
});

test('a stream is relayed event by event as it arrives, and counted locally when the upstream reports no usage', async () => {
  const recorder = recordingSink();
  const dispatched = run('relay-gated', chat({ stream: true }), { sink: recorder.sink });
  // The proxy lets two events through and holds the rest: both reach the sink while the rest of
  // the answer has not even reached us, so each is written when it comes, not at the end.
  await until(() => (recorder.writes.length >= 2 ? true : undefined), { what: 'the first two events at the sink', timeoutMs: 15_000 });
  expect(relayGate.holding()).toBe(true);
  expect(recorder.writes).toHaveLength(2);
  relayGate.release();
  const result = await dispatched;

  expect(recorder.opened()).toBe(1);
  const events = recorder.events();
  expect(events.at(-1)).toBe('[DONE]');
  // Every write is one whole SSE event.
  expect(recorder.writes.every((w) => /^data: .*\n\n$/s.test(w.chunk))).toBe(true);
  expect(recorder.writes.length).toBeGreaterThanOrEqual(10);
  const relayedText = events
    .slice(0, -1)
    .map((e) => JSON.parse(e).choices[0].delta.content as string)
    .join('');
  expect(relayedText).toBe(prompt);
  // mock-llm sends no usage chunk, so nothing usage-shaped reaches a client that did not ask.
  expect(events.some((e) => e.includes('"usage"'))).toBe(false);

  expect(result.streamStarted).toBe(true);
  expect(result.outcome).toMatchObject({
    kind: 'completed',
    httpStatus: 200,
    finishReason: 'stop',
    usage: {
      inputTokens: countChatPromptTokens([{ role: 'user', content: prompt }]),
      outputTokens: countTextTokens(prompt),
      estimated: true,
    },
    tokensProduced: countTextTokens(prompt),
  });
  expect(result.outcome.timeToFirstTokenMs).toBeGreaterThanOrEqual(0);
  expect(result.outcome.timeToFirstTokenMs).toBeLessThan(result.outcome.latencyMs);
});

test('a client that asked for usage gets a usage chunk before [DONE] even when the upstream sends none', async () => {
  const recorder = recordingSink();
  const result = await run('echo', chat({ stream: true, stream_options: { include_usage: true } }), { sink: recorder.sink });
  const events = recorder.events();
  expect(events.at(-1)).toBe('[DONE]');
  const usage = JSON.parse(events.at(-2)!);
  expect(usage.choices).toEqual([]);
  expect(usage.usage).toEqual({
    prompt_tokens: result.outcome.usage.inputTokens,
    completion_tokens: countTextTokens(prompt),
    total_tokens: result.outcome.usage.inputTokens + countTextTokens(prompt),
  });
  expect(result.outcome.usage.estimated).toBe(true);
});

test('completions: non-streaming relays the text and counts it when no usage is reported', async () => {
  const result = await run('echo', { operation: 'completion', body: { model: 'x', prompt } });
  expect(result.body).toMatchObject({ object: 'text_completion', choices: [{ text: prompt }] });
  expect(result.outcome).toMatchObject({
    kind: 'completed',
    operation: 'completion',
    usage: { inputTokens: countTextTokens(prompt), outputTokens: countTextTokens(prompt), estimated: true },
  });
});

test('completions: a stream is relayed and counted', async () => {
  const recorder = recordingSink();
  const result = await run('echo', { operation: 'completion', body: { model: 'x', prompt, stream: true } }, { sink: recorder.sink });
  expect(recorder.events().at(-1)).toBe('[DONE]');
  expect(result.outcome).toMatchObject({ kind: 'completed', tokensProduced: countTextTokens(prompt) });
});

test('embeddings: relays the vectors and bills the reported input tokens, with no output tokens', async () => {
  const result = await run('echo', { operation: 'embedding', body: { model: 'x', input: [prompt, 'second'] } });
  expect(result.body).toMatchObject({ object: 'list', data: [{ object: 'embedding', embedding: [0.1, 0.2, 0.3] }] });
  expect(result.outcome).toMatchObject({
    kind: 'completed',
    operation: 'embedding',
    usage: { inputTokens: mockEmbeddingUsage.prompt_tokens, outputTokens: 0, estimated: false },
    tokensProduced: 0,
  });
});

test('a refused connection fails over to the next upstream of the model', async () => {
  const result = await run('failover', chat());
  expect(result.outcome).toMatchObject({ kind: 'completed', upstream: fast.baseUrl, failovers: 1 });
  expect(adapter.inFlight('failover')).toEqual([0, 0]);
});

test('when every upstream refuses, the outcome is upstream_unavailable with nothing produced', async () => {
  const result = await run('dead', chat({ stream: true }), { sink: recordingSink().sink });
  expect(result.outcome).toMatchObject({ kind: 'upstream_unavailable', httpStatus: null, tokensProduced: 0, failovers: 1 });
  expect(result.clientError).toMatchObject({ status: 503, retryAfterSeconds: 1, body: { error: { code: 'upstream_unavailable' } } });
  expect(result.streamStarted).toBe(false);
  expect(adapter.inFlight('dead')).toEqual([0, 0]);
});

test('an upstream 500 is upstream_error with no tokens, and its body (which echoes the prompt) is not passed on', async () => {
  const result = await run('failing', chat());
  expect(result.outcome).toMatchObject({ kind: 'upstream_error', httpStatus: 500, tokensProduced: 0, usage: { outputTokens: 0 } });
  expect(result.body).toBeUndefined();
  expect(result.clientError).toEqual({
    status: 502,
    body: { error: { message: 'The upstream failed (HTTP 500).', type: 'upstream_error', param: null, code: 'upstream_error' } },
  });
  expect(JSON.stringify(result)).not.toContain('quick brown fox');
});

test('an upstream error inside a stream, before any output, leaves the client unanswered for a proper error', async () => {
  // mock-llm streams errors as a 200 with one error event.
  const recorder = recordingSink();
  const result = await run('failing', chat({ stream: true }), { sink: recorder.sink });
  expect(result.outcome).toMatchObject({ kind: 'upstream_error', tokensProduced: 0 });
  expect(result.streamStarted).toBe(false);
  expect(recorder.writes).toEqual([]);
  expect(result.clientError?.status).toBe(502);
  expect(JSON.stringify(result)).not.toContain('quick brown fox');
});

test('finish_reason content_filter is a moderation refusal billed at the reported tokens', async () => {
  const result = await run('moderated', chat());
  expect(result.outcome).toMatchObject({
    kind: 'moderation_refusal',
    finishReason: 'content_filter',
    usage: { inputTokens: 9, outputTokens: 0, estimated: false },
  });
});

test('aborting mid-stream cancels the upstream request and reports the tokens relayed so far', async () => {
  const controller = new AbortController();
  const recorder = recordingSink((_chunk, index) => {
    if (index === 2) controller.abort();
  });
  // The proxy lets three events through and holds the rest for good: the dispatch can return,
  // and the upstream connection close, only because of the abort, not because the stream ended.
  const result = await within(
    run('abort-gated', chat({ stream: true }), { sink: recorder.sink, signal: controller.signal }),
    'the dispatch to return after the abort',
  );
  await within(abortGate.hungUpWhileHeld, 'the upstream connection to close while the rest of the answer was held back');
  expect(abortGate.passed()).toBe(3);
  const relayed = recorder
    .events()
    .map((e) => JSON.parse(e).choices[0].delta.content as string)
    .join('');
  expect(recorder.events()).toHaveLength(3);
  expect(relayed.length).toBeGreaterThan(0);
  expect(relayed.length).toBeLessThan(prompt.length);
  expect(result.outcome).toMatchObject({
    kind: 'client_disconnected',
    tokensProduced: countTextTokens(relayed),
    usage: { outputTokens: countTextTokens(relayed), estimated: true },
  });
});

test('at capacity, tryAcquire refuses at once; the slot frees when the dispatch ends', async () => {
  const first = adapter.tryAcquire('single');
  expect(first.kind).toBe('acquired');
  // Refused at once: tryAcquire answers synchronously, a value and not a promise of a slot.
  expect(adapter.tryAcquire('single')).toEqual({ kind: 'at_capacity', retryAfterSeconds: 1 });
  if (first.kind !== 'acquired') return;
  const result = await adapter.dispatch(first.lease, chat());
  expect(result.outcome.kind).toBe('completed');
  const again = adapter.tryAcquire('single');
  expect(again.kind).toBe('acquired');
  if (again.kind === 'acquired') again.lease.release();
  expect(adapter.tryAcquire('unknown')).toEqual({ kind: 'unknown_model' });
});
