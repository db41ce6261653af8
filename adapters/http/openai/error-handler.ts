import type { ServerResponse } from 'node:http';
import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { requestIdOf } from '../observability/request-id';
import { writeJson } from '../json-response';
import { MAX_JSON_DEPTH } from './body-guards';
import { VersionConflictError } from '../../../src/ports/event-store';
import { isDatabaseUnavailable } from '../../postgres/unavailable';
import { ApiError, databaseUnavailable, internal, invalidRequest, isApiError, unknownRoute } from './errors';

/**
 * The last middlewares of the app: `notFound()` for paths no route serves, then
 * `errorHandler(logger)`. Together they make every error a client sees OpenAI-shaped.
 */

/** Sends an ApiError as OpenAI does: its status, its headers, `{"error": {...}}`. */
export function sendApiError(res: Response, error: ApiError): void {
  res.status(error.status).set(error.headers).json(error.toBody());
}

export function notFound(): RequestHandler {
  return (req, res) => sendApiError(res, unknownRoute(req.method, req.path));
}

/**
 * Express 5 error middleware. An ApiError goes out as it is; a body-parser error (malformed
 * JSON, too large, bad charset) becomes a 400; anything else is logged under the request id
 * and answered with a generic 500, with no stack or detail.
 */
export function errorHandler(logger: Pick<Logger, 'error'>): ErrorRequestHandler {
  return (err: unknown, req: Request, res: Response, _next) => answerError(logger, err, req.method, res);
}

/** The error handler's work on any node response (shared with the lean /v1 path). */
export function answerError(logger: Pick<Logger, 'error'>, err: unknown, method: string | undefined, res: ServerResponse): void {
  const requestId = requestIdOf(res);
  const known = isApiError(err) ? err : (fromBodyParser(err) ?? fromDatabaseOutage(err));
  if (known === undefined) logger.error({ requestId, method, err: describeForLog(err) }, 'unhandled error');
  if (res.headersSent) {
    // Mid-stream there is no JSON answer left to give: end the connection so the client sees it cut.
    res.destroy();
    return;
  }
  const error = known ?? internal(requestId);
  writeJson(res, error.status, error.toBody(), error.headers);
}

/** What an error thrown by a route or middleware means to a client. Exported for tests. */
export function toApiError(err: unknown, requestId?: string): ApiError {
  return isApiError(err) ? err : (fromBodyParser(err) ?? fromDatabaseOutage(err) ?? internal(requestId));
}

/**
 * The database is down or restarting, or other writers kept moving the account's stream past
 * every retry: a 503 the SDKs retry, not a 500. Nothing was reserved or charged either way.
 */
function fromDatabaseOutage(err: unknown): ApiError | undefined {
  return isDatabaseUnavailable(err) || err instanceof VersionConflictError ? databaseUnavailable() : undefined;
}

interface BodyParserError {
  readonly type: string;
  readonly status?: number;
  readonly limit?: number;
}

// body-parser's `err.message` may quote the body (Node's JSON.parse errors show a snippet),
// so only its `type` is read and each case gets our own words.
function fromBodyParser(err: unknown): ApiError | undefined {
  if (!isBodyParserError(err)) return undefined;
  switch (err.type) {
    case 'entity.parse.failed':
      return invalidRequest('We could not parse the JSON body of your request. Send a JSON object with Content-Type: application/json.', null, 'invalid_json');
    case 'entity.too.large':
      return invalidRequest(
        typeof err.limit === 'number' ? `The request body is larger than the limit of ${err.limit} bytes.` : 'The request body is too large.',
        null,
        'request_too_large',
      );
    case 'entity.invalid.utf8':
      return invalidRequest('The request body is not valid UTF-8.', null, 'invalid_json');
    case 'entity.too.deep':
      return invalidRequest(`The request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels.`, null, 'invalid_json');
    case 'encoding.unsupported':
      return invalidRequest('Unsupported Content-Encoding for the request body.');
    case 'charset.unsupported':
      return invalidRequest('Unsupported charset for the request body; send UTF-8 JSON.');
    default:
      return invalidRequest('The request body could not be read (check its Content-Encoding).');
  }
}

function isBodyParserError(err: unknown): err is BodyParserError {
  if (typeof err !== 'object' || err === null) return false;
  const { type, status, expose } = err as { type?: unknown; status?: unknown; expose?: unknown };
  // body-parser (through http-errors) marks its errors with a dotted `type` and a 4xx status;
  // a body that does not decompress (Content-Encoding: gzip over plain bytes) has no `type`,
  // only the 4xx status and `expose` that http-errors gives every client error.
  return (typeof type === 'string' || expose === true) && typeof status === 'number' && status >= 400 && status < 500;
}

/**
 * An unexpected error, for the log: its name, code and stack frames, but not its message,
 * which can carry content (a JSON.parse of an upstream reply quotes the completion).
 */
export function describeForLog(err: unknown): { name: string; code?: string; frames?: string } {
  if (!(err instanceof Error)) return { name: typeof err };
  const code = (err as { code?: unknown }).code;
  const frames = err.stack
    ?.split('\n')
    .filter((line) => line.trimStart().startsWith('at '))
    .map((line) => line.trim())
    .join('\n');
  return {
    name: err.name,
    ...(typeof code === 'string' ? { code } : {}),
    ...(frames ? { frames } : {}),
  };
}
