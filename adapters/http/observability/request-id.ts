import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

export const REQUEST_ID_HEADER = 'x-request-id';

// A caller's id is kept only if it is a plain token: no spaces, quotes or control characters
// that could forge log fields or split headers, and short enough to index.
const saneRequestId = /^[A-Za-z0-9._:-]{8,128}$/;

/** The id this request is logged and answered under (set by `requestId()`). */
export function requestIdOf(res: Response): string {
  const id: unknown = res.locals['requestId'];
  return typeof id === 'string' ? id : 'unknown';
}

export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '')}`;
}

/**
 * Express middleware: adopts the caller's `x-request-id` when it is a sane token (so a
 * client's or proxy's id follows the request through our logs), otherwise makes one, and
 * echoes it in the response header. Mount it first, before body parsing.
 */
export function requestId(generate: () => string = newRequestId) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const offered = req.get(REQUEST_ID_HEADER);
    const id = offered !== undefined && saneRequestId.test(offered) ? offered : generate();
    res.locals['requestId'] = id;
    res.setHeader(REQUEST_ID_HEADER, id);
    next();
  };
}
