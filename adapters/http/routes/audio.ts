import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { Request, Response, Router } from 'express';
import type { ApiKeys } from '../../../src/api-keys';
import { serveAudio, type AudioAnswer, type AudioExchange, type AudioRefusal, type ServeAudioDeps } from '../../../src/inference/serve-audio';
import { byteSink, UploadFailed, type AudioFile, type SpeechToTextOperation } from '../../inference';
import type { RateLimiter, RateLimits } from '../admission/rate-limiter';
import { authenticate, keyOf } from '../auth';
import { ApiError, invalidRequest, modelNotAllowed, modelNotFound, modelRetired, upstreamAtCapacity, upstreamUnavailable } from '../openai/errors';
import { parseSpeechRequest, parseSpeechToTextFields } from '../openai/requests';
import { annotateRequest, holdRequestLog } from '../observability/request-log';
import { requestIdOf } from '../observability/request-id';
import { writeCommonAnswer } from './answers';
import { refusal } from './inference';

export interface AudioRouteDeps extends ServeAudioDeps {
  readonly keys: ApiKeys;
  readonly limiter: RateLimiter;
  readonly limits: RateLimits;
  readonly accountLimits: RateLimits;
  /** largest audio file accepted, in bytes: 413 beyond */
  readonly maxAudioBytes: number;
}

/**
 * POST /v1/audio/transcriptions, /v1/audio/translations (multipart: the file and its fields) and
 * /v1/audio/speech (JSON). This route parses (busboy, as the upload arrives; the file streamed on
 * to the upstream, never on disk, never logged: see readForm), enforces the upload limit and words
 * the answers; the flow is src/inference/serve-audio.ts.
 */
export function mountAudioRoutes(router: Router, deps: AudioRouteDeps): void {
  const auth = authenticate(deps.keys, 'inference');
  router.post('/v1/audio/transcriptions', auth, (req, res) => serveSpeechToText('transcription', req, res, deps));
  router.post('/v1/audio/translations', auth, (req, res) => serveSpeechToText('translation', req, res, deps));
  router.post('/v1/audio/speech', auth, (req, res) => serveSpeech(req, res, deps));
}

async function serveSpeechToText(operation: SpeechToTextOperation, req: Request, res: Response, deps: AudioRouteDeps): Promise<void> {
  const key = keyOf(res);
  annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
  const form = await readForm(req, deps.maxAudioBytes, operation);
  try {
    if (!form.file) throw invalidRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
    const parsed = parseSpeechToTextFields(Object.fromEntries(form.fields));
    if (!parsed.ok) throw parsed.error;
    const refused = await serveAudio(
      deps,
      { operation, key, model: parsed.body.model, file: form.file, fields: forwarded(operation, form.fields), stream: parsed.body.stream === 'true' },
      exchangeOver(res, deps, key.keyId, key.accountId),
    );
    if (refused) throw refusalError(refused, deps.maxAudioBytes);
  } finally {
    // Whatever of the upload was not read (refused, or the upstream answered early) is dropped.
    form.discard();
  }
}

/** Only transcriptions take a language; OpenAI's translations always answer in English. */
function forwarded(operation: SpeechToTextOperation, fields: ReadonlyArray<readonly [string, string]>): ReadonlyArray<readonly [string, string]> {
  return operation === 'translation' ? fields.filter(([name]) => name !== 'language') : fields;
}

async function serveSpeech(req: Request, res: Response, deps: AudioRouteDeps): Promise<void> {
  const key = keyOf(res);
  annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
  const parsed = parseSpeechRequest(req.body);
  if (!parsed.ok) throw parsed.error;
  const refused = await serveAudio(
    deps,
    { operation: 'speech', key, model: parsed.body.model, body: parsed.body },
    exchangeOver(res, deps, key.keyId, key.accountId),
  );
  if (refused) throw refusalError(refused, 0);
}

interface Form {
  /** the fields before the file (all of them when the file was held whole) */
  readonly fields: (readonly [string, string])[];
  readonly file: AudioFile | undefined;
  /** stop reading the upload: what is left of it is read and dropped */
  discard(): void;
}

