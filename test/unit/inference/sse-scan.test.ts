import fc from 'fast-check';
import type { StreamSink } from '../../../adapters/inference/sink';
import { ChunkScanner, scanChunk } from '../../../adapters/inference/sse-scan';
import { relayStream, type RelayResult } from '../../../adapters/inference/stream';
import { countTextTokens } from '../../../adapters/inference/tokens';
import { collectMessageText, isRecord } from '../../../adapters/inference/upstream-payload';

const chunk = (content: string | null, extra: Record<string, unknown> = {}, finish: string | null = null) =>
  JSON.stringify({
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 7,
    model: 'up-model',
    choices: [{ index: 0, delta: { content }, finish_reason: finish }],
    ...extra,
  });

/** The text the full parse counts in a chunk (what the relay did for every chunk before the scan). */
function parsedText(data: string): string {
  const value: unknown = JSON.parse(data);
  if (!isRecord(value) || !Array.isArray(value.choices)) return '';
  const parts: string[] = [];
  for (const choice of value.choices.filter(isRecord)) {
    if (typeof choice.text === 'string') parts.push(choice.text);
    else if (isRecord(choice.delta)) collectMessageText(choice.delta, parts);
  }
  return parts.join('');
}

describe('scanChunk: which chunks must be parsed', () => {
  test('a text-only chunk is relayed unparsed, its text read from the content string', () => {
    const data = chunk('Hello there');
    expect(scanChunk(data)).toMatchObject({ kind: 'plain', data, text: 'Hello there' });
  });

  test('usage, a finish_reason or an error send the chunk to the full parse; their null values do not', () => {
    expect(scanChunk(chunk('x', { usage: { prompt_tokens: 1, completion_tokens: 2 } })).kind).toBe('parse');
    expect(scanChunk(JSON.stringify({ id: 'c', choices: [], usage: { prompt_tokens: 1 } })).kind).toBe('parse');
    expect(scanChunk(chunk('', {}, 'stop')).kind).toBe('parse');
    expect(scanChunk(JSON.stringify({ error: { message: 'boom', code: 500 } })).kind).toBe('parse');
    // OpenAI sends "usage":null on every chunk when usage is asked; vLLM "logprobs":null
    expect(scanChunk(chunk('x', { usage: null, logprobs: null }))).toMatchObject({ kind: 'plain', text: 'x' });
    // white space around the colon is still a key
    expect(scanChunk('{"choices":[{"delta":{"content":"a"},"finish_reason" : "stop"}]}').kind).toBe('parse');
    expect(scanChunk('{"choices":[],"usage"\t:\n{"prompt_tokens":3}}').kind).toBe('parse');
  });

  test('"usage", "error" or "finish_reason" inside the text are escaped and never mistaken for keys', () => {
    for (const text of ['"usage": {"prompt_tokens": 1}', 'an "error": here', '"finish_reason":"stop"', 'ends with "usage', '\\"usage\\":{', 'x\\']) {
      const data = chunk(text);
      expect(data).toContain(JSON.stringify(text).slice(1, -1));
      expect(scanChunk(data)).toMatchObject({ kind: 'plain', text });
    }
  });

  test('tool calls, reasoning text, several choices, logprobs and completions are read as the full parse reads them', () => {
    const samples = [
      JSON.stringify({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, function: { name: 'f', arguments: '{"a":' } }] } }] }),
      JSON.stringify({ choices: [{ index: 0, delta: { reasoning_content: 'think', content: null } }] }),
      JSON.stringify({
        choices: [
          { index: 0, delta: { content: 'a' } },
          { index: 1, delta: { content: 'b' } },
        ],
      }),
      JSON.stringify({ choices: [{ index: 0, delta: { content: 'a' }, logprobs: { content: [{ token: 'a', logprob: 0 }] } }] }),
      JSON.stringify({ choices: [{ index: 0, text: 'completion text', logprobs: null, finish_reason: null }] }),
      JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] }),
      JSON.stringify({ choices: [{ index: 0, delta: { role: 'assistant' } }] }),
      JSON.stringify({ content: 'top-level, not a delta', choices: [] }),
    ];
    for (const data of samples) {
      const result = scanChunk(data);
      if (result.kind === 'plain') expect(result.text).toBe(parsedText(data));
      else expect(result.kind).toBe('parse');
    }
  });

  test('data that is not a JSON object is skipped, as a failed parse was', () => {
    for (const data of ['keep-alive', '', '  ', '[1,2]', '"text"', '42', 'null']) expect(scanChunk(data).kind).toBe('skip');
  });

  test('the public model name replaces the upstream one, and nothing else changes', () => {
    const data = chunk('hi "model": there');
    const result = scanChunk(data, 'public/model');
    expect(result.kind).toBe('plain');
    if (result.kind !== 'plain') return;
    expect(JSON.parse(result.data)).toEqual({ ...JSON.parse(data), model: 'public/model' });
  });

  test('fast-check: for any text and shape, the scan counts what the full parse counts, or asks for it', () => {
    const text = fc.string({ unit: 'grapheme', maxLength: 40 });
    fc.assert(
      fc.property(
        fc.oneof(text, fc.constantFrom('"usage":', '\\', '"', '\\"error\\":1', '}]}', 'null')),
        fc.constantFrom({}, { usage: null }, { logprobs: null }, { system_fingerprint: 'fp' }),
        fc.boolean(),
        (content, extra, role) => {
          const data = JSON.stringify({
            id: 'x',
            model: 'm',
            choices: [{ index: 0, delta: { ...(role ? { role: 'assistant' } : {}), content }, finish_reason: null }],
            ...extra,
          });
          const scanner = new ChunkScanner('pub');
          // twice: the second read comes from the remembered shape
          for (const result of [scanner.scan(data), scanner.scan(data)]) {
            expect(result.kind).toBe('plain');
            if (result.kind !== 'plain') return;
            expect(result.text).toBe(parsedText(data));
            expect(JSON.parse(result.data)).toEqual({ ...JSON.parse(data), model: 'pub' });
          }
          expect(scanChunk(data)).toMatchObject({ kind: 'plain', data, text: parsedText(data) });
        },
      ),
      { seed: 17, numRuns: 500 },
    );
  });
});

