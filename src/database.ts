import type { Pool } from 'pg';
import type { Logger } from 'pino';
import { startEmbeddedPostgres, type EmbeddedRole } from '../adapters/postgres/embedded';
import { migrate } from '../adapters/postgres/migrate';
import { migrations } from '../adapters/postgres/migrations';
import { checkConnection, createPool, redactUrl } from '../adapters/postgres/pool';
import type { Config } from './config';

export interface Database {
  readonly pool: Pool;
  /** Where it is, without the password. */
  readonly description: string;
  close(): Promise<void>;
}

/**
 * The configured PostgreSQL (DATABASE_URL) or, without one, an embedded server with its data
 * in TOLLGATE_DATA_DIR. Checks the connection within the configured timeout and applies
 * pending migrations, so a caller gets a ready database or a clear error, never a hang.
 */
export interface OpenOptions {
  poolSize?: number;
  /**
   * Who opens the embedded server: a gateway owns it (a second gateway on the same data dir is
   * refused); a CLI command uses a running gateway's server, or starts and stops its own.
   */
  role?: EmbeddedRole;
}

export async function openDatabase(config: Config, log: Logger, options: OpenOptions = {}): Promise<Database> {
  let connectionString = config.DATABASE_URL;
  let stopEmbedded: (() => Promise<void>) | undefined;
  if (!connectionString) {
    log.info({ dataDir: config.TOLLGATE_DATA_DIR, port: config.TOLLGATE_EMBEDDED_PG_PORT }, 'starting embedded PostgreSQL');
    const embedded = await startEmbeddedPostgres({
      dataDir: config.TOLLGATE_DATA_DIR,
      port: config.TOLLGATE_EMBEDDED_PG_PORT,
      role: options.role ?? 'gateway',
      httpPort: config.PORT,
      log: (line) => log.warn({ component: 'embedded-postgres' }, line),
    });
    log.info({ owned: embedded.owned }, embedded.owned ? 'embedded PostgreSQL ready' : 'using the embedded PostgreSQL of the running gateway');
    connectionString = embedded.connectionString;
    stopEmbedded = () => embedded.stop();
  }
  const pool = createPool({
    connectionString,
    max: options.poolSize ?? 20,
    connectTimeoutMs: config.TOLLGATE_DB_CONNECT_TIMEOUT_S * 1000,
    idleInTransactionTimeoutMs: Math.round(config.TOLLGATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_S * 1000),
  });
  const close = async () => {
    await pool.end();
    await stopEmbedded?.();
  };
  try {
    await checkConnection(pool, connectionString);
    const applied = await migrate(pool, migrations);
    if (applied.length > 0) log.info({ applied }, 'applied database migrations');
  } catch (error) {
    await close().catch(() => {});
    throw error;
  }
  return { pool, description: stopEmbedded ? `embedded PostgreSQL in ${config.TOLLGATE_DATA_DIR}` : redactUrl(connectionString), close };
}
