import type { ServerResponse } from 'node:http';
import type { ClientError } from '../../inference';
import { writeJson } from '../json-response';
import { requestIdOf } from '../observability/request-id';
import { ApiError, internal } from '../openai/errors';

/** The answers every dispatch may end with, whatever it serves (src/inference's Answer and AudioAnswer share them). */
export type CommonAnswer =
  /** the stream was relayed: end it */
  | { readonly kind: 'end_stream' }
  /** the maximum request duration cut a relayed stream: its last event is the error (no [DONE]) */
  | { readonly kind: 'stream_timed_out'; readonly maxRequestDurationMs: number }
  /** nothing was relayed before the maximum request duration ended the request */
  | { readonly kind: 'timed_out'; readonly maxRequestDurationMs: number }
  | { readonly kind: 'client_error'; readonly error: ClientError }
  /** the gateway itself failed */
  | { readonly kind: 'failed' };

/**
 * Writes one of the common answers (nothing once the client is gone). Works on a bare node
 * response, so the lean /v1 path and express's routes write the same bytes.
 */
export function writeCommonAnswer(res: ServerResponse, answer: CommonAnswer): void {
  if (res.destroyed) return;
  switch (answer.kind) {
    case 'end_stream':
      res.end();
      return;
    case 'stream_timed_out':
      // Headers and part of the answer are out: the error goes as the stream's last event.
      res.end(`data: ${JSON.stringify(maxDurationReached(answer.maxRequestDurationMs).toBody())}\n\n`);
      return;
    case 'timed_out': {
      const error = maxDurationReached(answer.maxRequestDurationMs);
      writeJson(res, error.status, error.toBody());
      return;
    }
    case 'client_error':
      writeJson(
        res,
        answer.error.status,
        answer.error.body,
        answer.error.retryAfterSeconds !== undefined ? { 'retry-after': String(answer.error.retryAfterSeconds) } : {},
      );
      return;
    case 'failed':
      if (!res.headersSent) writeJson(res, 500, internal(requestIdOf(res)).toBody());
      else res.destroy();
      return;
  }
}

function maxDurationReached(maxRequestDurationMs: number): ApiError {
  const seconds = Math.round(maxRequestDurationMs / 1_000);
  return new ApiError(
    504,
    'server_error',
    'request_timeout',
    null,
    `The request ran longer than this gateway's maximum request duration (${seconds} s) and was ended.`,
  );
}
