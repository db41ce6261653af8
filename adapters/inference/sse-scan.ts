/**
 * A cheap look at one SSE event's data (a chat or completion chunk) that decides whether the relay
 * must JSON.parse it, and when not, finds the text to count without parsing.
 *
 * Only a few events matter to billing: the one carrying `usage`, the one with a non-null
 * `finish_reason`, an `error`. Every other chunk is relayed as it came; its text is read straight
 * from the one `"content"` (or `"text"`) string it carries.
 *
 * The scan walks the chunk's string tokens from quote to closing quote (a quote preceded by an odd
 * number of backslashes is inside the string), so it is never out of step with the JSON: a content
 * text holding the characters `"usage":` is inside a string token (escaped as `\"usage\":`) and is
 * never taken for a key. A string token followed by a colon is a key. Anything the fast reading is
 * not sure of (tool calls, reasoning text, several choices, logprobs, the model to rename in an odd
 * place) goes to the full parse: the fast path is an optimisation, never a different answer.
 */

export type ScanResult =
  /** The full JSON.parse is needed (usage, finish_reason, error, or a shape not read here). */
  | { readonly kind: 'parse' }
  /** Not a JSON object: nothing to relay or count, as with a parse failure. */
  | { readonly kind: 'skip' }
  /**
   * Relay as is (or with the model renamed: `data` is what to send). `text` is the generated text
   * to count ('' when none).
   */
  | {
      readonly kind: 'plain';
      readonly data: string;
      readonly text: string;
      /** Where the content string's opening and closing quotes are in the upstream's data, if any. */
      readonly textQuotes?: readonly [number, number];
      /** Where the model's value (quotes included) is in the upstream's data, if renamed. */
      readonly modelSpan?: readonly [number, number];
    };

const parse: ScanResult = { kind: 'parse' };
const skip: ScanResult = { kind: 'skip' };
/**
 * Reads one event's data. `publicModel`: when set, the chunk's top-level `model` string is
 * replaced by it (in `data` of the result).
 */
export function scanChunk(data: string, publicModel?: string): ScanResult {
  if (!isObjectText(data)) return skip;
  let textAt = -1;
  let textKeys = 0;
  let textIsContent = false;
  let deltas = 0;
  let choices = 0;
  let modelAt = -1;
  let modelKeys = 0;
  // Walk the string tokens, quote to quote: each is a key when a colon follows it, else a value.
  let open = data.indexOf('"');
  while (open !== -1) {
    const close = stringEnd(data, open);
    if (close === -1) return parse;
    let next = close + 1;
    while (isSpace(data.charCodeAt(next))) next++;
    if (data.charCodeAt(next) !== 0x3a) {
      open = data.indexOf('"', close + 1);
      continue;
    }
    // A key: `name` is open+1 .. close; its value starts after the colon and white space.
    next++;
    while (isSpace(data.charCodeAt(next))) next++;
    const at = open + 1;
    switch (close - at) {
      case 4:
        if (data.startsWith('text', at)) {
          textKeys++;
          textAt = next;
          textIsContent = false;
        }
        break;
      case 5:
        if (data.startsWith('usage', at) || data.startsWith('error', at)) {
          // `"usage":null`: OpenAI sends it on every chunk when usage is asked. An error is read whole.
          if (data.charCodeAt(at) === 0x65 || !isNull(data, next)) return parse;
        } else if (data.startsWith('delta', at)) deltas++;
        else if (data.startsWith('model', at)) {
          modelKeys++;
          modelAt = next;
        }
        break;
      case 7:
        if (data.startsWith('content', at)) {
          textKeys++;
          textAt = next;
          textIsContent = true;
        } else if (data.startsWith('choices', at)) choices++;
        break;
      case 8:
        if (data.startsWith('logprobs', at) && !isNull(data, next)) return parse;
        break;
      case 10:
        if (data.startsWith('tool_calls', at)) return parse;
        break;
      case 13:
        // `"finish_reason":null` on every chunk before the last.
        if (data.startsWith('finish_reason', at) && !isNull(data, next)) return parse;
        break;
      case 17:
        if (data.startsWith('reasoning_content', at)) return parse;
        break;
    }
    open = data.indexOf('"', next);
  }
  // One choice, at most one place text can be: otherwise the full parse decides what counts.
  if (choices > 1 || deltas > 1 || textKeys > 1) return parse;
  // A chat chunk's text is its delta's content; a completion chunk's is its choice's text.
  if (textKeys === 1 && (textIsContent ? deltas !== 1 : deltas !== 0)) return parse;

  let text = '';
  let textQuotes: [number, number] | undefined;
  if (textKeys === 1 && !isNull(data, textAt)) {
    if (data.charCodeAt(textAt) !== 0x22) return parse;
    const close = stringEnd(data, textAt);
    if (close === -1) return parse;
    const read = decodeString(data, textAt, close);
    if (read === undefined) return parse;
    text = read;
    textQuotes = [textAt, close];
  }

  if (publicModel === undefined || modelKeys === 0) return { kind: 'plain', data, text, ...(textQuotes ? { textQuotes } : {}) };
  // The model to rename: one `"model":"..."` without escapes, else the full parse does it.
  if (modelKeys > 1 || data.charCodeAt(modelAt) !== 0x22) return parse;
  const end = data.indexOf('"', modelAt + 1);
  const backslash = data.indexOf('\\', modelAt + 1);
  if (end === -1 || (backslash !== -1 && backslash < end)) return parse;
  return {
    kind: 'plain',
    data: data.slice(0, modelAt) + JSON.stringify(publicModel) + data.slice(end + 1),
    text,
    ...(textQuotes ? { textQuotes } : {}),
    modelSpan: [modelAt, end],
  };
}

