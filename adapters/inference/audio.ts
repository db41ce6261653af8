import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { parseBuffer, parseStream } from 'music-metadata';
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';
import type { Lease, UpstreamSlot } from './capacity';
import type { ByteSink } from './sink';
import type { ModelSpec } from './models-file';
import { clientError, type ClientError } from './outcome';
import { isRecord } from './upstream-payload';

/**
 * The audio routes' side of the upstream: OpenAI-compatible speech servers (vLLM serving Whisper,
 * speaches, OpenAI itself). Transcription and translation send the file as multipart form data and
 * read back JSON, text, SRT or VTT (or an SSE stream); speech sends JSON and relays audio bytes as
 * they arrive. The file passes through memory only, for the one request: never on disk, never
 * logged; a streamed upload is sent on as it arrives (see AudioFile).
 */

export type SpeechToTextOperation = 'transcription' | 'translation';

/**
 * The uploaded file. Held whole in memory (`rest` undefined: `head` is the file), or streamed:
 * `head` is its first bytes, read before anything was reserved, and `rest` the remainder, read
 * from the client only as fast as the upstream takes it (never on disk, never logged).
 */
export interface AudioFile {
  /** the client's file name: sent on to the upstream (which reads the format from it), never logged */
  readonly filename: string;
  readonly mimeType: string;
  readonly head: Uint8Array;
  /** the bytes after `head`, as the client sends them; throws UploadFailed when the upload fails */
  readonly rest?: AsyncIterable<Uint8Array>;
  /** the form's fields that came after the file, once the upload has ended; rejects with UploadFailed */
  readonly trailingFields?: () => Promise<ReadonlyArray<readonly [string, string]>>;
}

/**
 * An upload that did not arrive whole: over the size limit mid-stream, broken off by the client,
 * or a form field after the file that is not valid (`detail`: the route's own error for it).
 */
export class UploadFailed extends Error {
  constructor(
    readonly reason: 'too_large' | 'broken_off' | 'invalid_form',
    readonly detail?: unknown,
  ) {
    super(`upload failed: ${reason}`);
    this.name = 'UploadFailed';
  }
}

/** The file held whole: the rest of a streamed upload read into memory (bounded by the upload limit). */
export async function holdWhole(file: AudioFile): Promise<AudioFile> {
  if (!file.rest) return file;
  const chunks: Uint8Array[] = [file.head];
  for await (const chunk of file.rest) chunks.push(chunk);
  const { rest: _rest, ...held } = file;
  return { ...held, head: Buffer.concat(chunks) };
}

export interface SpeechToTextRequest {
  readonly operation: SpeechToTextOperation;
  readonly file: AudioFile;
  /** the client's other form fields (model, language, prompt, response_format, ...), as sent */
  readonly fields: ReadonlyArray<readonly [string, string]>;
  readonly stream: boolean;
}

/** What the upstream reported having processed, if anything. */
export type ReportedAudioUsage =
  | { readonly kind: 'duration'; readonly seconds: number }
  | { readonly kind: 'tokens'; readonly inputTokens: number; readonly outputTokens: number };

export type AudioOutcomeKind = 'completed' | 'upstream_error' | 'upstream_unavailable' | 'cut' | 'client_disconnected' | 'upload_failed';

export interface AudioDispatchResult {
  readonly kind: AudioOutcomeKind;
  readonly httpStatus: number | null;
  readonly upstream: string | null;
  readonly latencyMs: number;
  readonly timeToFirstByteMs?: number;
  readonly reported?: ReportedAudioUsage;
  /** a whole answer to relay: its content type and bytes (JSON, text, SRT, VTT) */
  readonly body?: { readonly contentType: string; readonly bytes: Uint8Array };
  /** when nothing was relayed yet and the request failed: what to answer */
  readonly clientError?: ClientError;
  /** whether the sink was opened (bytes went out); if so, only end the response */
  readonly streamStarted: boolean;
  /** speech: audio bytes relayed to the client */
  readonly bytesRelayed: number;
  /** speech: the length the upstream declared (content-length), when it did */
  readonly declaredBytes?: number;
  /** upload_failed: why the file did not reach the upstream whole (the upstream request was aborted) */
  readonly uploadFailure?: UploadFailed;
}

export type AudioDuration = { readonly ok: true; readonly seconds: number; readonly file: AudioFile } | { readonly ok: false; readonly failure?: UploadFailed };

