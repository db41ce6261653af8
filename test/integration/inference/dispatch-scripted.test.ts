import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InferenceAdapter } from '../../../adapters/inference/dispatch';
import type { DispatchOptions, InferenceRequest } from '../../../adapters/inference/dispatch';
import type { DispatchResult } from '../../../adapters/inference/outcome';
import { responseSink } from '../../../adapters/inference/sink';
import { countTextTokens } from '../../../adapters/inference/tokens';
import { chatChunk, recordingSink, sleep, startScriptedUpstream, startSse, usageChunk } from './scripted-upstream';
import type { Script, ScriptedUpstream } from './scripted-upstream';
import { within } from '../../support/wait';

// Each test scripts its own tiny upstream: a vLLM-like server that reports usage in streams,
// one that crashes mid-stream, one that notices when we hang up.

const secret = 'sk-upstream-secret-123';
const started: { upstream: ScriptedUpstream; adapter: InferenceAdapter }[] = [];

async function upstreamWith(script: Script, options: { upstreamModel?: string } = {}) {
  const upstream = await startScriptedUpstream(script);
  const adapter = new InferenceAdapter([
    {
      id: 'public-model',
      upstreams: [{ baseUrl: upstream.baseUrl, capacity: 2, apiKey: secret, ...options }],
      maxOutputTokens: 128,
      operations: ['chat', 'completion'],
    },
  ]);
  started.push({ upstream, adapter });
  const run = (request: InferenceRequest, dispatchOptions?: DispatchOptions): Promise<DispatchResult> => {
    const acquired = adapter.tryAcquire('public-model');
    if (acquired.kind !== 'acquired') throw new Error(acquired.kind);
    return adapter.dispatch(acquired.lease, request, dispatchOptions);
  };
  return { upstream, adapter, run };
}

/**
 * An answer that never ends on its own: a chunk every `intervalMs` until the client hangs up.
 * A test that sees the connection close therefore sees the client cancel, whatever the speed.
 */
const endlessStream: Script = async (_request, res) => {
  startSse(res);
  for (let i = 0; !res.destroyed; i++) {
    res.write(chatChunk(` word${i}`));
    await sleep(30);
  }
};

afterEach(async () => {
  for (const { upstream, adapter } of started.splice(0)) {
    await adapter.close();
    await upstream.close();
  }
});

const streamChat = (extra: Record<string, unknown> = {}): InferenceRequest => ({
  operation: 'chat',
  body: { model: 'public-model', messages: [{ role: 'user', content: 'Count to five' }], stream: true, ...extra },
});

const vllmLike: Script = async (_request, res) => {
  startSse(res);
  res.write(chatChunk('one two', null, { usage: null }));
  res.write(chatChunk(' three', 'stop', { usage: null }));
  res.write(usageChunk(21, 3));
  res.end('data: [DONE]\n\n');
};

test('the upstream is asked for usage, under its own model name, with our key and a max_tokens cap', async () => {
  const { upstream, run } = await upstreamWith(vllmLike, { upstreamModel: 'org/Model-7B' });
  const result = await run(streamChat(), { sink: recordingSink().sink, requestId: 'req-1' });
  const seen = upstream.seen[0]!;
  expect(seen.path).toBe('/v1/chat/completions');
  expect(seen.body).toMatchObject({ model: 'org/Model-7B', stream: true, stream_options: { include_usage: true }, max_tokens: 128 });
  expect(seen.headers.authorization).toBe(`Bearer ${secret}`);
  expect(seen.headers['x-request-id']).toBe('req-1');
  expect(JSON.stringify(result)).not.toContain(secret);
});

