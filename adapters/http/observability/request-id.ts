import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { NextFunction, Request, Response } from 'express';

export const REQUEST_ID_HEADER = 'x-request-id';

// A caller's id is kept only if it is a plain token: no spaces, quotes or control characters
// that could forge log fields or split headers, and short enough to index.
const saneRequestId = /^[A-Za-z0-9._:-]{8,128}$/;

/** Where a response keeps its request id: a symbol, so plain node responses (the lean /v1 path) carry it too. */
const REQUEST_ID = Symbol('tollgate.requestId');

/** The id this request is logged and answered under (set by `requestId()` or `assignRequestId`). */
export function requestIdOf(res: ServerResponse): string {
  const id: unknown = (res as ServerResponse & { [REQUEST_ID]?: unknown })[REQUEST_ID];
  return typeof id === 'string' ? id : 'unknown';
}

export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '')}`;
}

/**
 * Adopts the caller's `x-request-id` when it is a sane token (so a client's or proxy's id
 * follows the request through our logs), otherwise makes one; echoes it in the response header.
 */
export function assignRequestId(offered: string | undefined, res: ServerResponse, generate: () => string = newRequestId): string {
  const id = offered !== undefined && saneRequestId.test(offered) ? offered : generate();
  (res as ServerResponse & { [REQUEST_ID]?: string })[REQUEST_ID] = id;
  res.setHeader(REQUEST_ID_HEADER, id);
  return id;
}

/** Express middleware over `assignRequestId`. Mount it first, before body parsing. */
export function requestId(generate: () => string = newRequestId) {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.locals['requestId'] = assignRequestId(req.get(REQUEST_ID_HEADER), res, generate);
    next();
  };
}
