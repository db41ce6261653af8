import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The gateway's Prometheus metrics, on a Registry of their own (not prom-client's global one,
 * so two gateways in one test process, or a library that also uses prom-client, do not clash).
 *
 * Label values must be bounded: `route` is the route pattern (or "unmatched"), `model` a model
 * the price book serves (or "none"), never a client-supplied string.
 */
export interface GatewayMetrics {
  readonly registry: Registry;
  /** One per answered request; `status` 499 means the client left before the answer finished. */
  countRequest(labels: { readonly route: string; readonly status: number; readonly model?: string | undefined }): void;
  countTokens(model: string, tokens: { readonly input: number; readonly output: number }): void;
  /** Reservations placed and not yet settled, released or expired. */
  readonly reservationsOpen: Pick<Gauge, 'inc' | 'dec' | 'set'>;
  /** Whole upstream call, dispatch to last byte. */
  observeUpstreamLatency(model: string, milliseconds: number): void;
  observeEventStoreAppend(milliseconds: number): void;
  /** How far global-log readers trail the committed log (GlobalLogMonitor sets it). */
  readonly globalLog: { set(lag: { seconds: number; hiddenEvents: number; blockerAgeSeconds: number }): void };
}

export interface GatewayMetricsOptions {
  /** Also export prom-client's process metrics (CPU, memory, event-loop lag). */
  readonly processMetrics?: boolean;
}

export function createGatewayMetrics(options: GatewayMetricsOptions = {}): GatewayMetrics {
  const registry = new Registry();
  if (options.processMetrics) collectDefaultMetrics({ register: registry });

  const requests = new Counter({
    name: 'tollgate_http_requests_total',
    help: 'HTTP requests answered, by route pattern, status and model.',
    labelNames: ['route', 'status', 'model'] as const,
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'tollgate_tokens_total',
    help: 'Tokens metered, by model and direction (input or output).',
    labelNames: ['model', 'direction'] as const,
    registers: [registry],
  });
  const reservationsOpen = new Gauge({
    name: 'tollgate_reservations_open',
    help: 'Reservations placed and not yet settled, released or expired.',
    registers: [registry],
  });
  const upstreamLatency = new Histogram({
    name: 'tollgate_upstream_latency_seconds',
    help: 'Upstream inference call duration, dispatch to last byte, by model.',
    labelNames: ['model'] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const appendLatency = new Histogram({
    name: 'tollgate_eventstore_append_seconds',
    help: 'Event store append duration, including the durable commit.',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [registry],
  });

  const globalLogLag = new Gauge({
    name: 'tollgate_global_log_lag_seconds',
    help: 'Age of the oldest committed event that global-log readers (projections, process managers) cannot read yet, because an older transaction is still open; 0 when none.',
    registers: [registry],
  });
  const globalLogHidden = new Gauge({
    name: 'tollgate_global_log_hidden_events',
    help: 'Committed events global-log readers cannot read yet (counted up to 100000).',
    registers: [registry],
  });
  const globalLogBlocker = new Gauge({
    name: 'tollgate_global_log_blocking_transaction_age_seconds',
    help: 'Age of the transaction holding global-log readers back; 0 when nothing is held back.',
    registers: [registry],
  });

  return {
    registry,
    countRequest: ({ route, status, model }) => requests.inc({ route, status: String(status), model: model ?? 'none' }),
    countTokens: (model, { input, output }) => {
      if (input > 0) tokens.inc({ model, direction: 'input' }, input);
      if (output > 0) tokens.inc({ model, direction: 'output' }, output);
    },
    reservationsOpen,
    observeUpstreamLatency: (model, ms) => upstreamLatency.observe({ model }, ms / 1000),
    observeEventStoreAppend: (ms) => appendLatency.observe(ms / 1000),
    globalLog: {
      set: ({ seconds, hiddenEvents, blockerAgeSeconds }) => {
        globalLogLag.set(seconds);
        globalLogHidden.set(hiddenEvents);
        globalLogBlocker.set(blockerAgeSeconds);
      },
    },
  };
}

/** `GET /metrics`: the registry in Prometheus text format. */
export function metricsHandler(registry: Registry): RequestHandler {
  return async (_req, res) => {
    const body = await registry.metrics();
    res.set('content-type', registry.contentType).send(body);
  };
}
