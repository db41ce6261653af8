import { z } from 'zod';
import { type ApiError, type InvalidRequestCode, invalidRequest } from './errors';

/**
 * Request bodies of the three OpenAI endpoints Tollgate serves, as OpenAI's API reference
 * defines them. Unknown fields pass through untouched (`z.looseObject`): upstreams such as
 * vLLM accept vendor extensions (top_k, min_p, guided_json, ...) and we forward them.
 *
 * Validated strictly: what billing relies on (model, stream, stream_options, max_tokens /
 * max_completion_tokens, n, best_of, prompt and input shapes) and the types and OpenAI ranges
 * of the usual sampling fields, so a malformed request is refused before anything is reserved.
 *
 * `n` (and `best_of` for completions) must be 1 when given: the reservation estimate is one
 * completion per prompt, and several choices would multiply the cost beyond it.
 *
 * Every parameter is nullable as well as optional: several clients send `null` for "unset".
 */

const ROLES = ['system', 'user', 'assistant', 'tool', 'developer'] as const;

const positiveInt = z.int().min(1);
const nonNegativeInt = z.int().min(0);
const temperature = z.number().min(0).max(2);
const topP = z.number().min(0).max(1);
const penalty = z.number().min(-2).max(2);
const stop = z.union([z.string(), z.array(z.string())], { error: 'expected a string or an array of strings' });
const streamOptions = z.looseObject({ include_usage: z.boolean().nullish() });
const tokenIds = z.array(nonNegativeInt);

const contentPart = z.looseObject({ type: z.string(), text: z.string().optional() }).superRefine((part, ctx) => {
  if (part.type === 'text' && part.text === undefined) missing(ctx, ['text']);
});

const messageContent = z.union([z.string(), z.array(contentPart)], {
  error: 'expected a string or an array of content parts',
});

const message = z
  .looseObject({
    role: z.enum(ROLES),
    content: messageContent.nullish(),
    name: z.string().nullish(),
    tool_call_id: z.string().nullish(),
    tool_calls: z.array(z.looseObject({ id: z.string(), type: z.string() })).nullish(),
  })
  .superRefine((m, ctx) => {
    // An assistant turn may carry only tool calls; every other role must say something.
    if (m.role !== 'assistant' && (m.content === undefined || m.content === null)) missing(ctx, ['content']);
    if (m.role === 'tool' && (m.tool_call_id === undefined || m.tool_call_id === null)) missing(ctx, ['tool_call_id']);
  });

const tool = z
  .looseObject({
    type: z.string(),
    function: z
      .looseObject({
        name: z.string().min(1),
        description: z.string().nullish(),
        parameters: z.record(z.string(), z.unknown()).nullish(),
        strict: z.boolean().nullish(),
      })
      .optional(),
  })
  .superRefine((t, ctx) => {
    if (t.type === 'function' && t.function === undefined) missing(ctx, ['function']);
  });

const toolChoice = z.union([z.enum(['none', 'auto', 'required']), z.looseObject({ type: z.string() })], {
  error: "expected 'none', 'auto', 'required' or an object naming a tool",
});

/** Fields the three generating endpoints share. */
const sampling = {
  model: z.string().min(1),
  stream: z.boolean().nullish(),
  stream_options: streamOptions.nullish(),
  max_tokens: positiveInt.nullish(),
  n: z.number().nullish(),
  temperature: temperature.nullish(),
  top_p: topP.nullish(),
  presence_penalty: penalty.nullish(),
  frequency_penalty: penalty.nullish(),
  stop: stop.nullish(),
  seed: z.int().nullish(),
  user: z.string().nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
};

export const chatCompletionRequestSchema = z
  .looseObject({
    ...sampling,
    messages: z.array(message).min(1),
    max_completion_tokens: positiveInt.nullish(),
    tools: z.array(tool).nullish(),
    tool_choice: toolChoice.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    response_format: z.looseObject({ type: z.string() }).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: z.int().min(0).max(20).nullish(),
  })
  .superRefine((body, ctx) => {
    onlyOne(body.n, ['n'], ctx);
    streamOptionsNeedStream(body, ctx);
  });

export const completionRequestSchema = z
  .looseObject({
    ...sampling,
    prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds.min(1), z.array(tokenIds.min(1)).min(1)], {
      error: 'expected a string, an array of strings, an array of token ids or an array of token id arrays',
    }),
    best_of: z.number().nullish(),
    echo: z.boolean().nullish(),
    suffix: z.string().nullish(),
    logprobs: z.int().min(0).max(5).nullish(),
  })
  .superRefine((body, ctx) => {
    onlyOne(body.n, ['n'], ctx);
    onlyOne(body.best_of, ['best_of'], ctx);
    streamOptionsNeedStream(body, ctx);
  });

export const embeddingRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string().min(1), z.array(z.string().min(1)).min(1).max(2048), tokenIds.min(1), z.array(tokenIds.min(1)).min(1).max(2048)], {
    error: 'expected a non-empty string, an array of strings, an array of token ids or an array of token id arrays',
  }),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: positiveInt.nullish(),
  user: z.string().nullish(),
});