/**
 * The audio's duration, before anything is reserved. A streamed file's is read from its header
 * alone (WAV, FLAC, MP3 with a Xing/Info/VBRI frame, WebM...: music-metadata on `head`, told
 * no size, so it takes the header's word rather than measuring the bytes it has); a file whose
 * header holds no duration (MP3 without a header frame, MP4 with its index at the end, Ogg) is
 * then held whole, up to the upload limit, and measured. Not ok when the bytes are not audio it
 * can read, or carry no duration; with `failure` when the upload failed while being held.
 */
export async function readAudioDuration(file: AudioFile): Promise<AudioDuration> {
  if (file.rest) {
    const seconds = await headerDuration(file);
    if (seconds !== undefined) return { ok: true, seconds, file };
    try {
      file = await holdWhole(file);
    } catch (error) {
      if (error instanceof UploadFailed) return { ok: false, failure: error };
      throw error;
    }
  }
  try {
    const metadata = await parseBuffer(
      file.head,
      { mimeType: file.mimeType, path: file.filename, size: file.head.length },
      { duration: true, skipCovers: true },
    );
    const seconds = validSeconds(metadata.format.duration);
    return seconds === undefined ? { ok: false } : { ok: true, seconds, file };
  } catch {
    return { ok: false };
  }
}

async function headerDuration(file: AudioFile): Promise<number | undefined> {
  try {
    const head = new PassThrough();
    head.end(file.head);
    const metadata = await parseStream(head, { mimeType: file.mimeType, path: file.filename }, { duration: false, skipCovers: true });
    return validSeconds(metadata.format.duration);
  } catch {
    return undefined;
  }
}

function validSeconds(seconds: number | undefined): number | undefined {
  return seconds === undefined || !Number.isFinite(seconds) || seconds <= 0 ? undefined : seconds;
}

const paths: Record<SpeechToTextOperation | 'speech', string> = {
  transcription: '/audio/transcriptions',
  translation: '/audio/translations',
  speech: '/audio/speech',
};

export interface AudioAdapterOptions {
  readonly headersTimeoutMs?: number;
  readonly bodyTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
}

export class AudioAdapter {
  private readonly pools = new Map<string, Pool>();

