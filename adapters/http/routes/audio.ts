import busboy from 'busboy';
import type { Request, Response, Router } from 'express';
import type { ApiKeys } from '../../../src/api-keys';
import { serveAudio, type AudioAnswer, type AudioExchange, type AudioRefusal, type ServeAudioDeps } from '../../../src/inference/serve-audio';
import type { AudioFile, ByteSink, SpeechToTextOperation } from '../../inference';
import type { RateLimiter, RateLimits } from '../admission/rate-limiter';
import { authenticate, keyOf } from '../auth';
import { ApiError, internal, invalidRequest, modelNotFound, upstreamAtCapacity, upstreamUnavailable } from '../openai/errors';
import { parseSpeechRequest, parseSpeechToTextFields } from '../openai/requests';
import { annotateRequest, holdRequestLog } from '../observability/request-log';
import { requestIdOf } from '../observability/request-id';
import { refusal } from './inference';

export interface AudioRouteDeps extends ServeAudioDeps {
  readonly keys: ApiKeys;
  readonly limiter: RateLimiter;
  readonly limits: RateLimits;
  /** largest audio file accepted, in bytes: 413 beyond, nothing reserved */
  readonly maxAudioBytes: number;
}

/**
 * POST /v1/audio/transcriptions, /v1/audio/translations (multipart: the file and its fields) and
 * /v1/audio/speech (JSON). This route parses (busboy; the file in memory, never on disk, never
 * logged), enforces the upload limit and words the answers; the flow is src/inference/serve-audio.ts.
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
  const form = await readForm(req, deps.maxAudioBytes);
  if (!form.file) throw invalidRequest("Missing required parameter: 'file'.", 'file', 'missing_required_parameter');
  const parsed = parseSpeechToTextFields(Object.fromEntries(form.fields));
  if (!parsed.ok) throw parsed.error;
  // Only transcriptions take a language; OpenAI's translations always answer in English.
  const fields = operation === 'translation' ? form.fields.filter(([name]) => name !== 'language') : form.fields;
  const refused = await serveAudio(
    deps,
    { operation, key, model: parsed.body.model, file: form.file, fields, stream: parsed.body.stream === 'true' },
    exchangeOver(res, deps, key.keyId),
  );
  if (refused) throw refusalError(refused);
}

async function serveSpeech(req: Request, res: Response, deps: AudioRouteDeps): Promise<void> {
  const key = keyOf(res);
  annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
  const parsed = parseSpeechRequest(req.body);
  if (!parsed.ok) throw parsed.error;
  const refused = await serveAudio(deps, { operation: 'speech', key, model: parsed.body.model, body: parsed.body }, exchangeOver(res, deps, key.keyId));
  if (refused) throw refusalError(refused);
}

interface Form {
  readonly fields: (readonly [string, string])[];
  readonly file: AudioFile | undefined;
}

const MAX_FIELDS = 32;
const MAX_FIELD_BYTES = 64 * 1_024;

/** 413 in OpenAI's shape: nothing was reserved. */
function uploadTooLarge(maxBytes: number, headers: Record<string, string> = {}): ApiError {
  const mb = Math.round((maxBytes / 1_048_576) * 10) / 10;
  return new ApiError(
    413,
    'invalid_request_error',
    'request_too_large',
    'file',
    `The audio file is larger than this gateway's limit of ${mb} MB (${maxBytes} bytes).`,
    headers,
  );
}

/**
 * The multipart form: text fields and one file, the file gathered in memory up to the limit. Past
 * the limit the rest of the upload is read and dropped (so the client sees the 413 rather than a
 * reset connection), up to a few times the limit; a larger one is cut.
 */