test('an upstream usage chunk is hidden from a client that did not ask, and its counts are billed', async () => {
  const { run } = await upstreamWith(vllmLike, { upstreamModel: 'org/Model-7B' });
  const recorder = recordingSink();
  const result = await run(streamChat(), { sink: recorder.sink });
  const events = recorder.events();
  expect(events).toHaveLength(3);
  expect(events.at(-1)).toBe('[DONE]');
  expect(events.some((e) => e.includes('"choices":[]'))).toBe(false);
  // The upstream's model name is replaced by the public id in every chunk.
  expect(events.slice(0, 2).map((e) => JSON.parse(e).model)).toEqual(['public-model', 'public-model']);
  expect(result.outcome).toMatchObject({
    kind: 'completed',
    usage: { inputTokens: 21, outputTokens: 3, estimated: false },
    tokensProduced: 3,
  });
});

test('an upstream usage chunk is passed to a client that asked for include_usage', async () => {
  const { run } = await upstreamWith(vllmLike);
  const recorder = recordingSink();
  const result = await run(streamChat({ stream_options: { include_usage: true } }), { sink: recorder.sink });
  const events = recorder.events();
  expect(events).toHaveLength(4);
  expect(`data: ${events[2]}\n\n`).toBe(usageChunk(21, 3));
  expect(events[3]).toBe('[DONE]');
  expect(result.outcome.usage).toEqual({ inputTokens: 21, outputTokens: 3, estimated: false });
});

test('a stream cut mid-way (upstream crash) is "cut", with the tokens relayed so far, and the client is told', async () => {
  const { run } = await upstreamWith(async (_request, res) => {
    startSse(res);
    res.write(chatChunk('alpha beta'));
    res.write(chatChunk(' gamma'));
    await sleep(30);
    res.write(chatChunk(' delta'));
    await sleep(30);
    res.socket?.destroy();
  });
  const recorder = recordingSink();
  const result = await run(streamChat(), { sink: recorder.sink });
  expect(result.outcome).toMatchObject({
    kind: 'cut',
    httpStatus: 200,
    tokensProduced: countTextTokens('alpha beta gamma delta'),
    usage: { estimated: true },
  });
  const last = JSON.parse(recorder.events().at(-1)!);
  expect(last.error.code).toBe('upstream_stream_cut');
  expect(recorder.events()).not.toContain('[DONE]');
});

test('a client abort mid-stream closes the upstream connection and reports the tokens so far', async () => {
  const { upstream, run } = await upstreamWith(endlessStream);
  const controller = new AbortController();
  const recorder = recordingSink((_chunk, index) => {
    if (index === 2) controller.abort();
  });
  // The upstream never ends its answer: returning, and the upstream seeing the connection close
  // before its response ended, can only come from the abort.
  const result = await within(run(streamChat(), { sink: recorder.sink, signal: controller.signal }), 'the dispatch to return after the abort');
  expect(await within(upstream.seen[0]!.closedEarly, 'the upstream connection to close')).toBe(true);
  expect(result.outcome).toMatchObject({
    kind: 'client_disconnected',
    tokensProduced: countTextTokens(' word0 word1 word2'),
    usage: { estimated: true },
  });
});

test('a slow sink holds the relay back (backpressure) instead of buffering', async () => {
  const { run } = await upstreamWith(async (_request, res) => {
    startSse(res);
    for (let i = 0; i < 3; i++) res.write(chatChunk(`part${i}`));
    res.end(chatChunk('', 'stop') + 'data: [DONE]\n\n');
  });
  // What happened, in order: every write reports a full buffer, so the next write must wait
  // until the sink has drained.
  const happened: string[] = [];
  const result = await run(streamChat(), {
    sink: {
      open: () => undefined,
      write: () => {
        happened.push('write');
        return false;
      },
      waitForDrain: async () => {
        happened.push('wait');
        await sleep(20);
        happened.push('drained');
      },
    },
  });
  expect(result.outcome.kind).toBe('completed');
  expect(happened).toEqual(new Array(5).fill(['write', 'wait', 'drained']).flat());
});

