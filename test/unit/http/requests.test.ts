import {
  completionPromptCount,
  formatParam,
  parseChatCompletionRequest,
  parseCompletionRequest,
  parseEmbeddingRequest,
  requestedMaxOutputTokens,
  wantsStreamUsage,
} from '../../../adapters/http/openai/requests';
import type { ApiError } from '../../../adapters/http/openai/errors';

// Stands for prompt content: it must never come back in an error.
const MARKER = 'MARKER-7f3a9c-prompt-text';

const chat = (extra: Record<string, unknown> = {}) => ({
  model: 'llama-3.1-8b',
  messages: [{ role: 'user', content: `Say ${MARKER}` }],
  ...extra,
});

function refusal(result: { ok: true } | { ok: false; error: ApiError }): ApiError {
  if (result.ok) throw new Error('expected a refusal, got a parsed body');
  return result.error;
}

describe('chat completion requests', () => {
  it('accepts a minimal body and keeps vendor extensions, top level and inside messages', () => {
    const result = parseChatCompletionRequest(
      chat({ top_k: 40, guided_json: { type: 'object' }, messages: [{ role: 'user', content: 'hi', cache_hint: 'x' }] }),
    );
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.body['top_k']).toBe(40);
    expect(result.body['guided_json']).toEqual({ type: 'object' });
    expect(result.body.messages[0]!['cache_hint']).toBe('x');
  });

  it('accepts every role, content parts, tool calls, and the usual optional fields', () => {
    const result = parseChatCompletionRequest({
      model: 'm',
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'system', content: [{ type: 'text', text: 'sys' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'look' },
            { type: 'image_url', image_url: { url: 'data:,' } },
          ],
        },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: '42' },
      ],
      max_tokens: 100,
      max_completion_tokens: 50,
      temperature: 0.7,
      top_p: 1,
      n: 1,
      stop: ['\n'],
      stream: true,
      stream_options: { include_usage: true },
      user: 'u1',
      seed: 7,
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
      tool_choice: 'auto',
      response_format: { type: 'json_object' },
      logprobs: true,
      top_logprobs: 3,
      presence_penalty: -1,
      frequency_penalty: 2,
      logit_bias: { '50256': -100 },
    });
    expect(result).toMatchObject({ ok: true });
  });

  it('accepts null for optional fields, as several clients send', () => {
    const result = parseChatCompletionRequest(chat({ temperature: null, max_tokens: null, stream: null, stream_options: null, n: null, stop: null }));
    expect(result.ok).toBe(true);
  });

  const invalid: [string, Record<string, unknown>, string | null, string][] = [
    ['model missing', { messages: [{ role: 'user', content: MARKER }] }, 'model', 'missing_required_parameter'],
    ['model not a string', chat({ model: 42 }), 'model', 'invalid_type'],
    ['model empty', chat({ model: '' }), 'model', 'invalid_value'],
    ['messages missing', { model: 'm', user: MARKER }, 'messages', 'missing_required_parameter'],
    ['messages empty', chat({ messages: [] }), 'messages', 'invalid_value'],
    ['messages not an array', chat({ messages: MARKER }), 'messages', 'invalid_type'],
    ['unknown role', chat({ messages: [{ role: MARKER, content: MARKER }] }), 'messages[0].role', 'invalid_value'],
    ['role missing', chat({ messages: [{ role: 'user', content: 'a' }, { content: MARKER }] }), 'messages[1].role', 'missing_required_parameter'],
    ['content a number', chat({ messages: [{ role: 'user', content: 42 }] }), 'messages[0].content', 'invalid_value'],
    ['user content missing', chat({ messages: [{ role: 'user', name: MARKER }] }), 'messages[0].content', 'missing_required_parameter'],
    [
      'text part without text',
      chat({ messages: [{ role: 'user', content: [{ type: 'text', txt: MARKER }] }] }),
      'messages[0].content[0].text',
      'missing_required_parameter',
    ],
    [
      'text part with non-string text',
      chat({
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: MARKER },
              { type: 'text', text: 5 },
            ],
          },
        ],
      }),
      'messages[0].content[1].text',
      'invalid_type',
    ],
    ['tool message without tool_call_id', chat({ messages: [{ role: 'tool', content: MARKER }] }), 'messages[0].tool_call_id', 'missing_required_parameter'],
    ['max_tokens zero', chat({ max_tokens: 0 }), 'max_tokens', 'invalid_value'],
    ['max_tokens negative', chat({ max_tokens: -5 }), 'max_tokens', 'invalid_value'],
    ['max_tokens fractional', chat({ max_tokens: 1.5 }), 'max_tokens', 'invalid_type'],
    ['max_tokens a string', chat({ max_tokens: MARKER }), 'max_tokens', 'invalid_type'],
    ['max_completion_tokens zero', chat({ max_completion_tokens: 0 }), 'max_completion_tokens', 'invalid_value'],
    ['n above 1', chat({ n: 2 }), 'n', 'unsupported_value'],
    ['stream not a boolean', chat({ stream: 'yes' }), 'stream', 'invalid_type'],
    ['stream_options without stream', chat({ stream_options: { include_usage: true } }), 'stream_options', 'invalid_value'],
    ['include_usage not a boolean', chat({ stream: true, stream_options: { include_usage: MARKER } }), 'stream_options.include_usage', 'invalid_type'],
    ['temperature above 2', chat({ temperature: 3 }), 'temperature', 'invalid_value'],
    ['function tool without function', chat({ tools: [{ type: 'function', description: MARKER }] }), 'tools[0].function', 'missing_required_parameter'],
    [
      'logit_bias value not a number: the key is client text, so the path stops before it',
      chat({ logit_bias: { [`${MARKER} key`]: 'x' } }),
      'logit_bias',
      'invalid_type',
    ],
  ];

  it.each(invalid)('%s: 400 naming the param, without echoing the value', (_name, body, param, code) => {
    const error = refusal(parseChatCompletionRequest(body));
    expect(error.status).toBe(400);
    expect(error.type).toBe('invalid_request_error');
    expect(error.param).toBe(param);
    expect(error.code).toBe(code);
    expect(JSON.stringify(error.toBody())).not.toContain(MARKER);
    expect(error.message).toMatch(/\S/);
  });

  it('says the body could not be parsed when there is none (not JSON)', () => {
    const error = refusal(parseChatCompletionRequest(undefined));
    expect(error).toMatchObject({ status: 400, code: 'invalid_json', param: null });
  });

  it('refuses a body that is not an object', () => {
    expect(refusal(parseChatCompletionRequest([MARKER]))).toMatchObject({ status: 400, code: 'invalid_type', param: null });
    expect(JSON.stringify(refusal(parseChatCompletionRequest(MARKER)).toBody())).not.toContain(MARKER);
  });
});