const MAX_FIELDS = 32;
const MAX_FIELD_BYTES = 64 * 1_024;
/** What a form may carry beside its file (fields, part headers, boundaries) before its Content-Length alone refuses it. */
const FORM_ALLOWANCE_BYTES = 64 * 1_024;
/** The file's first bytes, read before anything is reserved: its header, for the duration. */
const HEAD_BYTES = 64 * 1_024;

/** 413 in OpenAI's shape. */
function uploadTooLarge(maxBytes: number, closeConnection: boolean): ApiError {
  const mb = Math.round((maxBytes / 1_048_576) * 10) / 10;
  return new ApiError(
    413,
    'invalid_request_error',
    'request_too_large',
    'file',
    `The audio file is larger than this gateway's limit of ${mb} MB (${maxBytes} bytes); the form's other fields may add at most ${FORM_ALLOWANCE_BYTES} bytes.`,
    // Refused by its Content-Length, the upload is not read: the connection closes after the
    // answer. Past the limit mid-stream, the rest is read and dropped (see readForm).
    closeConnection ? { connection: 'close' } : {},
  );
}

/**
 * The multipart form, read as it arrives (busboy). When `model` comes before the file (as the
 * openai clients send it), the file is streamed: its first HEAD_BYTES are read here (the header,
 * for the duration, before anything is reserved), the rest is read from the client only as the
 * upstream takes it, and fields after the file follow it to the upstream (checked when they
 * arrive; `model` and `stream` must come before the file). When the file comes first, the
 * model is unknown until it has passed, so the file is held in memory, up to the upload limit.
 *
 * Past the limit the upload fails (413, the rest read and dropped so the client sees the answer,
 * up to a few times the limit; a larger one is cut). A Content-Length above the limit and its
 * allowance is refused before a byte is read, and before anything is reserved.
 */