export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;
export type CompletionRequest = z.infer<typeof completionRequestSchema>;
export type EmbeddingRequest = z.infer<typeof embeddingRequestSchema>;
export type ChatMessage = ChatCompletionRequest['messages'][number];

export type ParsedRequest<T> = { readonly ok: true; readonly body: T } | { readonly ok: false; readonly error: ApiError };

export function parseChatCompletionRequest(body: unknown): ParsedRequest<ChatCompletionRequest> {
  return parseWith(chatCompletionRequestSchema, body);
}

export function parseCompletionRequest(body: unknown): ParsedRequest<CompletionRequest> {
  return parseWith(completionRequestSchema, body);
}

export function parseEmbeddingRequest(body: unknown): ParsedRequest<EmbeddingRequest> {
  return parseWith(embeddingRequestSchema, body);
}

/**
 * The output-token cap the client asked for. `max_completion_tokens` wins over the older
 * `max_tokens` when both are given, as in OpenAI and vLLM; forward the same number upstream.
 */
export function requestedMaxOutputTokens(body: ChatCompletionRequest | CompletionRequest): number | undefined {
  const fromCompletion = 'max_completion_tokens' in body ? body.max_completion_tokens : undefined;
  return (typeof fromCompletion === 'number' ? fromCompletion : undefined) ?? body.max_tokens ?? undefined;
}

/** Whether the client asked for the usage chunk at the end of a stream. */
export function wantsStreamUsage(body: ChatCompletionRequest | CompletionRequest): boolean {
  return body.stream === true && body.stream_options?.include_usage === true;
}

/** How many prompts a completions request carries: each one gets its own choice, and its own cost. */
export function completionPromptCount(body: CompletionRequest): number {
  const { prompt } = body;
  if (typeof prompt === 'string') return 1;
  return prompt.length > 0 && typeof prompt[0] === 'number' ? 1 : prompt.length;
}

// ---------------------------------------------------------------------------------------------

type Ctx = z.RefinementCtx;

function missing(ctx: Ctx, path: (string | number)[]): void {
  ctx.addIssue({ code: 'custom', path, message: 'missing', params: { missing: true } });
}

function onlyOne(value: number | null | undefined, path: string[], ctx: Ctx): void {
  if (value === undefined || value === null || value === 1) return;
  ctx.addIssue({
    code: 'custom',
    path,
    message: `Only ${path.join('.')}=1 is supported.`,
    params: { code: 'unsupported_value' satisfies InvalidRequestCode },
  });
}

function streamOptionsNeedStream(body: { stream?: boolean | null; stream_options?: unknown }, ctx: Ctx): void {
  if (body.stream_options !== undefined && body.stream_options !== null && body.stream !== true) {
    ctx.addIssue({
      code: 'custom',
      path: ['stream_options'],
      message: "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      params: { code: 'invalid_value' satisfies InvalidRequestCode },
    });
  }
}

function parseWith<T>(schema: z.ZodType<T>, body: unknown): ParsedRequest<T> {
  if (body === undefined) {
    return {
      ok: false,
      error: invalidRequest('We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.', null, 'invalid_json'),
    };
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return { ok: false, error: invalidRequest('The request body must be a JSON object.', null, 'invalid_type') };
  }
  const result = schema.safeParse(body);
  if (result.success) return { ok: true, body: result.data };
  return { ok: false, error: issueToError(result.error.issues[0]!, [], body) };
}

type Issue = z.core.$ZodIssue;
type PathKey = PropertyKey;

/**
 * One issue -> one 400 naming the parameter. The message is built only from the schema's
 * own words (expected types, allowed values, bounds), never from the input, so no prompt
 * text can come back in an error or reach a log through one.
 */
function issueToError(issue: Issue, prefix: readonly PathKey[], body: unknown): ApiError {
  const path = [...prefix, ...issue.path];

  // A union whose value had the right outer shape but a bad part inside: point at that part.
  if (issue.code === 'invalid_union') {
    const deeper = issue.errors.filter((branch) => branch.length > 0 && branch[0]!.path.length > 0);
    if (deeper.length === 1) return issueToError(deeper[0]![0]!, path, body);
  }

  const param = formatParam(path);
  const quoted = param === null ? 'the request body' : `'${param}'`;
  if (isMissing(body, path) || (issue.code === 'custom' && issue.params?.['missing'] === true)) {
    return invalidRequest(`Missing required parameter: ${quoted}.`, param, 'missing_required_parameter');
  }
  switch (issue.code) {
    case 'invalid_type':
      return invalidRequest(`Invalid type for ${quoted}: expected ${describeType(issue.expected)}.`, param, 'invalid_type');
    case 'invalid_value':
      return invalidRequest(`Invalid value for ${quoted}: expected one of ${issue.values.map(String).join(', ')}.`, param, 'invalid_value');
    case 'too_small':
      return invalidRequest(`Invalid value for ${quoted}: ${describeBound(issue.origin, 'at least', issue.minimum, issue.inclusive)}.`, param, 'invalid_value');
    case 'too_big':
      return invalidRequest(`Invalid value for ${quoted}: ${describeBound(issue.origin, 'at most', issue.maximum, issue.inclusive)}.`, param, 'invalid_value');
    case 'invalid_union':
      // The union's message is the schema's own `error` text (see messageContent, prompt, ...).
      return invalidRequest(`Invalid value for ${quoted}: ${issue.message}.`, param, 'invalid_value');
    case 'custom': {
      const code = issue.params?.['code'];
      return invalidRequest(issue.message, param, isInvalidRequestCode(code) ? code : 'invalid_value');
    }
    default:
      return invalidRequest(`Invalid value for ${quoted}.`, param, 'invalid_value');
  }
}