  constructor(private readonly options: AudioAdapterOptions = {}) {}

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.close()));
    this.pools.clear();
  }

  /** Transcription or translation on the leased upstream; releases the lease. Never throws for upstream trouble. */
  async transcribe(
    lease: Lease,
    request: SpeechToTextRequest,
    options: { signal: AbortSignal; requestId: string; sink: ByteSink },
  ): Promise<AudioDispatchResult> {
    const upload = { done: false, failure: undefined as UploadFailed | undefined };
    try {
      const boundary = `----tollgate${randomBytes(12).toString('hex')}`;
      const body = multipartBody(boundary, request, upstreamModelOf(lease.model, lease.slot), upload);
      const result = await this.run(
        lease.slot,
        paths[request.operation],
        { contentType: `multipart/form-data; boundary=${boundary}`, body },
        request.stream ? 'text/event-stream' : '*/*',
        options,
        request.stream ? 'sse' : 'whole',
      );
      // The client's upload failed (over the limit, broken off) before the upstream had the whole
      // file: the upstream request was aborted for it.
      if (upload.failure || (result.kind === 'client_disconnected' && !upload.done)) {
        return { ...result, kind: 'upload_failed', uploadFailure: upload.failure ?? new UploadFailed('broken_off'), streamStarted: false };
      }
      return result;
    } finally {
      lease.release();
    }
  }

  /** Speech on the leased upstream, audio relayed to the sink as it arrives; releases the lease. */
  async speak(
    lease: Lease,
    body: Readonly<Record<string, unknown>>,
    options: { signal: AbortSignal; requestId: string; sink: ByteSink },
  ): Promise<AudioDispatchResult> {
    try {
      const json = JSON.stringify({ ...body, model: upstreamModelOf(lease.model, lease.slot) });
      return await this.run(lease.slot, paths.speech, json, '*/*', options, 'bytes');
    } finally {
      lease.release();
    }
  }

  private async run(
    slot: UpstreamSlot,
    path: string,
    body: string | { readonly contentType: string; readonly body: AsyncIterable<Uint8Array> },
    accept: string,
    options: { signal: AbortSignal; requestId: string; sink: ByteSink },
    mode: 'whole' | 'sse' | 'bytes',
  ): Promise<AudioDispatchResult> {
    const started = performance.now();
    const url = new URL(slot.upstream.baseUrl);
    const upstream = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
    const base = { upstream, bytesRelayed: 0, streamStarted: false };
    const elapsed = () => Math.round(performance.now() - started);
    const headers: Record<string, string> = { accept, 'x-request-id': options.requestId };
    headers['content-type'] = typeof body === 'string' ? 'application/json' : body.contentType;
    if (slot.upstream.apiKey) headers.authorization = `Bearer ${slot.upstream.apiKey}`;
    let response: Dispatcher.ResponseData;
    try {
      response = await this.pool(url.origin).request({
        method: 'POST',
        path: url.pathname.replace(/\/+$/, '') + path,
        headers,
        // At most 64 KiB read ahead of the socket.
        body: typeof body === 'string' ? body : Readable.from(body.body, { objectMode: false, highWaterMark: 65_536 }),
        signal: options.signal,
        headersTimeout: this.options.headersTimeoutMs ?? 600_000,
        bodyTimeout: this.options.bodyTimeoutMs ?? 120_000,
      });
    } catch (error) {
      if (options.signal.aborted) return { ...base, kind: 'client_disconnected', httpStatus: null, latencyMs: elapsed() };
      const refused = isRecord(error) && (error.code === 'ECONNREFUSED' || (isRecord(error.cause) && error.cause.code === 'ECONNREFUSED'));
      return {
        ...base,
        kind: refused ? 'upstream_unavailable' : 'upstream_error',
        httpStatus: null,
        latencyMs: elapsed(),
        clientError: refused
          ? clientError(503, 'upstream_unavailable', 'No upstream is available for this model; retry shortly.', 'upstream_unavailable', 1)
          : clientError(502, 'upstream_error', 'The upstream connection failed before an answer.'),
      };
    }
    const httpStatus = response.statusCode;
    if (httpStatus >= 400) {
      // The body may echo the prompt: it is drained, never read into a message.
      await response.body.dump().catch(() => undefined);
      return { ...base, kind: 'upstream_error', httpStatus, latencyMs: elapsed(), clientError: upstreamHttpError(httpStatus) };
    }
    const contentType = headerOf(response.headers['content-type']) ?? (mode === 'bytes' ? 'application/octet-stream' : 'application/json');
    if (mode === 'whole' && !contentType.startsWith('text/event-stream')) {
      let bytes: Uint8Array;
      try {
        bytes = new Uint8Array(await response.body.arrayBuffer());
      } catch {
        const kind = options.signal.aborted ? 'client_disconnected' : 'cut';
        return {
          ...base,
          kind,
          httpStatus,
          latencyMs: elapsed(),
          ...(kind === 'cut' ? { clientError: clientError(502, 'upstream_error', 'The upstream connection failed mid-answer.') } : {}),
        };
      }
      const reported = contentType.includes('json') ? reportedFromJson(bytes) : undefined;
      return { ...base, kind: 'completed', httpStatus, latencyMs: elapsed(), body: { contentType, bytes }, ...(reported ? { reported } : {}) };
    }

    // Relayed as it arrives: speech audio, or a transcription's SSE events.
    const declared = Number(headerOf(response.headers['content-length']));
    const declaredBytes = Number.isSafeInteger(declared) && declared > 0 ? declared : undefined;
    let relayed = 0;
    let firstByteAt: number | undefined;
    let sseTail = '';
    let reported: ReportedAudioUsage | undefined;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        if (options.signal.aborted) break;
        if (firstByteAt === undefined) {
          firstByteAt = performance.now();
          options.sink.open(contentType);
        }
        relayed += chunk.length;
        if (mode !== 'bytes') {
          // Only the final event's usage is read; deltas pass through untouched.
          sseTail = (sseTail + chunk.toString('utf8')).slice(-65_536);
          reported = reportedFromSse(sseTail) ?? reported;
        }
        if (!options.sink.write(chunk)) await options.sink.waitForDrain();
      }
    } catch {
      // cut or aborted: decided below
    }
    const timing = firstByteAt === undefined ? {} : { timeToFirstByteMs: Math.round(firstByteAt - started) };
    const started_ = firstByteAt !== undefined;
    const done = !options.signal.aborted && (response.body as unknown as { readableEnded?: boolean }).readableEnded !== false;
    const kind: AudioOutcomeKind = options.signal.aborted ? 'client_disconnected' : done ? 'completed' : 'cut';
    if (options.signal.aborted) response.body.destroy();
    return {
      kind,
      httpStatus,
      upstream,
      latencyMs: elapsed(),
      ...timing,
      streamStarted: started_,
      bytesRelayed: relayed,
      ...(declaredBytes === undefined ? {} : { declaredBytes }),
      ...(reported ? { reported } : {}),
      ...(!started_ && kind === 'cut' ? { clientError: clientError(502, 'upstream_stream_cut', 'The upstream stream ended before any output.') } : {}),
    };
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      pool = new Pool(origin, { pipelining: 1, connect: { timeout: this.options.connectTimeoutMs ?? 5_000 } });
      this.pools.set(origin, pool);
    }
    return pool;
  }
}