function readForm(req: Request, maxBytes: number): Promise<Form> {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data/i.test(type)) {
    return Promise.reject(invalidRequest('Send the audio as multipart/form-data with a file field.', null, 'invalid_value'));
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes + MAX_FIELDS * MAX_FIELD_BYTES + 64 * 1_024) {
    // Refused without reading it; the connection closes after the answer.
    return Promise.reject(uploadTooLarge(maxBytes, { connection: 'close' }));
  }
  return new Promise<Form>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: req.headers,
        limits: { files: 1, fields: MAX_FIELDS, fieldSize: MAX_FIELD_BYTES, fileSize: maxBytes, parts: MAX_FIELDS + 1 },
      });
    } catch {
      reject(invalidRequest('The multipart/form-data body could not be parsed (boundary missing).', null, 'invalid_value'));
      return;
    }
    const fields: (readonly [string, string])[] = [];
    let file: AudioFile | undefined;
    let failure: ApiError | undefined;
    let drained = 0;
    parser.on('field', (name, value, info) => {
      if (info.valueTruncated) failure ??= invalidRequest(`The form field '${name.slice(0, 64)}' is too long.`, null, 'invalid_value');
      else fields.push([name, value]);
    });
    parser.on('file', (name, stream, info) => {
      if (name !== 'file' || file !== undefined) {
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (!failure) chunks.push(chunk);
      });
      stream.on('limit', () => {
        failure = uploadTooLarge(maxBytes);
        chunks.length = 0;
      });
      stream.on('end', () => {
        if (failure) return;
        file = { bytes: Buffer.concat(chunks, size), filename: info.filename || 'audio', mimeType: info.mimeType || 'application/octet-stream' };
      });
    });
    parser.on('error', () => {
      req.unpipe(parser);
      reject(failure ?? invalidRequest('The multipart/form-data body could not be parsed.', null, 'invalid_value'));
    });
    parser.on('close', () => {
      if (failure) reject(failure);
      else resolve({ fields, file });
    });
    // A client that leaves mid-upload: busboy never finishes, so the form is given up here (its bytes dropped).
    req.on('close', () => {
      if (!req.complete) reject(invalidRequest('The upload ended before the form was complete.', null, 'invalid_value'));
    });
    req.on('data', (chunk: Buffer) => {
      if (!failure) return;
      drained += chunk.length;
      if (drained > 4 * maxBytes) req.destroy();
    });
    req.pipe(parser);
  });
}

/** The use case's view of this HTTP exchange. */
function exchangeOver(res: Response, deps: AudioRouteDeps, keyId: string): AudioExchange {
  return {
    requestId: requestIdOf(res),
    annotate: (facts) => annotateRequest(res, facts),
    admit() {
      const admission = deps.limiter.admit(keyId, deps.limits, 0);
      res.set(admission.headers);
      if (!admission.ok) throw admission.error;
    },
    sink: () => byteSink(res),
    onClientGone(listener) {
      const onClose = () => {
        if (!res.writableFinished) listener();
      };
      res.on('close', onClose);
      return () => res.off('close', onClose);
    },
    holdLog: () => holdRequestLog(res),
    answer: (answer) => writeAnswer(res, answer),
  };
}

function byteSink(res: Response): ByteSink {
  return {
    open(contentType) {
      res.statusCode = 200;
      res.setHeader('content-type', contentType);
      res.setHeader('cache-control', 'no-cache');
      res.setHeader('x-accel-buffering', 'no');
    },
    write(chunk) {
      if (res.destroyed || res.writableEnded) return true;
      return res.write(chunk);
    },
    waitForDrain() {
      if (res.destroyed || res.writableEnded || !res.writableNeedDrain) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    },
  };
}

function writeAnswer(res: Response, answer: AudioAnswer): void {
  if (res.destroyed) return;
  switch (answer.kind) {
    case 'end_stream':
      res.end();
      return;
    case 'timed_out': {
      const seconds = Math.round(answer.maxRequestDurationMs / 1_000);
      const error = new ApiError(
        504,
        'server_error',
        'request_timeout',
        null,
        `The request ran longer than this gateway's maximum request duration (${seconds} s) and was ended.`,
      );
      res.status(error.status).json(error.toBody());
      return;
    }
    case 'client_error':
      if (answer.error.retryAfterSeconds !== undefined) res.set('retry-after', String(answer.error.retryAfterSeconds));
      res.status(answer.error.status).json(answer.error.body);
      return;
    case 'body':
      res.status(200).set('content-type', answer.contentType).end(Buffer.from(answer.bytes));
      return;
    case 'failed':
      if (!res.headersSent) res.status(500).json(internal(requestIdOf(res)).toBody());
      else res.destroy();
      return;
  }
}

function refusalError(refused: AudioRefusal): ApiError {
  switch (refused.kind) {
    case 'model_not_found':
      return modelNotFound(refused.model);
    case 'upstream_unavailable':
      return upstreamUnavailable();
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
