import { isUtf8 } from 'node:buffer';

/**
 * Checks on a JSON body's raw bytes, run by the JSON parser before it decodes them (express's
 * `verify` option). Two things body-parser lets through and a billing gateway must not:
 * - a charset other than UTF-8, or invalid UTF-8: decoding would silently turn it into U+FFFD and the request would be served
 *   and charged for text the client never sent;
 * - nesting deeper than any OpenAI request needs: JSON.parse copes, but every later recursive
 *   walk (validation, token counting, JSON.stringify for the upstream) would overflow the stack
 *   and turn a hostile body into a 500.
 * A refusal is a 400 (see errorHandler), before anything is reserved.
 */

/** Deeper than any real request (tool schemas included), far below what recursion can survive. */
export const MAX_JSON_DEPTH = 64;

export type BodyGuardType = 'charset.unsupported' | 'entity.invalid.utf8' | 'entity.too.deep';

export class BodyRejectedError extends Error {
  override readonly name = 'BodyRejectedError';
  readonly status: number;

  constructor(readonly type: BodyGuardType) {
    super(type);
    this.status = type === 'charset.unsupported' ? 415 : 400;
  }
}

/** express.json({ verify }) hook: throws BodyRejectedError for a body that must not be parsed. */
export function guardJsonBody(_req: unknown, _res: unknown, body: Buffer, encoding: string | null): void {
  // JSON between systems is UTF-8 (RFC 8259 section 8.1), as OpenAI's API takes it; another
  // declared charset (utf-7, utf-16) would decode these bytes into text nobody checked.
  const charset = encoding?.toLowerCase() ?? 'utf-8';
  if (charset !== 'utf-8' && charset !== 'utf8') throw new BodyRejectedError('charset.unsupported');
  if (!isUtf8(body)) throw new BodyRejectedError('entity.invalid.utf8');
  if (jsonDepthExceeds(body, MAX_JSON_DEPTH)) throw new BodyRejectedError('entity.too.deep');
}

/** Whether arrays and objects nest deeper than `limit`, by one pass over the bytes (strings skipped). */
export function jsonDepthExceeds(body: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < body.length; i++) {
    const byte = body[i]!;
    if (inString) {
      if (byte === 0x5c /* \ */) i++;
      else if (byte === 0x22 /* " */) inString = false;
    } else if (byte === 0x22) {
      inString = true;
    } else if (byte === 0x5b /* [ */ || byte === 0x7b /* { */) {
      if (++depth > limit) return true;
    } else if (byte === 0x5d /* ] */ || byte === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}