describe('completion requests', () => {
  it.each([
    ['a string', MARKER],
    ['strings', ['a', 'b']],
    ['token ids', [1, 2, 3]],
    ['token id arrays', [[1], [2, 3]]],
  ])('accepts a prompt of %s', (_n, prompt) => {
    expect(parseCompletionRequest({ model: 'm', prompt, max_tokens: 5, echo: false, suffix: 'x', logprobs: 2 })).toMatchObject({ ok: true });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['prompt missing', { model: 'm', user: MARKER }, 'prompt'],
    ['prompt empty array', { model: 'm', prompt: [] }, 'prompt'],
    ['prompt mixed', { model: 'm', prompt: [1, MARKER] }, 'prompt'],
    ['best_of above 1', { model: 'm', prompt: MARKER, best_of: 3 }, 'best_of'],
    ['n zero', { model: 'm', prompt: MARKER, n: 0 }, 'n'],
    ['logprobs above 5', { model: 'm', prompt: MARKER, logprobs: 6 }, 'logprobs'],
    ['stream_options without stream', { model: 'm', prompt: MARKER, stream: false, stream_options: {} }, 'stream_options'],
  ])('%s: 400 naming the param', (_name, body, param) => {
    const error = refusal(parseCompletionRequest(body));
    expect(error).toMatchObject({ status: 400, param });
    expect(JSON.stringify(error.toBody())).not.toContain(MARKER);
  });

  it('counts prompts: each gets its own choice', () => {
    const count = (prompt: unknown) => {
      const r = parseCompletionRequest({ model: 'm', prompt });
      if (!r.ok) throw new Error('unexpected refusal');
      return completionPromptCount(r.body);
    };
    expect(count('a')).toBe(1);
    expect(count([1, 2, 3])).toBe(1);
    expect(count(['a', 'b', 'c'])).toBe(3);
    expect(count([[1], [2]])).toBe(2);
  });
});

describe('embedding requests', () => {
  it.each([
    ['a string', MARKER],
    ['strings', ['a', 'b']],
    ['token ids', [1, 2]],
    ['token id arrays', [[1], [2]]],
  ])('accepts input of %s', (_n, input) => {
    expect(parseEmbeddingRequest({ model: 'e', input, encoding_format: 'float', dimensions: 256, extra_vendor: 1 })).toMatchObject({
      ok: true,
      body: { extra_vendor: 1 },
    });
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['input missing', { model: 'e' }, 'input'],
    ['input empty string', { model: 'e', input: '' }, 'input'],
    ['input empty array', { model: 'e', input: [] }, 'input'],
    ['encoding_format unknown', { model: 'e', input: MARKER, encoding_format: MARKER }, 'encoding_format'],
    ['dimensions zero', { model: 'e', input: MARKER, dimensions: 0 }, 'dimensions'],
  ])('%s: 400 naming the param', (_name, body, param) => {
    const error = refusal(parseEmbeddingRequest(body));
    expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', param });
    expect(JSON.stringify(error.toBody())).not.toContain(MARKER);
  });
});

describe('what billing reads from a parsed body', () => {
  it('max_completion_tokens wins over max_tokens', () => {
    const r = parseChatCompletionRequest(chat({ max_tokens: 100, max_completion_tokens: 30 }));
    if (!r.ok) throw new Error('unexpected refusal');
    expect(requestedMaxOutputTokens(r.body)).toBe(30);
  });

  it('falls back to max_tokens, and to nothing', () => {
    const a = parseChatCompletionRequest(chat({ max_tokens: 100 }));
    const b = parseChatCompletionRequest(chat());
    if (!a.ok || !b.ok) throw new Error('unexpected refusal');
    expect(requestedMaxOutputTokens(a.body)).toBe(100);
    expect(requestedMaxOutputTokens(b.body)).toBeUndefined();
  });

  it('stream usage only when streaming and asked for', () => {
    const yes = parseChatCompletionRequest(chat({ stream: true, stream_options: { include_usage: true } }));
    const no = parseChatCompletionRequest(chat({ stream: true }));
    if (!yes.ok || !no.ok) throw new Error('unexpected refusal');
    expect(wantsStreamUsage(yes.body)).toBe(true);
    expect(wantsStreamUsage(no.body)).toBe(false);
  });
});

describe('formatParam', () => {
  it('writes paths as OpenAI does and stops at client-chosen keys', () => {
    expect(formatParam(['messages', 0, 'content', 2, 'text'])).toBe('messages[0].content[2].text');
    expect(formatParam(['logit_bias', 'some text key'])).toBe('logit_bias');
    expect(formatParam([])).toBeNull();
  });
});
