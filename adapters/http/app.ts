import type { RequestListener } from 'node:http';
import net from 'node:net';
import express, { Router, type Express } from 'express';
import type { Logger } from 'pino';
import type { InferenceAdapter } from '../inference';
import { AuthFailureLimiter, limitAuthFailures } from './admission/auth-failures';
import { guardJsonBody } from './openai/body-guards';
import { notFound, errorHandler } from './openai/error-handler';
import { metricsHandler, type GatewayMetrics } from './observability/metrics';
import { requestId } from './observability/request-id';
import { observeRequests } from './observability/request-log';
import type { GlobalLogHealth } from '../../src/global-log-monitor';
import { mountCatalogueRoutes } from './routes/catalogue';
import { mountInferenceRoutes, type InferenceRouteDeps } from './routes/inference';
import { mountAudioRoutes } from './routes/audio';
import type { AudioAdapter } from '../inference';
import { mountOpenApiRoutes } from './openapi/routes';
import { leanV1 } from './lean-v1';

export interface AppDeps extends InferenceRouteDeps {
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly inference: InferenceAdapter;
  /** resolves when the database answers; rejects otherwise */
  readonly checkDatabase: () => Promise<void>;
  /** How far global-log readers trail (stores whose readers can be held back); see GlobalLogMonitor. */
  readonly globalLog?: () => GlobalLogHealth;
  readonly startedAt: Date;
  /** further routers (admin, account, billing, dashboard), mounted before the 404 handler */
  readonly extraRoutes?: readonly ((router: Router) => void)[];
  /** largest JSON body accepted, in bytes (8 MiB when absent) */
  readonly bodyLimit?: number;
  /** the /v1/audio routes' upstream side; without it they are not served */
  readonly audio?: AudioAdapter;
  /** largest audio upload, in bytes (413 beyond) */
  readonly maxAudioBytes?: number;
  /** repeated 401s from one client address are refused with 429 (see auth-failures.ts) */
  readonly authFailures?: AuthFailureLimiter;
}

const DEFAULT_BODY_LIMIT = 8 * 1_024 * 1_024;

/**
 * What a node:http server serves: the inference routes on the lean path (lean-v1.ts), which
 * hands every other request, and the unusual ones on those routes, to the express app.
 */
export function createRequestListener(deps: AppDeps): RequestListener & { readonly express: Express } {
  const app = createApp(deps);
  // The express app stays reachable for what reads its routes (the OpenAPI test lists them).
  return Object.assign(leanV1({ ...deps, bodyLimit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT }, app), { express: app });
}

/** The whole HTTP surface: OpenAI-compatible API, catalogue, operations endpoints. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  // API answers are never revalidated, and hashing every body for an ETag costs CPU per request.
  app.set('etag', false);
  app.use(requestId());
  app.use(observeRequests({ logger: deps.logger, metrics: deps.metrics }));
  if (deps.authFailures) app.use(limitAuthFailures(deps.authFailures, deps.keys));
  const json = express.json({ limit: deps.bodyLimit ?? DEFAULT_BODY_LIMIT, verify: guardJsonBody });
  // Webhooks are verified against their exact bytes: their route reads the raw body itself.
  app.use((req, res, next) => (req.path.startsWith('/webhooks/') ? next() : json(req, res, next)));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const [database, upstream] = await Promise.all([
      deps.checkDatabase().then(
        () => true,
        () => false,
      ),
      anyUpstreamAnswers(deps.inference),
    ]);
    const log = deps.globalLog?.();
    const ready = database && upstream;
    // A stalled global log is "degraded", still 200: requests are served correctly (money is
    // decided on streams, revocations and suspensions are announced past the stall), and the
    // stall is cluster-wide, so a 503 would make a load balancer drop every instance at once over
    // one forgotten transaction. Alert on the body or the tollgate_global_log_lag_seconds metric.
    res.status(ready ? 200 : 503).json({
      status: !ready ? 'not ready' : log?.stalled ? 'degraded' : 'ready',
      database: database ? 'ok' : 'unreachable',
      upstreams: upstream ? 'ok' : 'none reachable',
      ...(log && { global_log: log.stalled ? 'stalled' : 'ok' }),
      ...(log?.stalled && { global_log_lag_seconds: Math.round(log.lagSeconds * 10) / 10 }),
    });
  });
  app.get('/metrics', metricsHandler(deps.metrics.registry));

  const router = Router();
  mountInferenceRoutes(router, deps);
  if (deps.audio) mountAudioRoutes(router, { ...deps, audio: deps.audio, maxAudioBytes: deps.maxAudioBytes ?? 25 * 1_024 * 1_024 });
  mountCatalogueRoutes(router, deps);
  // The API's description: /openapi.json and its reference page /docs.
  mountOpenApiRoutes(router);
  for (const mount of deps.extraRoutes ?? []) mount(router);
  app.use(router);

  app.use(notFound());
  app.use(errorHandler(deps.logger));
  return app;
}

/** Ready needs one upstream accepting connections: a TCP connect, which every server kind answers. */
async function anyUpstreamAnswers(inference: InferenceAdapter): Promise<boolean> {
  const urls = inference.upstreamUrls();
  const results = await Promise.all(urls.map((url) => connects(new URL(url))));
  return results.some(Boolean);
}

function connects(url: URL): Promise<boolean> {
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  return new Promise((resolve) => {
    const socket = net.connect({ host: url.hostname, port, timeout: 1_000 });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('timeout', () => done(false));
    socket.once('error', () => done(false));
  });
}