function readForm(req: Request, maxBytes: number, operation: SpeechToTextOperation): Promise<Form> {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data/i.test(type)) {
    return Promise.reject(invalidRequest('Send the audio as multipart/form-data with a file field.', null, 'invalid_value'));
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes + FORM_ALLOWANCE_BYTES) return Promise.reject(uploadTooLarge(maxBytes, true));
  let parser: busboy.Busboy;
  try {
    parser = busboy({
      headers: req.headers,
      limits: { files: 1, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES, fileSize: maxBytes, parts: MAX_FIELDS + 1 },
    });
  } catch {
    return Promise.reject(invalidRequest('The multipart/form-data body could not be parsed (boundary missing).', null, 'invalid_value'));
  }
  return new Promise<Form>((resolve, reject) => {
    const fields: (readonly [string, string])[] = [];
    const trailing: (readonly [string, string])[] = [];
    let reader: UploadReader | undefined;
    let fieldError: ApiError | undefined;
    let streaming = false;
    let drained = 0;
    let ended = false;
    const discard = () => {
      reader?.discard();
      req.resume();
    };
    // The form's end: every field read (trailing ones too), or the reason it never ends.
    let endForm: (error?: UploadFailed) => void = () => {};
    const formEnded = new Promise<void>((resolveEnd, rejectEnd) => {
      endForm = (error) => {
        if (ended) return;
        ended = true;
        if (error) rejectEnd(error);
        else resolveEnd();
      };
    });
    formEnded.catch(() => undefined);

    const fail = (failure: UploadFailed) => {
      reader?.fail(failure);
      endForm(failure);
      if (!streaming) reject(formError(failure, maxBytes));
    };
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) fieldError ??= invalidRequest(`The form field '${name.slice(0, 64)}' is too long.`, null, 'invalid_value');
      else (streaming ? trailing : fields).push([name, value]);
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'file' || reader !== undefined) {
        stream.resume();
        return;
      }
      reader = new UploadReader(stream);
      const file = { filename: info.filename || 'audio', mimeType: info.mimeType || 'application/octet-stream' };
      const readHead = async (): Promise<{ head: Buffer; whole: boolean }> => {
        const chunks: Buffer[] = [];
        let size = 0;
        for (;;) {
          const chunk = await reader!.next();
          if (chunk === undefined) return { head: Buffer.concat(chunks, size), whole: true };
          chunks.push(chunk);
          size += chunk.length;
          if (streaming && size >= HEAD_BYTES) return { head: Buffer.concat(chunks, size), whole: false };
        }
      };
      streaming = fields.some(([field]) => field === 'model');
      if (!streaming) {
        // Held whole; the form resolves once every field is read.
        readHead().then(
          ({ head }) =>
            formEnded.then(
              () => resolveHeld({ ...file, head }),
              (failure: unknown) => reject(formError(failure, maxBytes)),
            ),
          (failure: unknown) => reject(formError(failure, maxBytes)),
        );
        return;
      }
      readHead().then(
        ({ head, whole }) => {
          if (fieldError) {
            // A field before the file was too long: refused before anything is reserved.
            streaming = false;
            discard();
            reject(fieldError);
            return;
          }
          const upload = reader!;
          const trailingFields = async () => {
            await formEnded;
            const bad = trailingError(trailing, fields, operation);
            if (bad) throw new UploadFailed('invalid_form', bad);
            return trailing;
          };
          resolve({
            fields,
            file: whole ? { ...file, head, trailingFields } : { ...file, head, rest: upload.rest(), trailingFields },
            discard,
          });
        },
        (failure: unknown) => {
          streaming = false;
          reject(formError(failure, maxBytes));
        },
      );
    });
    const resolveHeld = (file: AudioFile) => {
      if (fieldError) reject(fieldError);
      else resolve({ fields, file, discard });
    };
    parser.on('error', () => {
      req.unpipe(parser);
      fail(new UploadFailed('invalid_form', invalidRequest('The multipart/form-data body could not be parsed.', null, 'invalid_value')));
    });
    parser.on('close', () => {
      if (fieldError && streaming) {
        endForm(new UploadFailed('invalid_form', fieldError));
        return;
      }
      endForm();
      if (!streaming && reader === undefined) {
        if (fieldError) reject(fieldError);
        else resolve({ fields, file: undefined, discard });
      }
    });
    // A client that leaves mid-upload: busboy never finishes, so the form is given up here.
    req.on('close', () => {
      if (!req.complete) fail(new UploadFailed('broken_off'));
    });
    req.on('data', (chunk: Buffer) => {
      if (!reader?.failed) return;
      drained += chunk.length;
      if (drained > 4 * maxBytes) req.destroy();
    });
    req.pipe(parser);
  });
}

/** A field after a streamed file that cannot be honoured: the model and the stream flag were settled before the file. */
function trailingError(
  trailing: ReadonlyArray<readonly [string, string]>,
  before: ReadonlyArray<readonly [string, string]>,
  operation: SpeechToTextOperation,
): ApiError | undefined {
  const late = trailing.find(([name]) => name === 'model' || name === 'stream');
  if (late) return invalidRequest(`Send the form field '${late[0]}' before the file.`, late[0], 'invalid_value');
  const parsed = parseSpeechToTextFields(Object.fromEntries([...before, ...forwarded(operation, trailing)]));
  return parsed.ok ? undefined : parsed.error;
}

/** The client's answer for an upload that failed. */
function formError(failure: unknown, maxBytes: number): ApiError {
  if (failure instanceof UploadFailed) {
    if (failure.reason === 'too_large') return uploadTooLarge(maxBytes, false);
    if (failure.reason === 'invalid_form' && failure.detail instanceof ApiError) return failure.detail;
  }
  return invalidRequest('The upload ended before the form was complete.', null, 'invalid_value');
}

/**
 * The file part's bytes, one chunk at a time, as the reader asks for them: the part's stream is
 * paused between chunks, so busboy, and the client's socket behind it, wait for the reader.
 * Over the limit, or cut off, the next read throws UploadFailed at once.
 */
class UploadReader {
  private readonly chunks: Buffer[] = [];
  private ended = false;
  private failure: UploadFailed | undefined;
  private wake: (() => void) | undefined;
  private dropping = false;

