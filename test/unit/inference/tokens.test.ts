import fc from 'fast-check';
import { CL100K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/cjs/encodingParams/constants';
import { countTokens as encoderCountTokens } from 'gpt-tokenizer/encoding/cl100k_base';
import {
  countChatPromptTokens,
  countCompletionPromptTokens,
  countEmbeddingInputTokens,
  countTextTokens,
  encodedPieces,
  MAX_ENCODED_LENGTH,
  StreamingTokenCounter,
} from '../../../adapters/inference/tokens';

// Reference counts are cl100k_base's, as OpenAI's tiktoken gives them.

test('text is counted with cl100k_base', () => {
  expect(countTextTokens('')).toBe(0);
  expect(countTextTokens('hello world')).toBe(2);
  expect(countTextTokens('The quick brown fox jumps over the lazy dog')).toBe(9);
});

test('special-token strings in user text are counted as plain text, not rejected', () => {
  expect(() => countTextTokens('<|endoftext|>')).not.toThrow();
  expect(countTextTokens('<|endoftext|>')).toBeGreaterThan(1);
});

test('chat messages cost 3 tokens each, a name 1 more, and the reply is primed with 3', () => {
  // "user" is 1 token, "hello world" 2: 3 + 1 + 2, plus 3 for the reply.
  expect(countChatPromptTokens([{ role: 'user', content: 'hello world' }])).toBe(9);
  expect(countChatPromptTokens([{ role: 'user', content: 'hello world', name: 'bob' }])).toBe(9 + 1 + countTextTokens('bob'));
  expect(countChatPromptTokens([])).toBe(3);
  const two = countChatPromptTokens([
    { role: 'system', content: 'hello world' },
    { role: 'user', content: 'hello world' },
  ]);
  expect(two).toBe(3 + (3 + 1 + 2) * 2);
});

test('content parts count their text and skip images', () => {
  const parts = countChatPromptTokens([
    {
      role: 'user',
      content: [
        { type: 'text', text: 'hello world' },
        { type: 'image_url', image_url: { url: 'https://example.com/a-very-long-image-url.png' } },
      ],
    },
  ]);
  expect(parts).toBe(9);
});

test('completion prompts: a string, a batch of strings, or token ids', () => {
  expect(countCompletionPromptTokens('hello world')).toBe(2);
  expect(countCompletionPromptTokens(['hello world', 'hello world'])).toBe(4);
  expect(countCompletionPromptTokens([101, 102, 103])).toBe(3);
  expect(countCompletionPromptTokens([[1, 2], [3]])).toBe(3);
  expect(countCompletionPromptTokens(undefined)).toBe(0);
});

test('embedding inputs: a string or a batch', () => {
  expect(countEmbeddingInputTokens('hello world')).toBe(2);
  expect(countEmbeddingInputTokens(['hello', 'world'])).toBe(2);
});

test('a stream counted piece by piece, holding only a few KiB, counts what the whole text counts', () => {
  const words = ['Hello', ' world', ',', ' the', '  double', '\n', 'new line', ' 12345', ' émigré', ' 東京', '\t tab', ' <|endoftext|>', '!!', '   ', 'x'];
  let whole = '';
  const counter = new StreamingTokenCounter(256);
  for (let i = 0; i < 5_000; i++) {
    const piece = words[(i * 7) % words.length]! + (i % 13 === 0 ? ' ' : '');
    whole += piece;
    counter.add(piece);
  }
  expect(whole.length).toBeGreaterThan(20_000);
  expect(counter.total()).toBe(countTextTokens(whole));
  // what it holds stays bounded by its window, not the text's length
  expect((counter as unknown as { tail: string }).tail.length).toBeLessThan(1_024);
});

describe('counting piece by piece, with counted pieces remembered, gives the encoder’s own count', () => {
  // The encoder itself, not through the piece cache.
  const plain = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
  const encoderCount = (text: string) => encoderCountTokens(text, plain);
  // What moves the pre-tokenizer's splits: spaces before and after, line ends, digit runs,
  // contractions, letters of every script, symbols, emoji, special-token strings.
  const pieces = [
    ' ',
    '  ',
    '\n',
    '\r\n',
    '\r',
    '\t',
    ' \n ',
    "'s",
    "'LL",
    "'ve",
    'a',
    'Hello',
    ' world',
    '123',
    '45678',
    'é',
    ' émigré',
    '東京',
    '🙂',
    '👩‍💻',
    '<|endoftext|>',
    '!!',
    '...',
    '-',
    '_x_',
    'ǅ',
    '\u00a0',
  ];
  const tricky = fc.array(fc.constantFrom(...pieces), { maxLength: 40 }).map((parts) => parts.join(''));

  test('for text made of the splits’ edge cases, and for any string', () => {
    fc.assert(
      fc.property(fc.oneof(tricky, fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ unit: 'binary', maxLength: 60 })), (text) => {
        // twice: the second time every piece comes from what the first remembered
        expect(countTextTokens(text)).toBe(encoderCount(text));
        expect(countTextTokens(text)).toBe(encoderCount(text));
      }),
      { numRuns: 2_000 },
    );
  });

  test('a piece too long to remember is counted all the same', () => {
    const long = `${'#'.repeat(200)} ${'9'.repeat(300)} ${'x'.repeat(250)}`;
    expect(countTextTokens(long)).toBe(encoderCount(long));
    expect(countTextTokens(long)).toBe(encoderCount(long));
  });
});