describe('ChunkScanner: the remembered shape', () => {
  test('a chunk of the same shape is read from the shape; a different one is scanned whole', () => {
    const scanner = new ChunkScanner();
    expect(scanner.scan(chunk('one'))).toMatchObject({ kind: 'plain', text: 'one' });
    expect(scanner.scan(chunk('two "quoted" \\ \n'))).toMatchObject({ kind: 'plain', text: 'two "quoted" \\ \n' });
    // same prefix, but a finish_reason after the text: not the remembered shape, parsed
    expect(scanner.scan(chunk('', {}, 'stop')).kind).toBe('parse');
    expect(scanner.scan(chunk('x', { usage: { prompt_tokens: 1, completion_tokens: 1 } })).kind).toBe('parse');
    // a string that closes early cannot match the shape: `"},"x":{"usage":{...` would otherwise hide a key
    const base = chunk('a');
    const at = base.indexOf('"a"') + 2;
    const sneaky = `${base.slice(0, at)}"},"usage":{"prompt_tokens":1},"z":{"b":"x${base.slice(at)}`;
    expect(() => JSON.parse(sneaky)).not.toThrow();
    expect(scanner.scan(sneaky).kind).toBe('parse');
  });

  test('the renamed model is kept in the remembered shape', () => {
    const scanner = new ChunkScanner('public');
    for (const text of ['a', 'b', 'c']) {
      const result = scanner.scan(chunk(text));
      expect(result.kind).toBe('plain');
      if (result.kind === 'plain') expect(JSON.parse(result.data)).toMatchObject({ model: 'public', choices: [{ delta: { content: text } }] });
    }
  });
});

// --- the relay over the scan -------------------------------------------------------------------

function collectingSink(out: string[]): StreamSink {
  return { open: () => {}, write: (c) => void out.push(c), waitForDrain: async () => {}, cork: () => {}, flush: () => {} };
}

/** Relays the upstream's reads, as bytes, into a collecting sink. */
async function relayReads(reads: readonly Buffer[], options: { clientWantsUsage?: boolean; publicModel?: string } = {}) {
  const out: string[] = [];
  async function* body() {
    yield* reads;
  }
  const result: RelayResult = await relayStream({
    body: body(),
    sink: collectingSink(out),
    clientWantsUsage: options.clientWantsUsage ?? false,
    operation: 'chat',
    publicModel: options.publicModel,
    now: () => 5,
    countPrompt: () => 9,
  });
  return { result, out: out.join('') };
}