  constructor(private readonly stream: Readable) {
    stream.on('data', (chunk: Buffer) => {
      if (this.dropping) return;
      this.chunks.push(chunk);
      stream.pause();
      this.notify();
    });
    stream.on('end', () => {
      this.ended = true;
      this.notify();
    });
    stream.on('limit', () => this.fail(new UploadFailed('too_large')));
    stream.on('error', () => this.fail(new UploadFailed('broken_off')));
  }

  get failed(): boolean {
    return this.failure !== undefined;
  }

  fail(failure: UploadFailed): void {
    this.failure ??= failure;
    this.notify();
    this.discard();
  }

  async next(): Promise<Buffer | undefined> {
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.chunks.shift();
      if (chunk) return chunk;
      if (this.ended) return undefined;
      this.stream.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  async *rest(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const chunk = await this.next();
      if (chunk === undefined) return;
      yield chunk;
    }
  }

  /** The rest is read and dropped. */
  discard(): void {
    this.dropping = true;
    this.chunks.length = 0;
    this.stream.resume();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** The use case's view of this HTTP exchange. */
function exchangeOver(res: Response, deps: AudioRouteDeps, keyId: string, accountId: string): AudioExchange {
  const account = { id: accountId, limits: deps.accountLimits };
  return {
    requestId: requestIdOf(res),
    annotate: (facts) => annotateRequest(res, facts),
    admit(tokens) {
      const admission = deps.limiter.admit(keyId, deps.limits, tokens, account);
      res.set(admission.headers);
      if (!admission.ok) throw admission.error;
    },
    reconcile: (estimated, actual) => deps.limiter.reconcileTokens(keyId, deps.limits, estimated, actual, account),
    sink: () => byteSink(res),
    onClientGone(listener) {
      const onClose = () => {
        if (!res.writableFinished) listener();
      };
      res.on('close', onClose);
      return () => res.off('close', onClose);
    },
    holdLog: () => holdRequestLog(res),
    answer: (answer) => writeAnswer(res, answer, deps.maxAudioBytes),
  };
}

function writeAnswer(res: Response, answer: AudioAnswer, maxBytes: number): void {
  if (res.destroyed) return;
  switch (answer.kind) {
    case 'body':
      res.status(200).set('content-type', answer.contentType).end(Buffer.from(answer.bytes));
      return;
    case 'upload_failed': {
      if (answer.failure.reason === 'broken_off' || res.headersSent) {
        res.destroy();
        return;
      }
      const error = formError(answer.failure, maxBytes);
      res.status(error.status).set(error.headers).json(error.toBody());
      return;
    }
    default:
      writeCommonAnswer(res, answer);
  }
}

function refusalError(refused: AudioRefusal, maxBytes: number): ApiError {
  switch (refused.kind) {
    case 'model_not_found':
      return modelNotFound(refused.model);
    case 'model_not_allowed':
      return modelNotAllowed(refused.model);
    case 'model_retired':
      return modelRetired(refused.model, refused.retiredAt);
    case 'upstream_unavailable':
      return upstreamUnavailable();
    case 'upload_failed':
      return formError(refused.failure, maxBytes);
    case 'unreadable_audio':
      return invalidRequest(
        'The audio file could not be read: its format was not recognised or it holds no duration. Send flac, mp3, mp4, mpeg, mpga, m4a, ogg, wav or webm.',
        'file',
        'invalid_value',
      );
    case 'audio_too_long':
      return invalidRequest(
        `The audio is ${Math.ceil(refused.seconds)} seconds long; this model accepts at most ${refused.maxSeconds} seconds.`,
        'file',
        'invalid_value',
      );
    case 'input_too_long':
      return invalidRequest(`'input' is ${refused.characters} characters long; this model accepts at most ${refused.maxCharacters}.`, 'input', 'invalid_value');
    case 'at_capacity':
      return upstreamAtCapacity(refused.retryAfterSeconds);
    case 'reservation_refused':
      return refusal(refused.error, refused.needed, undefined);
  }
}
