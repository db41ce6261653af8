import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * The models file: which public model ids Tollgate sells, and which OpenAI-compatible servers
 * (vLLM, TGI, SGLang, llama.cpp) serve each. JSON or YAML; parsed with zod at start-up so a
 * wrong entry stops the gateway with a message naming the field.
 */

export const operations = ['chat', 'completion', 'embedding', 'transcription', 'translation', 'speech'] as const;
export type ModelOperation = (typeof operations)[number];
/** What the token routes dispatch (the audio routes have their own adapter, adapters/inference/audio.ts). */
export type Operation = Extract<ModelOperation, 'chat' | 'completion' | 'embedding'>;

const baseUrl = z
  .string()
  .superRefine((value, ctx) => {
    const problem = baseUrlProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })
  // Endpoint paths are appended, so a trailing slash would produce "//chat/completions".
  .transform((value) => value.replace(/\/+$/, ''));

function baseUrlProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'an http(s) URL such as http://127.0.0.1:8000/v1';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'an http:// or https:// URL';
  if (url.search !== '' || url.hash !== '') return 'a URL without query or fragment';
  // Credentials belong in apiKey, which is never logged; a URL is shown in outcomes.
  if (url.username !== '' || url.password !== '') return 'a URL without user:password (use apiKey)';
  return undefined;
}

const upstreamSchema = z.strictObject({
  baseUrl,
  /** Most requests this upstream may run at once; beyond it the gateway answers 429. */
  capacity: z.number().int().min(1).max(100_000),
  /** Sent to the upstream as a Bearer token; never logged or returned. */
  apiKey: z.string().min(1).optional(),
  /** Model name the upstream knows, when it differs from the public id. */
  upstreamModel: z.string().min(1).optional(),
});

const modelSchema = z.strictObject({
  id: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[\w.:/@-]+$/, 'letters, digits and . _ - : / @ only'),
  upstreams: z.array(upstreamSchema).min(1, 'at least one upstream'),
  maxOutputTokens: z.number().int().min(1).max(10_000_000),
  operations: z
    .array(z.enum(operations))
    .min(1, `at least one of ${operations.join(', ')}`)
    .refine((ops) => new Set(ops).size === ops.length, 'no operation twice'),
  /**
   * Transcription and translation: the longest audio file accepted, in seconds (its duration is
   * read from the file's header before anything is reserved). Default 1800 (30 minutes).
   */
  maxAudioSeconds: z.number().positive().max(86_400).optional(),
  /** Speech: the longest `input` accepted, in characters. Default 4096, as OpenAI's. */
  maxInputCharacters: z.number().int().min(1).max(1_000_000).optional(),
});

export const modelsFileSchema = z.strictObject({ models: z.array(modelSchema).min(1, 'at least one model') }).superRefine((file, ctx) => {
  const seen = new Set<string>();
  file.models.forEach((model, index) => {
    if (seen.has(model.id)) {
      ctx.addIssue({ code: 'custom', path: ['models', index, 'id'], message: `duplicate model id "${model.id}"` });
    }
    seen.add(model.id);
  });
});

export type UpstreamSpec = z.infer<typeof upstreamSchema>;
export type ModelSpec = z.infer<typeof modelSchema>;
export type ModelsFile = z.infer<typeof modelsFileSchema>;

export class ModelsFileError extends Error {
  override readonly name = 'ModelsFileError';
}

/** Parses the text of a models file; `source` names it in errors (a path, or "inline"). */
export function parseModelsFile(text: string, format: 'json' | 'yaml', source = 'models file'): ModelsFile {
  let raw: unknown;
  try {
    raw = format === 'json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    // The parser's message holds a line/column, not secrets: the file is ours.
    throw new ModelsFileError(`${source}: not valid ${format.toUpperCase()}: ${(error as Error).message.split('\n')[0]}`);
  }
  const parsed = modelsFileSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => `  ${formatPath(issue.path)}: ${issue.message}`);
  throw new ModelsFileError(`${source} is invalid:\n${lines.join('\n')}`);
}

/** Reads a models file; `.json` is JSON, anything else YAML (a superset of JSON). */
export function loadModelsFile(path: string): ModelsFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ModelsFileError(`${path}: cannot read the models file (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  return parseModelsFile(text, extname(path).toLowerCase() === '.json' ? 'json' : 'yaml', path);
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(root)';
  return path.map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`)).join('');
}
