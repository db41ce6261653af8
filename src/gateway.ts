import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Router } from 'express';
import type { Logger } from 'pino';
import { DEFAULT_ACCOUNT_POLICY, type AccountPolicy } from '../domain/account';
import { domainEventCodec, type DomainEvent } from '../domain/events';
import { usd } from '../domain/money';
import { createKurrentEventStoreFromConnectionString } from '../adapters/eventstore/kurrentdb';
import { createPostgresEventStore } from '../adapters/eventstore/postgres';
import { createRequestListener } from '../adapters/http/app';
import { answerMalformedHttp } from '../adapters/http/client-errors';
import { RateLimiter } from '../adapters/http/admission/rate-limiter';
import { AuthFailureLimiter } from '../adapters/http/admission/auth-failures';
import { createGatewayMetrics, type GatewayMetrics } from '../adapters/http/observability/metrics';
import { AudioAdapter, createInferenceAdapter, loadModelsFile, warmUpTokenizer, type InferenceAdapter, type ModelSpec } from '../adapters/inference';
import { postgresAccountDirectory } from '../adapters/eventstore/postgres/account-directory';
import { scanningAccountDirectory } from './account-directory';
import type { AccountDirectory } from './ports/account-directory';
import type { PersonalDataVault as PersonalDataVaultPort } from './ports/personal-data-vault';
import { ApiKeys } from './api-keys';
import { accountRateLimits, type Config } from './config';
import { openDatabase, type Database } from './database';
import { openVault, resolveMasterKey } from './master-key';
import { firstRun, type FirstRun } from './first-run';
import { bootstrapAdminKey } from './admin-key';
import { createLedger, type Ledger } from './ledger';
import { RetentionSchedule } from './compliance/retention-schedule';
import { HistoricalCosts } from './historical-costs';
import { ANNOUNCED_EVENT_TYPES, LiveLog } from './live-log';
import { GlobalLogMonitor } from './global-log-monitor';
import type { EventStore } from './ports/event-store';
import { SettlementTracker } from './settlements';
import { ExpiryProcess } from './process-managers/expiry';
import { ForfeitureSchedule } from './process-managers/forfeiture';
import { InstanceLease, type Worker } from './instances/lease';
import { AutoTopUpProcess, stripeOffSessionCharger } from './process-managers/auto-top-up';
import { LowBalanceAlertProcess, lowBalanceAlertSubscriber } from './process-managers/low-balance-alerts';
import { stripeClientFromConfig } from '../adapters/payments/stripe-client';
import { StripeCustomers } from '../adapters/payments/customers';
import { projections } from './read-models/registry';
import { PriceBookAnnouncer } from './notices/announcer';
import { LowBalanceNoticePublisher } from './notices/low-balance';
import { NoticeMailer } from './notices/mailer';
import { UpstreamProbe } from './notices/status';
import { MailOutbox, MailSender, mailOutboxSubscriber } from './mail/outbox';
import { createMailTransport } from '../adapters/mail/transport';
import type { MailTransport } from './ports/mail-transport';
import { Identity } from './identity/identity';
import { IdentityReconciler } from './identity/reconciler';
import { runProjections, type RunningProjection } from './read-models/runner';

/** Everything a running gateway holds, for the routes mounted on it and for shutdown. */
export interface Gateway {
  readonly config: Config;
  readonly log: Logger;
  readonly database: Database;
  readonly store: EventStore<DomainEvent>;
  readonly ledger: Ledger;
  readonly keys: ApiKeys;
  readonly liveLog: LiveLog;
  /** the estimate's historical average per model and operation, shared by all instances */
  readonly historicalCosts: HistoricalCosts;
  readonly inference: InferenceAdapter;
  /** the admin views' lookups across the log (account search, an account's keys) */
  readonly accountDirectory: AccountDirectory;
  /** personal fields encrypted per account (crypto-shredding); the only way to account keys (wrapped under the master key) */
  readonly vault: PersonalDataVaultPort;
  readonly metrics: GatewayMetrics;
  readonly settlements: SettlementTracker;
  readonly policy: AccountPolicy;
  readonly server: Server;
  /** where it listens, e.g. http://127.0.0.1:8080 */
  readonly url: string;
  readonly firstRun: FirstRun | undefined;
  /** running read models by name (see src/read-models/registry.ts) */
  readonly projections: ReadonlyMap<string, RunningProjection>;
  readonly expiry: ExpiryProcess;
  /** this instance's lease; the background workers run where it holds the workers role */
  readonly instance: InstanceLease;
  /** wall clock for what is in force (prices, retirements), notices and the status page; tests inject one */
  readonly clock: () => Date;
  /** requests emails (verification, resets, invitations, notices); see src/mail/outbox.ts */
  readonly mail: MailOutbox;
  /** where the outbox's emails go (SMTP, or .eml files under the data dir) */
  readonly mailTransport: MailTransport;
  /** users, their credentials, sessions and memberships (src/identity) */
  readonly identity: Identity;
  close(): Promise<void>;
}

