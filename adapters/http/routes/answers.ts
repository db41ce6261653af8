import type { Response } from 'express';
import type { ClientError } from '../../inference';
import { requestIdOf } from '../observability/request-id';
import { ApiError, internal } from '../openai/errors';

/** The answers every dispatch may end with, whatever it serves (src/inference's Answer and AudioAnswer share them). */
export type CommonAnswer =
  /** the stream was relayed: end it */
  | { readonly kind: 'end_stream' }
  /** nothing was relayed before the maximum request duration ended the request */
  | { readonly kind: 'timed_out'; readonly maxRequestDurationMs: number }
  | { readonly kind: 'client_error'; readonly error: ClientError }
  /** the gateway itself failed */
  | { readonly kind: 'failed' };

/** Writes one of the common answers (nothing once the client is gone). */
export function writeCommonAnswer(res: Response, answer: CommonAnswer): void {
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
    case 'failed':
      if (!res.headersSent) res.status(500).json(internal(requestIdOf(res)).toBody());
      else res.destroy();
      return;
  }
}
