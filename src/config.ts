import { z } from 'zod';

/**
 * Everything Tollgate reads from its environment, parsed once at start-up. A wrong value stops
 * start-up with one line that names the variable (see ConfigError). docker-compose.yml sets
 * the same names.
 */
const optionalString = z
  .string()
  .transform((s) => s.trim())
  .pipe(z.string())
  .optional()
  .transform((s) => (s === undefined || s === '' ? undefined : s));

const port = z.coerce.number().int().min(1).max(65_535);

const usd = z.string().regex(/^\d+(\.\d{1,6})?$/, 'a USD amount such as 10 or 10.50');

/** 32 bytes as base64 (44 characters) or hex (64 digits); surrounding whitespace ignored. */
export const masterKeyText = z
  .string()
  .transform((s) => s.trim())
  .transform((s, context) => {
    const bytes = /^[0-9a-fA-F]{64}$/.test(s) ? Buffer.from(s, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(s) ? Buffer.from(s, 'base64') : undefined;
    if (bytes?.length !== 32) {
      context.addIssue({ code: 'custom', message: '32 bytes as base64 (44 characters) or hex (64 digits)' });
      return z.NEVER;
    }
    return bytes;
  });

/** A per-minute limit; unset or empty (compose's ${VAR:-}) means none. */
const optionalPerMinute = z.preprocess(
  (value) => (typeof value === 'string' && value.trim() === '' ? undefined : value),
  z.coerce.number().int().positive().optional(),
);

export const configSchema = z
  .object({
    /** PostgreSQL URL; when absent an embedded server is started with data under TOLLGATE_DATA_DIR. */
    DATABASE_URL: optionalString.pipe(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'a postgres:// URL')
        .optional(),
    ),
    /** Where the embedded server keeps its data; survives restarts. */
    TOLLGATE_DATA_DIR: z.string().default('.tollgate'),
    TOLLGATE_EMBEDDED_PG_PORT: port.default(54_329),
    /** KurrentDB / EventStoreDB connection string; when set, events go there instead of PostgreSQL. */
    EVENTSTORE_URL: optionalString.pipe(
      z
        .string()
        .regex(/^(esdb|esdb\+discover|kurrentdb|kurrentdb\+discover|kdb|kdb\+discover):\/\//, 'an esdb:// or kurrentdb:// URL')
        .optional(),
    ),
    HOST: z.string().default('127.0.0.1'),
    /** 0 picks a free port (tests). */
    PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /**
     * On SIGTERM/SIGINT, how long open requests (streams included) may run to their end before
     * their connections are cut; their settlements are then waited for, and only then the database stops.
     */
    TOLLGATE_DRAIN_TIMEOUT_S: z.coerce.number().positive().max(3_600).default(30),
    /** Seconds to wait for the database at start-up before giving up. */
    TOLLGATE_DB_CONNECT_TIMEOUT_S: z.coerce.number().positive().max(300).default(5),
    /**
     * PostgreSQL ends any of Tollgate's own sessions left idle inside a transaction this long
     * (idle_in_transaction_session_timeout), so none can hold the global log back; 0 leaves the server's setting.
     */
    TOLLGATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_S: z.coerce.number().min(0).max(86_400).default(60),
    /** Global-log readers trailing this long (an open transaction somewhere) log a warning and make /readyz say degraded. */
    TOLLGATE_GLOBAL_LOG_STALLED_AFTER_S: z.coerce.number().positive().max(86_400).default(30),
    TOLLGATE_ADMIN_KEY: optionalString,
    /**
     * The master key that wraps every account's personal-data key (32 bytes, base64 or hex), or a
     * file holding it. Required with DATABASE_URL; the embedded default keeps one in <data dir>/master-key.
     */
    TOLLGATE_MASTER_KEY: optionalString.pipe(masterKeyText.optional()),
    TOLLGATE_MASTER_KEY_FILE: optionalString,
    TOLLGATE_MODELS_FILE: optionalString,
    /**
     * true (the production image sets it): start-up stops unless TOLLGATE_MODELS_FILE is set,
     * instead of serving the first-run mock-llm stand-in, which is for local trials only.
     */
    TOLLGATE_REQUIRE_MODELS_FILE: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    TOLLGATE_MIN_TOP_UP_USD: usd.default('10'),
    TOLLGATE_MAX_BALANCE_USD: usd.default('10000'),
    /** Largest JSON request body accepted, in bytes; a larger one is refused with 400 before it is read whole. */
    TOLLGATE_MAX_BODY_BYTES: z.coerce
      .number()
      .int()
      .min(1_024)
      .max(64 * 1_024 * 1_024)
      .default(8 * 1_024 * 1_024),
    /** Largest audio file accepted by /v1/audio/transcriptions and /translations (bytes); larger is a 413. OpenAI's limit: 25 MB. */
    TOLLGATE_MAX_AUDIO_BYTES: z.coerce
      .number()
      .int()
      .min(1_024)
      .max(1_024 * 1_024 * 1_024)
      .default(25 * 1_024 * 1_024),
    /** Failed authentications (401) allowed per client address per minute; past it, unverified keys from it get 429. */
    TOLLGATE_AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().positive().max(1_000_000).default(60),
    /** Longest wait for an upstream's response headers (a whole non-streaming answer) before 504. */
    TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: z.coerce.number().positive().max(3_600).default(600),
    /** Longest silence from an upstream mid-answer before the stream counts as cut. */
    TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: z.coerce.number().positive().max(3_600).default(120),
    /** Per-key limits on requests and tokens per minute; unset means unlimited. */
    TOLLGATE_RATE_LIMIT_RPM: optionalPerMinute,
    TOLLGATE_RATE_LIMIT_TPM: optionalPerMinute,
    /**
     * Per-account limits on requests and tokens per minute, shared by all the account's keys (a
     * new key brings no new allowance); unset means the per-key limit of the same kind (so an
     * account with many keys gets what one key gets), or unlimited when that is unset too.
     */
    TOLLGATE_ACCOUNT_RATE_LIMIT_RPM: optionalPerMinute,
    TOLLGATE_ACCOUNT_RATE_LIMIT_TPM: optionalPerMinute,
    /**
     * Addresses of load balancers or proxies in front of the gateway (comma-separated IPs): for a
     * connection from one of them, the client address (for the authentication-failure limit) is
     * taken from X-Forwarded-For, the rightmost entry not itself a trusted proxy.
     */
    TOLLGATE_TRUSTED_PROXIES: z
      .string()
      .optional()
      .transform((s) =>
        (s ?? '')
          .split(',')
          .map((part) => part.trim())
          .filter((part) => part !== ''),
      )
      .pipe(z.array(z.union([z.ipv4(), z.ipv6()]))),
    /** Added to every reservation estimate, in basis points (1000 = +10%). */
    TOLLGATE_ESTIMATE_MARGIN_BP: z.coerce.number().int().min(0).max(100_000).default(1_000),
    /** How often each instance reads the historical average cost per model and operation from the usage projection. */
    TOLLGATE_HISTORICAL_AVERAGE_REFRESH_S: z.coerce.number().positive().max(3_600).default(30),
    /**
     * Longest a request may run: the gateway ends it at this age (settling what was produced) and
     * its reservation expires 60 s later even if its instance lives. The upstream timeouts must be
     * shorter (checked at start-up).
     */
    TOLLGATE_MAX_REQUEST_DURATION_S: z.coerce.number().positive().max(86_400).default(3_600),
    /**
     * An instance that has not renewed its lease for this long counts as gone: its open
     * reservations are expired (holds return, nothing is charged) and another instance takes over
     * the background workers. It renews every third of this.
     */
    TOLLGATE_INSTANCE_LEASE_S: z.coerce.number().min(1).max(600).default(10),
    /**
     * Days a request's log entry (endpoint, model, key, upstream, status, timings) is kept before
     * the retention schedule deletes it; its cost stays in the wallet forever. The privacy policy
     * promises 90.
     */
    TOLLGATE_REQUEST_LOG_RETENTION_DAYS: z.coerce.number().int().min(1).max(3_650).default(90),
    /**
     * How often the retention schedule looks whether a run is due: a day has passed since the last
     * one, or something held (an erasure date, a request-log entry's or the audit chain head's
     * period) has come due since it. What is due goes within one interval of its date.
     */
    TOLLGATE_RETENTION_CHECK_INTERVAL_S: z.coerce.number().positive().max(86_400).default(3_600),
    /** How often due reservations (deadline passed, or instance gone) and promo grants are expired. */
    TOLLGATE_EXPIRY_INTERVAL_S: z.coerce.number().positive().max(3_600).default(2),
    /** How often auto top-up and low-balance alert work is picked up. */
    TOLLGATE_BILLING_POLL_INTERVAL_S: z.coerce.number().positive().max(3_600).default(1),
    /**
     * A price increase takes effect at least this many days after it is set, and every account
     * that used the model in the last 90 days is told (a notice, and an email). An operator may
     * schedule one sooner only with a reason, which is audited. 0 turns the rule off.
     */
    TOLLGATE_PRICE_INCREASE_NOTICE_DAYS: z.coerce.number().int().min(0).max(365).default(14),
    /** How often the notices worker announces what is due and the upstream probe runs. */
    TOLLGATE_NOTICES_INTERVAL_S: z.coerce.number().positive().max(3_600).default(5),
    /** How often each upstream is probed (GET {baseUrl}/models) for the status page. */
    TOLLGATE_PROBE_INTERVAL_S: z.coerce.number().positive().max(3_600).default(60),
    /** First retry delay of a failed low-balance alert delivery; doubles per attempt (5 attempts). */
    TOLLGATE_ALERT_RETRY_BASE_S: z.coerce.number().positive().max(3_600).default(30),
    /** Tests only: also accept http://127.0.0.1 alert callbacks (otherwise HTTPS only). */
    TOLLGATE_ALERTS_ALLOW_LOOPBACK_HTTP: z
      .enum(['true', 'false'])
      .default('false')
      .transform((v) => v === 'true'),
    /** SMTP server for outgoing mail (smtp://user:pass@host:587, smtps://...); unset: each email is written as a .eml file under <data dir>/outbox. */
    SMTP_URL: optionalString.pipe(z.url({ protocol: /^smtps?$/, error: 'an smtp:// or smtps:// URL' }).optional()),
    /** The From header of every email Tollgate sends. */
    TOLLGATE_MAIL_FROM: z.string().min(3).default('Tollgate <no-reply@tollgate.local>'),
    /** First retry delay of a failed email; doubles per attempt (8 attempts, at most an hour apart). */
    TOLLGATE_MAIL_RETRY_BASE_S: z.coerce.number().positive().max(3_600).default(30),
    /** How often the mail outbox looks for due emails. */
    TOLLGATE_MAIL_POLL_INTERVAL_S: z.coerce.number().positive().max(3_600).default(1),
    /** The gateway's address as people reach it (links in emails); unset: the address it listens on. */
    TOLLGATE_PUBLIC_URL: optionalString.pipe(z.url({ protocol: /^https?$/, error: 'an http(s):// URL' }).optional()),
    /** bcrypt cost of user passwords (each step doubles the work of a sign-in and of a guess). */
    TOLLGATE_BCRYPT_COST: z.coerce.number().int().min(4).max(15).default(12),
    /** A dashboard session ends after this long unused... */
    TOLLGATE_SESSION_IDLE_S: z.coerce
      .number()
      .int()
      .min(60)
      .max(30 * 86_400)
      .default(8 * 3_600),
    /** ...and this long after sign-in in any case. */
    TOLLGATE_SESSION_MAX_S: z.coerce
      .number()
      .int()
      .min(60)
      .max(365 * 86_400)
      .default(7 * 86_400),
    /** Promo credit for a new account once its owner's email is verified (once per address); 0 turns it off. */
    TOLLGATE_SIGNUP_PROMO_USD: usd.default('0'),
    /** Days the sign-up promo credit stays usable. */
    TOLLGATE_SIGNUP_PROMO_DAYS: z.coerce.number().int().min(1).max(3_650).default(90),
    /** Failed sign-ins allowed per email address in 15 minutes; past it, 429 until the window passes. */
    TOLLGATE_SIGN_IN_FAILURES_PER_EMAIL: z.coerce.number().int().min(1).max(100_000).default(10),
    /** Failed sign-ins allowed per client address in 15 minutes. */
    TOLLGATE_SIGN_IN_FAILURES_PER_ADDRESS: z.coerce.number().int().min(1).max(1_000_000).default(100),
    STRIPE_SECRET_KEY: optionalString,
    STRIPE_WEBHOOK_SECRET: optionalString,
    /** Where the Stripe API is, e.g. http://127.0.0.1:12111 for a local stand-in; unset means Stripe's own (https://api.stripe.com). */
    STRIPE_API_BASE: optionalString.pipe(z.url({ protocol: /^https?$/, error: 'an http(s):// URL' }).optional()),
    /** Stripe Tax on Checkout (VAT added on top of the credit bought); needs Stripe Tax set up in the Dashboard. */
    STRIPE_AUTOMATIC_TAX: z
      .enum(['true', 'false'])
      .default('true')
      .transform((v) => v === 'true'),
    /** Seconds a webhook signature stays valid (Stripe's library default: 300). */
    STRIPE_WEBHOOK_TOLERANCE_S: z.coerce.number().int().positive().max(86_400).default(300),
  })
  .superRefine((config, context) => {
    if (config.TOLLGATE_MASTER_KEY && config.TOLLGATE_MASTER_KEY_FILE) {
      context.addIssue({ code: 'custom', path: ['TOLLGATE_MASTER_KEY_FILE'], message: 'set TOLLGATE_MASTER_KEY or TOLLGATE_MASTER_KEY_FILE, not both' });
    }
  });

export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses the environment; throws ConfigError with one line per wrong variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(Object.keys(configSchema.shape).map((key) => [key, env[key]]));
  const parsed = configSchema.safeParse(known);
  if (parsed.success) {
    const problems = [...modelsFileProblems(parsed.data), ...timeoutProblems(parsed.data), ...rateLimitProblems(parsed.data)];
    if (problems.length > 0) throw new ConfigError(problems.join('\n'));
    return parsed.data;
  }
  const lines = parsed.error.issues.map((issue) => {
    const variable = String(issue.path[0] ?? 'environment');
    return `invalid ${variable}: ${issue.message}`;
  });
  throw new ConfigError(lines.join('\n'));
}

