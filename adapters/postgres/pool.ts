import { Pool } from 'pg';

// int8 and numeric come back from pg as strings; callers convert them to bigint explicitly
// (money is never a JS number).

export interface PoolOptions {
  connectionString: string;
  max?: number;
  /** Give up connecting after this many milliseconds instead of hanging. */
  connectTimeoutMs?: number;
  applicationName?: string;
  /**
   * The server ends a session of this pool that stays idle inside a transaction this long
   * (idle_in_transaction_session_timeout): a transaction left open holds back every global-log
   * reader in the cluster. 0 leaves the server's setting. Default 60 s.
   */
  idleInTransactionTimeoutMs?: number;
}

export function createPool(options: PoolOptions): Pool {
  const pool = new Pool({
    connectionString: options.connectionString,
    max: options.max ?? 20,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    // Names Tollgate's sessions in pg_stat_activity, so an operator can tell them from others'.
    application_name: options.applicationName ?? 'tollgate',
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs ?? 60_000,
  });
  // A client that loses its server must not crash the process, idle in the pool or checked out
  // (a LISTEN connection, a projection's lock): its pending and next queries report the error.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  return pool;
}

export class DatabaseUnreachableError extends Error {
  override readonly name = 'DatabaseUnreachableError';
}

/** Fails within the timeout with a message that names the server (never its password). */
export async function checkConnection(pool: Pool, connectionString: string): Promise<void> {
  try {
    await pool.query('SELECT 1');
  } catch (error) {
    throw new DatabaseUnreachableError(`cannot reach PostgreSQL at ${redactUrl(connectionString)}: ${(error as Error).message}`, { cause: error });
  }
}

/** A URL with its password removed, safe for logs and error messages. */
export function redactUrl(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '<unparseable database URL>';
  }
}
