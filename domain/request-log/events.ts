import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema, naturalSchema } from '../events/schema';

/**
 * The request log: what the gateway observed of one API request, apart from the wallet. Its
 * streams have a maximum age (90 days by default): the wallet keeps a request's money facts
 * forever (ReservationSettled/Released: amounts, token counts, price version, outcome), the
 * request log keeps its metadata (endpoint, model, key, upstream, status, timings) only as long
 * as the privacy policy says. Metadata only, never content.
 */
export const RequestLogged = defineEvent(
  'RequestLogged',
  z.object({
    requestId: idSchema,
    accountId: idSchema,
    keyId: idSchema,
    model: idSchema,
    /** chat, completion, embedding, transcription, translation or speech: the endpoint */
    operation: idSchema,
    /** how the reservation ended */
    ended: z.enum(['settled', 'released']),
    /** the settlement's outcome or the release's reason */
    outcome: idSchema,
    usage: z
      .object({
        inputTokens: naturalSchema,
        outputTokens: naturalSchema,
        estimated: z.boolean(),
        audioMilliseconds: naturalSchema.optional(),
        inputCharacters: naturalSchema.optional(),
      })
      .nullable(),
    upstream: z.string().nullable(),
    httpStatus: z.number().int().nullable(),
    stream: z.boolean(),
    /** null when no upstream answer was observed (the gateway failed first) */
    latencyMs: z.number().int().min(0).nullable(),
    timeToFirstTokenMs: z.number().int().min(0).nullable(),
  }),
);

export const requestLogEventDefinitions = [RequestLogged] as const;

export type RequestLogEvent = EventOf<(typeof requestLogEventDefinitions)[number]>;
export type RequestLogEntry = RequestLogEvent['data'];

const PREFIX = 'request-log-';

/**
 * One request-log stream per account per UTC day: appends stay short (a stream's lock is held by
 * one account's requests of one day), a cold load reads one day at most, and a whole day expires
 * together. `day` is YYYY-MM-DD.
 */
export function requestLogStreamId(accountId: string, day: string): string {
  return `${PREFIX}${day}-${accountId}`;
}

export function isRequestLogStream(streamId: string): boolean {
  return streamId.startsWith(PREFIX);
}

/** 90 days, as the privacy policy promises for API request logs. */
export const DEFAULT_REQUEST_LOG_RETENTION_DAYS = 90;