export type RouteMount = (router: Router, gateway: Omit<Gateway, 'server' | 'url' | 'close'>) => void;

/** What a test may replace so that its verdict does not depend on the machine's speed. */
export interface GatewaySeams {
  /** Monotonic milliseconds for the admission limiters (per-key rate limits, authentication failures); performance.now() when absent. */
  readonly admissionClock?: () => number;
  /** Wall-clock time for the retention schedule (what is due, and the instant a run measures from); the real clock when absent. */
  readonly retentionClock?: () => Date;
  /** The clock keys' expiry times are judged by; a test moves it past an expiry. */
  readonly keysClock?: () => Date;
  /** Wall-clock time for prices and retirements in force, notices, announcements and uptime; the real clock when absent. */
  readonly clock?: () => Date;
  /** Wall-clock time for the forfeiture of unclaimed credit 360 days after closure; the real clock when absent. */
  readonly forfeitureClock?: () => Date;
  /**
   * How long commands nobody waits on wait to share the next commit (settlements: 10 ms;
   * request-log entries: REQUEST_LOG_DEFER_MS). A test that counts commits makes them long, so
   * that what it counts does not depend on the machine's speed; a reader's wait ends them.
   */
  readonly deferrals?: { readonly deferMs?: number; readonly requestLogDeferMs?: number };
}

export function accountPolicyFrom(config: Config): AccountPolicy {
  return {
    ...DEFAULT_ACCOUNT_POLICY,
    minimumTopUp: usd(config.TOLLGATE_MIN_TOP_UP_USD),
    maximumBalance: usd(config.TOLLGATE_MAX_BALANCE_USD),
    reservationTtlMs: (config.TOLLGATE_MAX_REQUEST_DURATION_S + SETTLEMENT_GRACE_S) * 1_000,
  };
}

/**
 * A reservation's deadline is the maximum request duration plus this: the gateway has ended the
 * request by then, and its settlement has had time to land (it retries through short outages).
 */
export const SETTLEMENT_GRACE_S = 60;

/** How often the workers finish identity commands a crash interrupted (they also do at start). */
const IDENTITY_RECONCILE_INTERVAL_MS = 60_000;

/**
 * Composition root: database (embedded or configured), event store (PostgreSQL or KurrentDB),
 * ledger, keys, live log, upstreams (models file, or the stand-in on a first run), HTTP.
 */
