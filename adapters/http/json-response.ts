import type { ServerResponse } from 'node:http';

/**
 * A JSON answer on a plain node response, as express's `res.status().set().json()` writes it
 * (same content type, explicit length, no ETag): for the lean /v1 path and for answers both
 * paths share.
 */
export function writeJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  const text = JSON.stringify(body);
  res.statusCode = status;
  for (const name in headers) res.setHeader(name, headers[name]!);
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.end(text);
}