describe('a piece longer than the encoder is given at once is counted in parts, in time linear in its length', () => {
  const plain = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };
  const encoderCount = (text: string) => encoderCountTokens(text, plain);
  // One pre-tokenizer piece each, whatever their length: letters without a space, one symbol repeated.
  const runs = fc
    .constantFrom('a', 'Hello', '東京', '我们的模型', 'こんにちは', '🙂', '#', '=+', '\u00e9', 'x\u0301', 'Привет', 'สวัสดี', '안녕하세요')
    .chain((unit) => fc.integer({ min: 1, max: Math.floor(1_600 / unit.length) }).map((times) => unit.repeat(times)));
  const texts = fc.oneof(
    runs,
    fc.tuple(runs, fc.string({ unit: 'grapheme', maxLength: 40 }), runs).map((parts) => parts.join(' ')),
    fc.string({ unit: 'grapheme', maxLength: 2_000 }),
  );

  test('the parts are the text, none longer than MAX_ENCODED_LENGTH, no surrogate pair cut, and the count is theirs', () => {
    fc.assert(
      fc.property(texts, (text) => {
        const parts = [...encodedPieces(text)];
        expect(parts.join('')).toBe(text);
        for (const part of parts) {
          expect(part.length).toBeLessThanOrEqual(MAX_ENCODED_LENGTH);
          expect(/^[\udc00-\udfff]|[\ud800-\udbff]$/.test(part)).toBe(false);
        }
        expect(countTextTokens(text)).toBe(parts.reduce((sum, part) => sum + encoderCount(part), 0));
      }),
      { numRuns: 300 },
    );
  });

  // Measured over these runs at every length up to 1,600 characters: at most 3 tokens per cut
  // (Japanese kana), mostly 0 or 1.
  test('and it stays within 3 tokens per cut of the encoder counting each piece whole', () => {
    fc.assert(
      fc.property(runs, (text) => {
        const cuts = [...encodedPieces(text)].length - [...text.matchAll(CL100K_TOKEN_SPLIT_REGEX)].length;
        expect(Math.abs(countTextTokens(text) - encoderCount(text))).toBeLessThanOrEqual(3 * cuts);
      }),
      { numRuns: 200 },
    );
  });

  test('two million characters without a space are counted (they took hours when the encoder was given them whole)', () => {
    expect(countTextTokens('a'.repeat(2_000_000))).toBe(250_000);
    expect(countTextTokens('我'.repeat(1_000_000))).toBe(1_000_000);
  });

  test('a stream without spaces is counted window by window, holding a window, not the answer', () => {
    const sentence = '我们的模型在这里回答问题然后继续说下去';
    const whole = sentence.repeat(2_000);
    const counter = new StreamingTokenCounter();
    let largest = 0;
    for (let i = 0; i < whole.length; i += 3) {
      counter.add(whole.slice(i, i + 3));
      largest = Math.max(largest, (counter as unknown as { tail: string }).tail.length);
    }
    expect(whole.length).toBe(38_000);
    expect(largest).toBeLessThan(4_096 + MAX_ENCODED_LENGTH);
    // Each window is cut between encoder parts, as countTextTokens cuts the whole piece: the same count.
    expect(counter.total()).toBe(countTextTokens(whole));
  });
});
