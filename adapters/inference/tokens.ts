import { countTokens } from 'gpt-tokenizer/encoding/cl100k_base';
// The pre-tokenizer's split, exactly as the encoder uses it (the package exports its cjs files).
import { CL100K_TOKEN_SPLIT_REGEX } from 'gpt-tokenizer/cjs/encodingParams/constants';

/**
 * Local token counts, for reservations (prompt) and for billing when an upstream reports no
 * usage (completion). Open-weight models use their own tokenizers, so these are estimates:
 * cl100k_base is close enough for Llama/Mistral/Qwen-style BPEs to size a reservation.
 *
 * gpt-tokenizer, not js-tiktoken: the same cl100k_base counts, about 8 times faster (measured:
 * 5.4 us against 45.7 us for a 96-character reply), and counting runs on every request.
 */

// Special-token strings in user text are plain text: nothing is disallowed, nothing is special.
const plainText = { allowedSpecial: new Set<string>(), disallowedSpecial: new Set<string>() };

/** Runs the encoder once now, so the first request does not pay for its lazy set-up. */
export function warmUpTokenizer(): void {
  countTextTokens('warm up');
}

/**
 * cl100k_base splits text with a regular expression and encodes each piece on its own, so a
 * text's count is the sum of its pieces' counts, and a piece's count never changes. Text repeats
 * its words: a piece counted once is looked up after, which makes counting about twice as fast
 * (measured on 4 KiB: 180 -> 74 us for a repeated word, 327 -> 158 us for English prose; the
 * encoder's own cache still merges byte pairs for every piece it sees).
 */
const pieceCounts = new Map<string, number>();
/** Bounded: forgotten whole when full, which costs one slower pass, not wrong counts. */
const MAX_CACHED_PIECES = 50_000;
/** Longer pieces (a run of symbols, a long number) are rare and counted each time. */
const MAX_CACHED_PIECE_LENGTH = 64;

/**
 * Longest text handed to the encoder at once. Its byte-pair merges cost time quadratic in a
 * piece's length, and one piece can be a whole prompt: a run of letters without a space (Chinese,
 * Japanese, a word repeated without spaces) or of one symbol is a single piece. Measured: 20,000
 * Chinese characters took 3.5 s, 80,000 took 55 s, all of it blocking every other request; the
 * body limit (8 MiB) allows millions. A longer piece is counted in parts of this length, each at
 * about 0.03-0.16 us a character (`npx tsx bench/tokens.ts`). The count is already an estimate
 * (open-weight models have their own tokenizers); a cut may move it by up to 3 tokens (measured
 * over runs of 15 scripts and symbols at every length to 1,600 characters; mostly 0 or 1, and
 * test/unit/inference/tokens.test.ts holds the bound), while every piece up to this length is exact.
 */
export const MAX_ENCODED_LENGTH = 256;

/** The texts countTextTokens hands to the encoder: the pre-tokenizer's pieces, long ones in parts. */
export function encodedPieces(text: string): string[] {
  const parts: string[] = [];
  forEachEncodedPiece(text, (part) => parts.push(part));
  return parts;
}

function forEachEncodedPiece(text: string, use: (part: string) => void): void {
  for (const [piece] of text.matchAll(CL100K_TOKEN_SPLIT_REGEX)) {
    if (piece.length <= MAX_ENCODED_LENGTH) {
      use(piece);
      continue;
    }
    for (let start = 0; start < piece.length; ) {
      let end = Math.min(start + MAX_ENCODED_LENGTH, piece.length);
      // Never between the two halves of a surrogate pair (an emoji, a rare CJK character).
      if (end < piece.length && isLowSurrogate(piece.charCodeAt(end))) end--;
      use(piece.slice(start, end));
      start = end;
    }
  }
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff;
}

function countPiece(piece: string): number {
  const known = pieceCounts.get(piece);
  if (known !== undefined) return known;
  const count = countTokens(piece, plainText);
  if (piece.length <= MAX_CACHED_PIECE_LENGTH) {
    if (pieceCounts.size >= MAX_CACHED_PIECES) pieceCounts.clear();
    // A match may be a slice of the whole text, which would keep that text alive: keep a copy.
    pieceCounts.set(Buffer.from(piece, 'utf16le').toString('utf16le'), count);
  }
  return count;
}

/** Tokens in a piece of text; special-token strings in user text count as plain text. */
export function countTextTokens(text: string): number {
  if (text.length === 0) return 0;
  let total = 0;
  forEachEncodedPiece(text, (part) => (total += countPiece(part)));
  return total;
}

export interface ChatMessageLike {
  role?: unknown;
  content?: unknown;
  name?: unknown;
  tool_calls?: unknown;
  [key: string]: unknown;
}