/**
 * The form sent upstream, generated as the upload arrives: the fields that came before the file,
 * the file (its head, then the rest as the client sends it: undici pulls the next chunk only once
 * the socket has taken the last, so a slow upstream slows the client's upload, nothing piles up
 * here), then the fields that came after it. A failed upload throws out of here, which aborts the
 * upstream request.
 */
async function* multipartBody(
  boundary: string,
  request: SpeechToTextRequest,
  upstreamModel: string,
  upload: { done: boolean; failure: UploadFailed | undefined },
): AsyncGenerator<Uint8Array> {
  const field = (name: string, value: string) =>
    Buffer.from(`--${boundary}\r\ncontent-disposition: form-data; name="${escapeQuoted(name)}"\r\n\r\n${value}\r\n`, 'utf8');
  try {
    for (const [name, value] of request.fields) yield field(name, name === 'model' ? upstreamModel : value);
    const { file } = request;
    yield Buffer.from(
      `--${boundary}\r\ncontent-disposition: form-data; name="file"; filename="${escapeQuoted(file.filename)}"\r\ncontent-type: ${file.mimeType.replace(/[\r\n]/g, '')}\r\n\r\n`,
      'utf8',
    );
    yield file.head;
    if (file.rest) for await (const chunk of file.rest) yield chunk;
    yield Buffer.from('\r\n');
    const trailing = file.trailingFields ? await file.trailingFields() : [];
    for (const [name, value] of trailing) if (name !== 'model') yield field(name, value);
    yield Buffer.from(`--${boundary}--\r\n`);
    upload.done = true;
  } catch (error) {
    upload.failure = error instanceof UploadFailed ? error : new UploadFailed('broken_off', error);
    throw upload.failure;
  }
}

/** A name or file name inside a quoted header parameter, escaped as browsers do (WHATWG FormData). */
function escapeQuoted(value: string): string {
  return value.replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22');
}

function upstreamModelOf(model: ModelSpec, slot: UpstreamSlot): string {
  return slot.upstream.upstreamModel ?? model.id;
}

function headerOf(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** OpenAI's usage on a transcription: {type: "duration", seconds} or {type: "tokens", input_tokens, output_tokens}. */
export function readAudioUsage(usage: unknown): ReportedAudioUsage | undefined {
  if (!isRecord(usage)) return undefined;
  if (usage.type === 'duration' && typeof usage.seconds === 'number' && Number.isFinite(usage.seconds) && usage.seconds >= 0) {
    return { kind: 'duration', seconds: usage.seconds };
  }
  const input = usage.input_tokens;
  const output = usage.output_tokens;
  if ((usage.type === 'tokens' || usage.type === undefined) && isCount(input) && isCount(output)) {
    return { kind: 'tokens', inputTokens: input, outputTokens: output };
  }
  return undefined;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function reportedFromJson(bytes: Uint8Array): ReportedAudioUsage | undefined {
  try {
    const body: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
    return isRecord(body) ? readAudioUsage(body.usage) : undefined;
  } catch {
    return undefined;
  }
}

/** The usage of a `transcript.text.done` event, if the stream so far holds one. */
function reportedFromSse(text: string): ReportedAudioUsage | undefined {
  const at = text.lastIndexOf('transcript.text.done');
  if (at < 0) return undefined;
  const start = text.lastIndexOf('data:', at);
  const end = text.indexOf('\n', at);
  if (start < 0 || end < 0) return undefined;
  try {
    const event: unknown = JSON.parse(text.slice(start + 5, end).trim());
    return isRecord(event) ? readAudioUsage(event.usage) : undefined;
  } catch {
    return undefined;
  }
}

function upstreamHttpError(status: number): ClientError {
  if (status === 429) return clientError(503, 'upstream_overloaded', 'The upstream is overloaded (HTTP 429); retry shortly.', 'upstream_error', 1);
  if (status === 408 || status === 504) return clientError(504, 'upstream_timeout', `The upstream timed out (HTTP ${status}).`);
  if (status === 400 || status === 404 || status === 413 || status === 415 || status === 422) {
    return clientError(400, 'upstream_rejected', `The upstream rejected the request (HTTP ${status}).`, 'invalid_request_error');
  }
  return clientError(502, 'upstream_error', `The upstream failed (HTTP ${status}).`);
}