/** The index of the quote that closes the JSON string opened at `open`, or -1. */
function stringEnd(data: string, open: number): number {
  let close = data.indexOf('"', open + 1);
  while (close !== -1) {
    // Escaped when an odd number of backslashes precede it.
    let slashes = 0;
    while (data.charCodeAt(close - 1 - slashes) === 0x5c) slashes++;
    if (slashes % 2 === 0) return close;
    close = data.indexOf('"', close + 1);
  }
  return -1;
}

/** `{ ... }`, white space around: what a chunk looks like. Any other data is not relayed. */
function isObjectText(data: string): boolean {
  let start = 0;
  let end = data.length - 1;
  while (start <= end && isSpace(data.charCodeAt(start))) start++;
  while (end > start && isSpace(data.charCodeAt(end))) end--;
  return data.charCodeAt(start) === 0x7b && data.charCodeAt(end) === 0x7d;
}

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

function isNull(data: string, at: number): boolean {
  return data.startsWith('null', at);
}

/** The JSON string literal from quote `open` to quote `close`, decoded; undefined if invalid. */
function decodeString(data: string, open: number, close: number): string | undefined {
  const backslash = data.indexOf('\\', open + 1);
  if (backslash === -1 || backslash > close) return data.slice(open + 1, close);
  try {
    return JSON.parse(data.slice(open, close + 1)) as string;
  } catch {
    return undefined;
  }
}

/**
 * scanChunk with a memory of the last chunk's shape. A stream's chunks differ only in their text:
 * the same bytes before the content string and the same after it. When a chunk has the remembered
 * bytes before and after, and one string literal exactly between them, it reads as the remembered
 * one did (the same keys, the same nulls) with only the text changed: two comparisons and a
 * search for the closing quote instead of walking every key. Holds two short strings per stream.
 */
export class ChunkScanner {
  private prefix = '';
  private suffix = '';
  /** What goes out in place of `prefix` (the model renamed in it), when different. */
  private outPrefix = '';

  constructor(private readonly publicModel?: string) {}

  scan(data: string): ScanResult {
    const { prefix, suffix } = this;
    // slice and === (a memory compare) rather than startsWith, which V8 runs character by character
    if (
      prefix.length > 0 &&
      data.length >= prefix.length + suffix.length &&
      data.slice(0, prefix.length) === prefix &&
      data.slice(data.length - suffix.length) === suffix
    ) {
      const open = prefix.length - 1;
      const close = data.length - suffix.length;
      if (stringEnd(data, open) === close) {
        const text = decodeString(data, open, close);
        if (text !== undefined) {
          const out = this.outPrefix === prefix ? data : this.outPrefix + data.slice(prefix.length);
          return { kind: 'plain', data: out, text };
        }
      }
    }
    const result = scanChunk(data, this.publicModel);
    if (result.kind === 'plain' && result.textQuotes) this.remember(data, result.textQuotes, result.modelSpan);
    return result;
  }

  private remember(data: string, [open, close]: readonly [number, number], modelSpan?: readonly [number, number]): void {
    // The model renamed after the text: not remembered, every such chunk is walked.
    if (modelSpan && modelSpan[0] > open) {
      this.prefix = '';
      return;
    }
    // Copies, not slices: a slice would keep the whole upstream read it came from alive.
    this.prefix = copy(data.slice(0, open + 1));
    this.suffix = copy(data.slice(close));
    this.outPrefix = modelSpan
      ? copy(this.prefix.slice(0, modelSpan[0]) + JSON.stringify(this.publicModel) + this.prefix.slice(modelSpan[1] + 1))
      : this.prefix;
  }
}

function copy(text: string): string {
  return Buffer.from(text, 'utf16le').toString('utf16le');
}