test('an upstream error event after output is upstream_error with the tokens so far, in our own words', async () => {
  const { run } = await upstreamWith(async (_request, res) => {
    startSse(res);
    res.write(chatChunk('partial answer'));
    res.end(`data: ${JSON.stringify({ error: { message: 'failed on: Count to five', type: 'server_error', code: 500 } })}\n\n`);
  });
  const recorder = recordingSink();
  const result = await run(streamChat(), { sink: recorder.sink });
  expect(result.outcome).toMatchObject({ kind: 'upstream_error', tokensProduced: countTextTokens('partial answer') });
  expect(result.streamStarted).toBe(true);
  expect(recorder.events().join('')).not.toContain('Count to five');
  expect(JSON.parse(recorder.events().at(-1)!).error.type).toBe('upstream_error');
});

test('a stream that finishes but closes without [DONE] is completed, and the client still gets [DONE]', async () => {
  const { run } = await upstreamWith(async (_request, res) => {
    startSse(res);
    res.end(chatChunk('done here', 'stop'));
  });
  const recorder = recordingSink();
  const result = await run(streamChat(), { sink: recorder.sink });
  expect(result.outcome).toMatchObject({ kind: 'completed', finishReason: 'stop' });
  expect(recorder.events().at(-1)).toBe('[DONE]');
});

test('an upstream HTTP error naming a content policy is a moderation refusal with no tokens', async () => {
  const { run } = await upstreamWith((_request, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { message: 'blocked: Count to five', type: 'invalid_request_error', code: 'content_filter' } }));
  });
  const result = await run({ operation: 'chat', body: { model: 'm', messages: [{ role: 'user', content: 'Count to five' }] } });
  expect(result.outcome).toMatchObject({ kind: 'moderation_refusal', httpStatus: 400, tokensProduced: 0 });
  expect(result.clientError?.body.error.code).toBe('content_filter');
  expect(JSON.stringify(result)).not.toContain('Count to five');
});

test('an upstream 429 on a stream request is upstream_error before anything is relayed', async () => {
  const { run } = await upstreamWith((_request, res) => {
    res.writeHead(429, { 'content-type': 'application/json' });
    res.end('{"error":{"message":"busy"}}');
  });
  const recorder = recordingSink();
  const result = await run(streamChat(), { sink: recorder.sink });
  expect(result.outcome).toMatchObject({ kind: 'upstream_error', httpStatus: 429, tokensProduced: 0 });
  expect(result.clientError).toMatchObject({ status: 503, retryAfterSeconds: 1 });
  expect(recorder.opened()).toBe(0);
});

test('through responseSink, a real HTTP client receives the stream, and hanging up cancels the upstream', async () => {
  const { upstream, run } = await upstreamWith(endlessStream);
  // A stand-in for the gateway's route: abort on client close, relay through the sink.
  let outcome: Promise<DispatchResult> | undefined;
  const gateway = createServer((_req, res) => {
    const controller = new AbortController();
    res.on('close', () => controller.abort());
    outcome = run(streamChat(), { sink: responseSink(res), signal: controller.signal }).finally(() => res.end());
  });
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = gateway.address() as AddressInfo;
    const client = new AbortController();
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: client.signal });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = response.body!.getReader();
    let received = '';
    while ((received.match(/\n\n/g) ?? []).length < 3) {
      const { value } = await reader.read();
      received += new TextDecoder().decode(value);
    }
    client.abort();
    // The upstream never ends on its own: only the hang-up ends the dispatch and the connection.
    const result = await within(outcome!, 'the dispatch to end after the client hung up');
    expect(result.outcome.kind).toBe('client_disconnected');
    expect(result.outcome.tokensProduced).toBeGreaterThanOrEqual(countTextTokens(' word0 word1 word2'));
    expect(await within(upstream.seen[0]!.closedEarly, 'the upstream connection to close')).toBe(true);
  } finally {
    gateway.closeAllConnections();
    await new Promise((resolve) => gateway.close(resolve));
  }
});
