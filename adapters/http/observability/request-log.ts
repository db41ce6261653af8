import type { ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Request, RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { GatewayMetrics } from './metrics';
import { requestIdOf } from './request-id';

/**
 * One JSON log line per request, and the request and token metrics, written in one place when
 * the response ends. Routes add what they learn with `annotateRequest`; nothing else is logged:
 * no body, no header, no full key.
 */

/** What a route learns about a request that is worth a log field. All metadata. */
export interface RequestFacts {
  readonly accountId?: string;
  /** The key's public prefix; cut to KEY_PREFIX_MAX characters whatever is passed. */
  readonly keyPrefix?: string;
  /** A model the price book serves: it becomes a metric label, so never the raw request field. */
  readonly model?: string;
  readonly inputTokens?: number;
  readonly outputTokens?: number;
}

export interface RequestLogEntry extends RequestFacts {
  readonly requestId: string;
  /** Route pattern such as "/v1/chat/completions", or "unmatched". */
  readonly route: string;
  readonly status: number;
  readonly latencyMs: number;
}

/** A prefix longer than this could be most of a key, so the log never holds more. */
export const KEY_PREFIX_MAX = 12;

/** HTTP 499 (nginx's "client closed request"): the client left before the response was complete. */
export const CLIENT_CLOSED_REQUEST = 499;

/** Writes the one line for a request. Fields are copied by name, so nothing else can slip in. */
export function logRequest(logger: Pick<Logger, 'info'>, entry: RequestLogEntry): void {
  const line: Record<string, string | number> = {
    requestId: entry.requestId,
    route: entry.route,
    status: entry.status,
    latencyMs: Math.round(entry.latencyMs * 10) / 10,
  };
  if (entry.accountId !== undefined) line['accountId'] = entry.accountId;
  if (entry.keyPrefix !== undefined) line['keyPrefix'] = entry.keyPrefix.slice(0, KEY_PREFIX_MAX);
  if (entry.model !== undefined) line['model'] = entry.model;
  if (entry.inputTokens !== undefined) line['inputTokens'] = entry.inputTokens;
  if (entry.outputTokens !== undefined) line['outputTokens'] = entry.outputTokens;
  logger.info(line, 'request');
}

interface RequestRecord {
  facts: RequestFacts;
  holds: number;
  closed: boolean;
  written: boolean;
  /** called when a hold is released, to write the line if it was the last */
  write(): void;
}

/** Where a response keeps its record: a symbol, so plain node responses (the lean /v1 path) carry one too. */
const RECORD = Symbol('tollgate.requestRecord');

type Recorded = ServerResponse & { [RECORD]?: RequestRecord };

function recordOf(res: ServerResponse): RequestRecord | undefined {
  return (res as Recorded)[RECORD];
}

/** Adds facts to this request's log line; later calls override earlier fields. */
export function annotateRequest(res: ServerResponse, facts: RequestFacts): void {
  const record = recordOf(res);
  if (record) record.facts = { ...record.facts, ...facts };
}

/**
 * For a route that still has facts to add after the response ends (a stream whose client
 * left: the token count arrives once the upstream is cancelled). The line is written when
 * the response has ended AND every returned release function has been called.
 */
export function holdRequestLog(res: ServerResponse): () => void {
  const record = recordOf(res);
  if (!record) return () => {};
  record.holds += 1;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    record.holds -= 1;
    record.write();
  };
}

export interface ObserveRequestsOptions {
  readonly logger: Pick<Logger, 'info'>;
  readonly metrics?: GatewayMetrics;
  /** Monotonic milliseconds; inject a fake one in tests. */
  readonly now?: () => number;
}

/**
 * Starts the record of one request on its response: the log line and the metrics are written
 * once the response has closed and no hold is left. `routeOf` names the route pattern, asked
 * when the response closes. Shared by the express middleware and the lean /v1 path.
 */
export function recordRequest(res: ServerResponse, options: ObserveRequestsOptions, routeOf: () => string): void {
  const now = options.now ?? performance.now.bind(performance);
  const startedAt = now();
  let status = 0;
  let route = 'unmatched';
  const record: RequestRecord = {
    facts: {},
    holds: 0,
    closed: false,
    written: false,
    write() {
      if (record.written || !record.closed || record.holds > 0) return;
      record.written = true;
      const { facts } = record;
      logRequest(options.logger, { ...facts, requestId: requestIdOf(res), route, status, latencyMs: now() - startedAt });
      options.metrics?.countRequest({ route, status, model: facts.model });
      if (facts.model !== undefined) {
        options.metrics?.countTokens(facts.model, { input: facts.inputTokens ?? 0, output: facts.outputTokens ?? 0 });
      }
    },
  };
  (res as Recorded)[RECORD] = record;
  // 'close' follows 'finish' for a completed response and comes alone for an aborted one;
  // latency is taken when the line is written, so a held line counts the whole work.
  res.once('close', () => {
    record.closed = true;
    status = res.writableFinished ? res.statusCode : CLIENT_CLOSED_REQUEST;
    route = routeOf();
    record.write();
  });
}

/** Express middleware; mount right after `requestId()`. */
export function observeRequests(options: ObserveRequestsOptions): RequestHandler {
  return (req, res, next) => {
    recordRequest(res, options, () => routeOf(req));
    next();
  };
}

function routeOf(req: Request): string {
  const path: unknown = req.route?.path;
  return typeof path === 'string' ? `${req.baseUrl}${path}` : 'unmatched';
}