function relay(reads: readonly string[], options: Parameters<typeof relayReads>[1] = {}) {
  return relayReads(
    reads.map((read) => Buffer.from(read)),
    options,
  );
}

/** The text's bytes in two reads, cut at byte `at` (inside a character, a line end or a key alike). */
function relaySplitBytes(text: string, at: number, options: Parameters<typeof relayReads>[1] = {}) {
  const bytes = Buffer.from(text);
  return relayReads([bytes.subarray(0, at), bytes.subarray(at)], options);
}

const answer = ['Héllo', ' wörld 🌍', ' "usage": {} inside', ' done'];
const stream = (eol: string) =>
  [
    `: keep-alive comment${eol}${eol}`,
    ...answer.map((text) => `data: ${chunk(text, { usage: null })}${eol}${eol}`),
    `data: ${chunk('', { usage: null }, 'stop')}${eol}${eol}`,
    `:${eol}${eol}`,
    `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 7, model: 'up-model', choices: [], usage: { prompt_tokens: 11, completion_tokens: 22 } })}${eol}${eol}`,
    `data: [DONE]${eol}${eol}`,
  ].join('');

describe('relayStream over the scan', () => {
  test.each([
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ])('an event split across two reads at every byte offset (%s line ends) relays and bills the same', async (_name, eol) => {
    const text = stream(eol);
    const whole = await relay([text]);
    expect(whole.result).toMatchObject({ kind: 'completed', finishReason: 'stop', upstreamUsage: { promptTokens: 11, completionTokens: 22 } });
    expect(whole.result.countTokens()).toBe(countTextTokens(answer.join('')));
    // relayed as the upstream sent each chunk; the usage chunk hidden (not asked), [DONE] passed
    const expected = answer.map((t) => `data: ${chunk(t, { usage: null })}\n\n`).join('') + `data: ${chunk('', { usage: null }, 'stop')}\n\ndata: [DONE]\n\n`;
    expect(whole.out).toBe(expected);
    for (let at = 0; at <= Buffer.byteLength(text); at++) {
      const split = await relaySplitBytes(text, at);
      expect({ at, out: split.out }).toEqual({ at, out: expected });
      expect(split.result.kind).toBe('completed');
      expect(split.result.upstreamUsage).toEqual({ promptTokens: 11, completionTokens: 22 });
      expect(split.result.countTokens()).toBe(countTextTokens(answer.join('')));
    }
  });

  test('without usage from the upstream, the text relayed unparsed is counted, and a client that asked gets our usage chunk', async () => {
    const reads = [...answer.map((t) => `data: ${chunk(t)}\n\n`), `data: ${chunk('', {}, 'stop')}\n\n`, 'data: [DONE]\n\n'];
    const { result, out } = await relay(reads, { clientWantsUsage: true, publicModel: 'public' });
    expect(result.upstreamUsage).toBeUndefined();
    expect(result.countTokens()).toBe(countTextTokens(answer.join('')));
    expect(result.firstTokenAt).toBe(5);
    const events = out
      .split('\n\n')
      .filter((e) => e.startsWith('data: {'))
      .map((e) => JSON.parse(e.slice(6)));
    expect(events.every((e) => e.model === 'public')).toBe(true);
    const usage = events.at(-1);
    expect(usage).toMatchObject({ id: 'c1', object: 'chat.completion.chunk', created: 7, model: 'public', choices: [] });
    expect(usage.usage).toEqual({ prompt_tokens: 9, completion_tokens: countTextTokens(answer.join('')), total_tokens: 9 + countTextTokens(answer.join('')) });
    expect(out.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  test('an error event after text relayed unparsed ends the stream in our words, with the text counted', async () => {
    const reads = [`data: ${chunk('partial answer')}\n\n`, `data: ${JSON.stringify({ error: { message: 'the prompt was: secret', code: 500 } })}\n\n`];
    const { result, out } = await relay(reads);
    expect(result.kind).toBe('upstream_error');
    expect(result.countTokens()).toBe(countTextTokens('partial answer'));
    expect(out).not.toContain('secret');
    expect(out).toContain('The upstream reported an error mid-stream.');
  });
});