export async function startGateway(config: Config, log: Logger, routes: readonly RouteMount[] = [], seams: GatewaySeams = {}): Promise<Gateway> {
  // A missing master key stops start-up before the database is opened; a wrong one right after,
  // before anything reads or writes data.
  const masterKey = resolveMasterKey(config);
  const database = await openDatabase(config, log);
  const cleanups: (() => Promise<void>)[] = [() => database.close()];
  const cleanup = async () => {
    for (const step of cleanups.reverse()) await step().catch(() => {});
  };
  try {
    const vault = await openVault(config, database.pool, log, masterKey);
    const metrics = createGatewayMetrics({ processMetrics: true });
    const store = timeAppends(
      config.EVENTSTORE_URL
        ? createKurrentEventStoreFromConnectionString<DomainEvent>(config.EVENTSTORE_URL, domainEventCodec)
        : createPostgresEventStore<DomainEvent>(database.pool, domainEventCodec, { announcedTypes: ANNOUNCED_EVENT_TYPES }),
      (ms) => metrics.observeEventStoreAppend(ms),
    );
    cleanups.push(() => store.close());
    const accountDirectory = config.EVENTSTORE_URL ? scanningAccountDirectory(store) : postgresAccountDirectory(database.pool);
    const policy = accountPolicyFrom(config);
    const ledger = createLedger(store, policy, { requestLogRetentionDays: config.TOLLGATE_REQUEST_LOG_RETENTION_DAYS, ...seams.deferrals });
    const keys = new ApiKeys(ledger, seams.keysClock);
    const liveLog = new LiveLog(ledger, keys, await store.headPosition(), (error) => {
      log.error(
        { err: { name: (error as Error).name, code: (error as { code?: unknown }).code } },
        'global log subscription failed; following the log again in 1 s',
      );
    });
    liveLog.start();
    cleanups.push(async () => liveLog.stop());
    const globalLogMonitor =
      store.globalLogLag &&
      new GlobalLogMonitor(() => store.globalLogLag!(), metrics.globalLog, log, { stalledAfterS: config.TOLLGATE_GLOBAL_LOG_STALLED_AFTER_S });
    globalLogMonitor?.start();
    if (globalLogMonitor) cleanups.push(() => globalLogMonitor.stop());

    // One subscriber applies every read model (each event read and decoded once per process).
    // The low-balance alert subscriber rides along: one read of the log, one transaction per batch.
    const readModels = runProjections(database.pool, store, [...projections, lowBalanceAlertSubscriber, mailOutboxSubscriber], {
      onError: (error) =>
        log.error(
          { projections: 'all', err: { name: (error as Error).name, message: (error as Error).message } },
          'projection batch failed; retrying from the checkpoints',
        ),
    });
    const running = new Map(projections.map((projection) => [projection.name, readModels]));
    cleanups.push(() => readModels.stop());
    const historicalCosts = new HistoricalCosts(database.pool, config.TOLLGATE_HISTORICAL_AVERAGE_REFRESH_S * 1_000, (error) =>
      log.warn({ err: { name: (error as Error).name, message: (error as Error).message } }, 'historical average refresh failed; keeping the last averages'),
    );
    historicalCosts.start();
    cleanups.push(() => historicalCosts.stop());

    const clock = seams.clock ?? (() => new Date());
    let models: readonly ModelSpec[] | undefined;
    const mail = new MailOutbox(database.pool, store, vault);
    const mailTransport = createMailTransport({ smtpUrl: config.SMTP_URL, dataDir: config.TOLLGATE_DATA_DIR });
    cleanups.push(async () => mailTransport.close());
    log.info(
      { transport: mailTransport.kind, to: mailTransport.describe },
      mailTransport.kind === 'smtp' ? 'emails go out by SMTP' : 'no SMTP_URL: emails are written as .eml files',
    );
    // Links in emails: the configured public address, else the one this gateway listens on (known once it does).
    let listeningUrl = `http://${config.HOST}:${config.PORT}`;

    const identity = new Identity(database.pool, store, ledger, vault, mail, log, {
      bcryptCost: config.TOLLGATE_BCRYPT_COST,
      sessionIdleMs: config.TOLLGATE_SESSION_IDLE_S * 1_000,
      sessionMaxMs: config.TOLLGATE_SESSION_MAX_S * 1_000,
      signupPromo: usd(config.TOLLGATE_SIGNUP_PROMO_USD),
      signupPromoDays: config.TOLLGATE_SIGNUP_PROMO_DAYS,
      failuresPerEmail: config.TOLLGATE_SIGN_IN_FAILURES_PER_EMAIL,
      failuresPerAddress: config.TOLLGATE_SIGN_IN_FAILURES_PER_ADDRESS,
      failureWindowMs: 15 * 60_000,
    });

    const billingPollMs = config.TOLLGATE_BILLING_POLL_INTERVAL_S * 1_000;
    // Auto top-up charges cards, so it runs only where Stripe is configured.
    const stripe = stripeClientFromConfig(config);
    const customers = stripe ? new StripeCustomers(database.pool, stripe) : undefined;
    // The background workers run on one live instance at a time (src/instances/lease.ts); each
    // term of office starts fresh ones.
    const startWorkers = (): Worker[] => {
      expiry.start();
      const alerts = new LowBalanceAlertProcess(database.pool, store, vault, log, {
        pollIntervalMs: billingPollMs,
        retryBaseMs: config.TOLLGATE_ALERT_RETRY_BASE_S * 1_000,
      });
      alerts.start(readModels);
      const retention = new RetentionSchedule(
        { pool: database.pool, ledger, vault, log },
        { clock: seams.retentionClock ?? (() => new Date()), checkIntervalMs: config.TOLLGATE_RETENTION_CHECK_INTERVAL_S * 1_000 },
      );
      retention.start();
      const announcer = new PriceBookAnnouncer({ pool: database.pool, store, ledger, log, clock }, config.TOLLGATE_NOTICES_INTERVAL_S * 1_000);
      announcer.start();
      const noticeMailer = new NoticeMailer({ pool: database.pool, store, vault, outbox: mail, log, clock }, config.TOLLGATE_NOTICES_INTERVAL_S * 1_000);
      noticeMailer.start();
      const lowBalanceNotices = new LowBalanceNoticePublisher({ pool: database.pool, store, log, clock }, config.TOLLGATE_NOTICES_INTERVAL_S * 1_000);
      lowBalanceNotices.start();
      const probe = new UpstreamProbe(
        {
          pool: database.pool,
          log,
          clock,
          // The models are known once the models file (or the first run) is read, after the workers may start.
          upstreams: () =>
            (models ?? []).flatMap((m) => m.upstreams.map((u) => ({ model: m.id, baseUrl: u.baseUrl, ...(u.apiKey !== undefined && { apiKey: u.apiKey }) }))),
        },
        { intervalMs: config.TOLLGATE_PROBE_INTERVAL_S * 1_000 },
      );
      probe.start();
      const mailSender = new MailSender(database.pool, store, vault, mail, mailTransport, log, {
        from: config.TOLLGATE_MAIL_FROM,
        publicUrl: () => config.TOLLGATE_PUBLIC_URL ?? listeningUrl,
        pollIntervalMs: config.TOLLGATE_MAIL_POLL_INTERVAL_S * 1_000,
        retryBaseMs: config.TOLLGATE_MAIL_RETRY_BASE_S * 1_000,
      });
      mailSender.start();
      // Checked as often as retention: both act on days, not minutes.
      const forfeiture = new ForfeitureSchedule(
        { pool: database.pool, ledger, log },
        { clock: seams.forfeitureClock ?? (() => new Date()), checkIntervalMs: config.TOLLGATE_RETENTION_CHECK_INTERVAL_S * 1_000 },
      );
      forfeiture.start();
      const identityReconciler = new IdentityReconciler(identity, log, { intervalMs: IDENTITY_RECONCILE_INTERVAL_MS });
      identityReconciler.start();
      const workers: Worker[] = [expiry, alerts, retention, forfeiture, announcer, noticeMailer, lowBalanceNotices, probe, mailSender, identityReconciler];
      if (stripe && customers) {
        const charger = stripeOffSessionCharger(stripe, (accountId) => customers.savedPaymentMethodOf(accountId), {
          automaticTax: config.STRIPE_AUTOMATIC_TAX,
        });
        const autoTopUp = new AutoTopUpProcess(database.pool, store, ledger, charger, log, { pollIntervalMs: billingPollMs });
        autoTopUp.start();
        workers.push(autoTopUp);
      }
      return workers;
    };
    const instance = new InstanceLease(database.pool, log, { leaseMs: config.TOLLGATE_INSTANCE_LEASE_S * 1_000, startWorkers });
    const expiry = new ExpiryProcess(database.pool, ledger, log, config.TOLLGATE_EXPIRY_INTERVAL_S * 1_000, instance.id);
    await instance.start();
    cleanups.push(() => instance.stop());

    await bootstrapAdminKey(keys, ledger, config, log);

    let first: FirstRun | undefined;
    if (config.TOLLGATE_MODELS_FILE) {
      models = loadModelsFile(config.TOLLGATE_MODELS_FILE).models;
    } else {
      first = await firstRun(ledger, keys, vault, config, log, mailTransport);
      cleanups.push(() => first!.stop());
      models = first.models;
    }
    const inference = createInferenceAdapter(models, {
      headersTimeoutMs: config.TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S * 1_000,
      bodyTimeoutMs: config.TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S * 1_000,
    });
    cleanups.push(() => inference.close());
    const audio = new AudioAdapter({
      headersTimeoutMs: config.TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S * 1_000,
      bodyTimeoutMs: config.TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S * 1_000,
    });
    cleanups.push(() => audio.close());
    warmUpTokenizer();

    const settlements = new SettlementTracker({ hurry: (waiting) => ledger.hurry(waiting) });
    const parts = {
      config,
      log,
      database,
      store,
      ledger,
      keys,
      liveLog,
      historicalCosts,
      inference,
      accountDirectory,
      vault,
      metrics,
      settlements,
      policy,
      firstRun: first,
      projections: running,
      expiry,
      instance,
      clock,
      mail,
      mailTransport,
      identity,
    };
    const listener = createRequestListener({
      ledger,
      keys,
      inference,
      historicalCosts,
      // Each instance enforces its share of every limit: limit / live instances (admission/share.ts).
      limiter: new RateLimiter({ now: seams.admissionClock, instances: () => instance.liveInstances }),
      limits: { requestsPerMinute: config.TOLLGATE_RATE_LIMIT_RPM ?? null, tokensPerMinute: config.TOLLGATE_RATE_LIMIT_TPM ?? null },
      accountLimits: accountRateLimits(config),
      metrics,
      settlements,
      logger: log,
      marginBasisPoints: BigInt(config.TOLLGATE_ESTIMATE_MARGIN_BP),
      instanceId: instance.id,
      maxRequestDurationMs: config.TOLLGATE_MAX_REQUEST_DURATION_S * 1_000,
      checkDatabase: async () => {
        await database.pool.query('SELECT 1');
      },
      ...(globalLogMonitor && { globalLog: () => globalLogMonitor.health() }),
      startedAt: new Date(),
      now: clock,
      bodyLimit: config.TOLLGATE_MAX_BODY_BYTES,
      audio,
      maxAudioBytes: config.TOLLGATE_MAX_AUDIO_BYTES,
      authFailures: new AuthFailureLimiter({
        failuresPerMinute: config.TOLLGATE_AUTH_FAILURES_PER_MINUTE,
        now: seams.admissionClock,
        instances: () => instance.liveInstances,
        trustedProxies: config.TOLLGATE_TRUSTED_PROXIES,
      }),
      extraRoutes: routes.map((mount) => (router: Router) => mount(router, parts)),
    });
    const server = createServer(listener);
    answerMalformedHttp(server);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.PORT, config.HOST, resolve);
    }).catch((error: Error) => {
      throw new Error(`cannot listen on ${config.HOST}:${config.PORT}: ${error.message}`);
    });
    const { port } = server.address() as AddressInfo;
    const url = `http://${config.HOST === '0.0.0.0' ? '127.0.0.1' : config.HOST}:${port}`;
    listeningUrl = url;
    if (first) process.stdout.write(first.banner(url));
    return {
      ...parts,
      server,
      url,
      async close() {
        // Drain: stop accepting, let open requests (streams too) run to their end, close each
        // keep-alive connection as it falls idle. A connection still open after the drain
        // timeout (a client that never reads its stream to the end) is cut so shutdown cannot
        // hang. Then settlements finish, then the workers stop, and the database stops last.
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        const idle = setInterval(() => server.closeIdleConnections(), 100);
        let timer: NodeJS.Timeout | undefined;
        const drained = await Promise.race([
          closed.then(() => true),
          new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), config.TOLLGATE_DRAIN_TIMEOUT_S * 1_000))),
        ]);
        clearInterval(idle);
        clearTimeout(timer);
        if (!drained) {
          const open = await new Promise<number>((resolve) => server.getConnections((_error, count) => resolve(count ?? 0)));
          log.warn({ open, drainTimeoutS: config.TOLLGATE_DRAIN_TIMEOUT_S }, 'drain timeout reached: cutting the connections still open');
          server.closeAllConnections();
          await closed;
        }
        const unsettled = await settlements.drain();
        if (unsettled > 0) log.warn({ unsettled }, 'shutting down with settlements still retrying; their reservations will expire uncharged');
        await cleanup();
      },
    };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

/** The same store, with every append's latency reported (the event-store append histogram). */
function timeAppends<E>(store: EventStore<E>, observe: (milliseconds: number) => void): EventStore<E> {
  const timed = async <T>(append: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await append();
    } finally {
      observe(performance.now() - started);
    }
  };
  return {
    ...store,
    appendToStream: (streamId, events, options) => timed(() => store.appendToStream(streamId, events, options)),
    appendToStreams: (requests) => timed(() => store.appendToStreams(requests)),
  };
}