/** A production deployment never falls back to the stand-in upstream. */
function modelsFileProblems(config: Config): string[] {
  if (!config.TOLLGATE_REQUIRE_MODELS_FILE || config.TOLLGATE_MODELS_FILE) return [];
  return [
    'invalid TOLLGATE_MODELS_FILE: required when TOLLGATE_REQUIRE_MODELS_FILE=true (as in the production image); the mock-llm stand-in upstream is for local trials only',
  ];
}

/**
 * The gateway ends every request at TOLLGATE_MAX_REQUEST_DURATION_S, so its reservation can be
 * expired on a deadline; an upstream wait allowed to run longer would be cut by that rule
 * rather than by its own timeout, so such a setting is refused.
 */
function timeoutProblems(config: Config): string[] {
  const max = config.TOLLGATE_MAX_REQUEST_DURATION_S;
  return (['TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S', 'TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S'] as const)
    .filter((name) => config[name] >= max)
    .map(
      (name) =>
        `invalid ${name}: ${config[name]} s must be shorter than TOLLGATE_MAX_REQUEST_DURATION_S (${max} s); raise TOLLGATE_MAX_REQUEST_DURATION_S or lower ${name}`,
    );
}

/** A key's limit is within its account's: a larger one could never be reached, and says the operator meant something else. */
function rateLimitProblems(config: Config): string[] {
  const pairs = [
    ['TOLLGATE_RATE_LIMIT_RPM', 'TOLLGATE_ACCOUNT_RATE_LIMIT_RPM'],
    ['TOLLGATE_RATE_LIMIT_TPM', 'TOLLGATE_ACCOUNT_RATE_LIMIT_TPM'],
  ] as const;
  return pairs
    .filter(([key, account]) => config[key] !== undefined && config[account] !== undefined && config[key] > config[account])
    .map(([key, account]) => `invalid ${key}: ${config[key]} is above ${account} (${config[account]}); a key's limit must be within its account's`);
}

/** The per-account limits in force: the configured ones, else the per-key ones (see TOLLGATE_ACCOUNT_RATE_LIMIT_RPM). */
export function accountRateLimits(config: Config): { requestsPerMinute: number | null; tokensPerMinute: number | null } {
  return {
    requestsPerMinute: config.TOLLGATE_ACCOUNT_RATE_LIMIT_RPM ?? config.TOLLGATE_RATE_LIMIT_RPM ?? null,
    tokensPerMinute: config.TOLLGATE_ACCOUNT_RATE_LIMIT_TPM ?? config.TOLLGATE_RATE_LIMIT_TPM ?? null,
  };
}