// Keys of records (logit_bias) and of free JSON are the client's text: a path stops before them.
const identifier = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/** ["messages", 0, "role"] -> "messages[0].role"; null for the body itself. */
export function formatParam(path: readonly PathKey[]): string | null {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && identifier.test(key)) out += out === '' ? key : `.${key}`;
    else break;
  }
  return out === '' ? null : out;
}

function isMissing(body: unknown, path: readonly PathKey[]): boolean {
  if (path.length === 0) return false;
  let parent: unknown = body;
  for (const key of path.slice(0, -1)) {
    if (typeof parent !== 'object' || parent === null) return false;
    parent = (parent as Record<PropertyKey, unknown>)[key];
  }
  if (typeof parent !== 'object' || parent === null || Array.isArray(parent)) return false;
  return !Object.hasOwn(parent, path[path.length - 1]!);
}

function describeType(expected: string): string {
  switch (expected) {
    case 'int':
      return 'an integer';
    case 'array':
    case 'object':
    case 'integer':
      return `an ${expected}`;
    default:
      return `a ${expected}`;
  }
}

function describeBound(origin: string, word: 'at least' | 'at most', bound: number | bigint, inclusive: boolean | undefined): string {
  const n = Number(bound);
  switch (origin) {
    case 'array':
    case 'set':
      return `expected ${word} ${n} item${n === 1 ? '' : 's'}`;
    case 'string':
      return `expected ${word} ${n} character${n === 1 ? '' : 's'}`;
    default:
      if (word === 'at least') return `expected a number ${inclusive === false ? '>' : '>='} ${n}`;
      return `expected a number ${inclusive === false ? '<' : '<='} ${n}`;
  }
}

const invalidRequestCodes: readonly InvalidRequestCode[] = [
  'missing_required_parameter',
  'invalid_type',
  'invalid_value',
  'unsupported_value',
  'invalid_json',
  'request_too_large',
];

function isInvalidRequestCode(value: unknown): value is InvalidRequestCode {
  return typeof value === 'string' && (invalidRequestCodes as readonly string[]).includes(value);
}

/**
 * /v1/audio/speech: JSON. `input` is priced per character and capped per model; `voice` is a
 * name or {id}; the rest passes through (instructions, stream_format, vendor extensions).
 */
export const speechRequestSchema = z.looseObject({
  model: z.string().min(1),
  input: z.string().min(1),
  voice: z.union([z.string().min(1), z.looseObject({ id: z.string().min(1) })], { error: 'expected a voice name or {"id": ...}' }),
  response_format: z.enum(['mp3', 'opus', 'aac', 'flac', 'wav', 'pcm']).nullish(),
  speed: z.number().min(0.25).max(4).nullish(),
  instructions: z.string().nullish(),
  stream_format: z.enum(['audio', 'sse']).nullish(),
});
export type SpeechRequest = z.output<typeof speechRequestSchema>;

export function parseSpeechRequest(body: unknown): ParsedRequest<SpeechRequest> {
  return parseWith(speechRequestSchema, body);
}

/**
 * /v1/audio/transcriptions and /translations: the multipart form's text fields (the file is
 * apart). Form values are strings: temperature and stream are read from their text.
 */
const speechToTextFieldsSchema = z.looseObject({
  model: z.string().min(1),
  language: z.string().min(1).nullish(),
  prompt: z.string().nullish(),
  response_format: z.enum(['json', 'text', 'srt', 'verbose_json', 'vtt']).nullish(),
  temperature: z
    .string()
    .regex(/^\d+(\.\d+)?$/, 'a number from 0 to 1')
    .refine((t) => Number(t) <= 1, 'a number from 0 to 1')
    .nullish(),
  stream: z.enum(['true', 'false']).nullish(),
});
export type SpeechToTextFields = z.output<typeof speechToTextFieldsSchema>;

export function parseSpeechToTextFields(fields: Readonly<Record<string, string>>): ParsedRequest<SpeechToTextFields> {
  return parseWith(speechToTextFieldsSchema, fields);
}
