import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { ModelSpec } from '../../adapters/inference';
import { loadConfig } from '../../src/config';
import { startGateway, type Gateway, type RouteMount } from '../../src/gateway';
import { standardRoutes } from '../../src/routes';
import { createTestDatabase } from './database';
import { TEST_MASTER_KEY } from './master-key';

export const TEST_ADMIN_KEY = 'test-admin-key-0123456789abcdef0123456789';

export interface TestGateway {
  readonly gateway: Gateway;
  /** e.g. http://127.0.0.1:43125 */
  readonly url: string;
  readonly databaseUrl: string;
  readonly adminKey: string;
  /** every log line the gateway wrote (JSON strings), for assertions about what is logged */
  readonly logLines: string[];
  stop(): Promise<void>;
}

/**
 * A real gateway in this process on a free port, over a fresh database in the test server,
 * serving the given models (a models file is written for it) — no stand-in, no first run.
 */
export async function startTestGateway(options: {
  models: readonly ModelSpec[];
  env?: Record<string, string>;
  routes?: readonly RouteMount[];
  databaseUrl?: string;
  /** The admission limiters' clock (see GatewaySeams); a test that counts to a limit passes a manual one. */
  admissionClock?: () => number;
  /** The retention schedule's wall clock (see GatewaySeams); a test moves it days ahead. */
  retentionClock?: () => Date;
  /** The clock keys' expiry is judged by (see GatewaySeams). */
  keysClock?: () => Date;
  /** The wall clock for prices and retirements in force, notices and uptime (see GatewaySeams). */
  clock?: () => Date;
  /** The forfeiture schedule's wall clock (see GatewaySeams); a test moves it past the claim period. */
  forfeitureClock?: () => Date;
  /** How long commands nobody waits on wait to share a commit (see GatewaySeams). */
  deferrals?: { deferMs?: number; requestLogDeferMs?: number };
}): Promise<TestGateway> {
  const databaseUrl = options.databaseUrl ?? (await createTestDatabase('gw', { migrated: true }));
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-gw-'));
  const modelsFile = join(dir, 'models.json');
  writeFileSync(modelsFile, JSON.stringify({ models: options.models }));
  const config = loadConfig({
    DATABASE_URL: databaseUrl,
    PORT: '0',
    HOST: '127.0.0.1',
    TOLLGATE_DATA_DIR: dir,
    TOLLGATE_ADMIN_KEY: TEST_ADMIN_KEY,
    TOLLGATE_MODELS_FILE: modelsFile,
    LOG_LEVEL: 'info',
    // stop() cuts what is still open after 2 s (the drain default, 30 s, is for production)
    TOLLGATE_DRAIN_TIMEOUT_S: '2',
    TOLLGATE_MASTER_KEY: TEST_MASTER_KEY,
    ...options.env,
  });
  const logLines: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => void logLines.push(line) });
  const gateway = await startGateway(config, log, options.routes ?? standardRoutes, {
    admissionClock: options.admissionClock,
    retentionClock: options.retentionClock,
    keysClock: options.keysClock,
    clock: options.clock,
    forfeitureClock: options.forfeitureClock,
    deferrals: options.deferrals,
  });
  return { gateway, url: gateway.url, databaseUrl, adminKey: TEST_ADMIN_KEY, logLines, stop: () => gateway.close() };
}