// OpenAI's published accounting for gpt-3.5/4-style chat: each message costs 3 tokens of
// framing, a name 1 more, and every reply is primed with 3.
const tokensPerMessage = 3;
const tokensPerName = 1;
const replyPriming = 3;

/** Prompt tokens of a chat request's messages, roughly as OpenAI counts them. */
export function countChatPromptTokens(messages: readonly ChatMessageLike[]): number {
  let total = replyPriming;
  for (const message of messages) {
    total += tokensPerMessage;
    for (const [key, value] of Object.entries(message)) {
      if (key === 'name' && typeof value === 'string') total += tokensPerName;
      total += countValueTokens(value);
    }
  }
  return total;
}

/** Prompt tokens of a completions request: a string or a batch of strings. */
export function countCompletionPromptTokens(prompt: string | readonly string[] | readonly number[] | unknown): number {
  return countInputTokens(prompt);
}

/** Input tokens of an embeddings request: a string, strings, or pre-tokenised arrays. */
export function countEmbeddingInputTokens(input: string | readonly string[] | unknown): number {
  return countInputTokens(input);
}

function countInputTokens(input: unknown): number {
  if (typeof input === 'string') return countTextTokens(input);
  if (Array.isArray(input)) {
    // An array of token ids is already tokenised; an array of those is a batch.
    if (input.every((item) => typeof item === 'number')) return input.length;
    return input.reduce<number>((sum, item) => sum + countInputTokens(item), 0);
  }
  return 0;
}

// Content may be a string or an array of parts ({type:'text', text}); tool calls carry JSON
// arguments. Images and other non-text parts are not counted here.
function countValueTokens(value: unknown): number {
  if (typeof value === 'string') return countTextTokens(value);
  if (Array.isArray(value)) return value.reduce<number>((sum, item) => sum + countValueTokens(item), 0);
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    if (record.type === 'image_url' || record.type === 'input_audio') return 0;
    let sum = 0;
    for (const [key, inner] of Object.entries(record)) {
      if (key === 'type' || key === 'id') continue;
      sum += countValueTokens(inner);
    }
    return sum;
  }
  return 0;
}

/**
 * Counts the tokens of text that arrives in pieces (a stream's deltas) while holding only a few
 * KiB of it, whatever the answer's length: what has piled up is counted at a space that follows a
 * non-space (a place where cl100k's pre-tokenizer splits anyway, so the sum equals counting the
 * whole text) and dropped, the rest kept for the next piece. A window with no such space is cut
 * between encoder parts instead, as countTextTokens cuts a long piece.
 */
export class StreamingTokenCounter {
  private tail = '';
  /** Pieces added since the last compact(): they may be slices of larger strings. */
  private fresh = '';
  private counted = 0;

  constructor(private readonly holdChars = 4_096) {}

  add(piece: string): void {
    if (piece.length === 0) return;
    this.fresh += piece;
    if (this.tail.length + this.fresh.length < this.holdChars) return;
    this.tail += this.fresh;
    this.fresh = '';
    for (let i = this.tail.length - 1; i > 0; i--) {
      if (this.tail.charCodeAt(i) === 0x20 && !/\s/.test(this.tail[i - 1]!)) {
        this.counted += countTextTokens(this.tail.slice(0, i));
        this.tail = this.tail.slice(i);
        return;
      }
    }
    // No such space in the whole window (Chinese, Japanese, Thai, a long run of one symbol):
    // counted up to a whole number of encoder parts (MAX_ENCODED_LENGTH), as countTextTokens cuts
    // a long piece, and dropped. Without this the window grew with the answer and each piece
    // rescanned it: 20,000 Chinese characters streamed cost 4 s.
    let cut = this.tail.length - (this.tail.length % MAX_ENCODED_LENGTH);
    if (isLowSurrogate(this.tail.charCodeAt(cut))) cut--;
    this.counted += countTextTokens(this.tail.slice(0, cut));
    this.tail = this.tail.slice(cut);
  }

  /**
   * Copies the pieces added since the last call into a string of their own. A piece may be a
   * slice of a larger string (an upstream read the relay cut it from without parsing), and a slice
   * keeps all of its source alive: the relay compacts once per read, so the counter holds its few
   * KiB of text and nothing more.
   */
  compact(): void {
    if (this.fresh.length === 0) return;
    this.tail += Buffer.from(this.fresh, 'utf16le').toString('utf16le');
    this.fresh = '';
  }

  /** Tokens in everything added so far. */
  total(): number {
    return this.counted + countTextTokens(this.tail + this.fresh);
  }
}
