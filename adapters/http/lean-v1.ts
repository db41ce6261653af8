import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { type AuthFailureLimiter, screenClient } from './admission/auth-failures';
import { requireScope, verifyBearer } from './auth';
import { guardJsonBody } from './openai/body-guards';
import { answerError } from './openai/error-handler';
import type { GatewayMetrics } from './observability/metrics';
import { assignRequestId, REQUEST_ID_HEADER } from './observability/request-id';
import { recordRequest } from './observability/request-log';
import { INFERENCE_ROUTES, serveOperation, type InferenceRouteDeps } from './routes/inference';

/**
 * The lean path for `POST /v1/chat/completions`, `/v1/completions` and `/v1/embeddings`: a plain
 * node:http handler in front of the express app, so the requests that carry the load skip
 * express's router, its request and response prototypes and body-parser's generic machinery.
 * It does what the express stack does for these routes, in the same order and with the same
 * answers: request id, the request's log line and metrics, the authentication-failure screen,
 * the JSON body (same limit, UTF-8 and depth guards, same strict parse and error words),
 * authentication, then the same route function (routes/inference.ts serveOperation).
 *
 * It takes only the plain case, decided from the request line and headers before a byte of the
 * body is read: POST, the exact path (a query string allowed), `Content-Type: application/json`
 * (charset UTF-8 or none), no Content-Encoding, a body. Everything else (other routes, other
 * methods, a compressed body, another media type or charset, a trailing slash) goes to express,
 * which serves it as before; so do the audio routes (multipart, served by routes/audio.ts).
 */

export interface LeanV1Deps extends InferenceRouteDeps {
  readonly logger: Logger;
  readonly metrics: GatewayMetrics;
  /** largest JSON body accepted, in bytes */
  readonly bodyLimit: number;
  readonly authFailures?: AuthFailureLimiter;
}

// What type-is and body-parser would parse as JSON in UTF-8 without help: anything else
// (application/*+json, utf-16, a malformed header) is express's to answer.
const PLAIN_JSON = /^application\/json[ \t]*(?:;[ \t]*charset[ \t]*=[ \t]*(?:utf-8|"utf-8")[ \t]*)?$/i;

export function leanV1(deps: LeanV1Deps, fallback: RequestListener): RequestListener {
  return (req, res) => {
    const route = req.method === 'POST' ? routeOf(req.url) : undefined;
    const operation = route === undefined ? undefined : INFERENCE_ROUTES[route];
    if (route === undefined || operation === undefined || !plainJsonBody(req)) {
      fallback(req, res);
      return;
    }
    serve(deps, req, res, route, operation);
  };
}

function routeOf(url: string | undefined): string | undefined {
  if (url === undefined) return undefined;
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

function plainJsonBody(req: IncomingMessage): boolean {
  const { headers } = req;
  const encoding = headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') return false;
  const type = headers['content-type'];
  if (type === undefined || !PLAIN_JSON.test(type)) return false;
  // type-is's hasBody: without either header there is no body, and express answers the missing fields.
  return headers['transfer-encoding'] !== undefined || headers['content-length'] !== undefined;
}

function serve(deps: LeanV1Deps, req: IncomingMessage, res: ServerResponse, path: string, operation: (typeof INFERENCE_ROUTES)[string]): void {
  const offeredId = req.headers[REQUEST_ID_HEADER];
  assignRequestId(typeof offeredId === 'string' ? offeredId : undefined, res);
  // Express names the route only once the router matched it, after the body was read: a request
  // refused before (authentication-failure screen, unreadable body) is logged as unmatched there
  // and here alike.
  let route = 'unmatched';
  recordRequest(res, { logger: deps.logger, metrics: deps.metrics }, () => route);
  const fail = (error: unknown) => answerError(deps.logger, error, req.method, res);
  if (deps.authFailures) {
    const forwardedFor = req.headers['x-forwarded-for'];
    const refused = screenClient(
      deps.authFailures,
      deps.keys,
      req.socket.remoteAddress,
      typeof forwardedFor === 'string' ? forwardedFor : undefined,
      req.headers.authorization,
      res,
    );
    if (refused) {
      fail(refused);
      return;
    }
  }
  readJsonBody(req, deps.bodyLimit, (error, body) => {
    if (error !== undefined) {
      fail(error);
      return;
    }
    route = path;
    verifyBearer(deps.keys, req.headers.authorization)
      .then((key) => {
        requireScope(key, 'inference');
        return serveOperation(operation, body, key, res, deps);
      })
      .catch(fail);
  });
}

/** What body-parser reports, in the shape the error handler reads (type, status, limit). */
interface BodyError {
  readonly type: string;
  readonly status: number;
  readonly limit?: number;
}

/**
 * Reads and parses the body as express.json({ limit, verify: guardJsonBody }) does: a body past
 * the limit (declared or received) is refused, the rest of it read off first so the connection
 * stays usable; the guards run on the raw bytes; a leading BOM is dropped; an empty body is {};
 * strict mode (an object or an array) before JSON.parse.
 */
function readJsonBody(req: IncomingMessage, limit: number, done: (error: unknown, body?: unknown) => void): void {
  const declared = req.headers['content-length'] === undefined ? undefined : Number.parseInt(req.headers['content-length'], 10);
  let refused: BodyError | undefined = declared !== undefined && declared > limit ? { type: 'entity.too.large', status: 413, limit } : undefined;
  const chunks: Buffer[] = [];
  let received = 0;
  let finished = false;
  const finish = (error: unknown, body?: unknown) => {
    if (finished) return;
    finished = true;
    req.off('data', onData);
    done(error, body);
  };
  const onData = (chunk: Buffer) => {
    received += chunk.length;
    if (refused) return;
    if (received > limit) {
      refused = { type: 'entity.too.large', status: 413, limit };
      chunks.length = 0;
      return;
    }
    chunks.push(chunk);
  };
  req.on('data', onData);
  req.once('end', () => {
    if (refused) return finish(refused);
    if (declared !== undefined && received !== declared) return finish({ type: 'request.size.invalid', status: 400 } satisfies BodyError);
    const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received);
    let body: unknown;
    try {
      guardJsonBody(req, undefined, raw, 'utf-8');
      body = parseStrict(raw);
    } catch (error) {
      return finish(error);
    }
    return finish(undefined, body);
  });
  req.once('close', () => {
    if (!req.complete) finish({ type: 'request.aborted', status: 400 } satisfies BodyError);
  });
  req.on('error', () => {}); // an aborted request also emits 'close', answered there
}

function parseStrict(raw: Buffer): unknown {
  let text = raw.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.length === 0) return {};
  // JSON's whitespace is space, tab, LF and CR (RFC 8259); the first other character must open an object or an array.
  let i = 0;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  if (text[i] !== '{' && text[i] !== '[') throw parseFailed();
  try {
    return JSON.parse(text);
  } catch {
    throw parseFailed();
  }
}

function parseFailed(): BodyError {
  return { type: 'entity.parse.failed', status: 400 };
}
