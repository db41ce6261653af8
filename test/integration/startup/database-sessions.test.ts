import pino from 'pino';
import { createPool } from '../../../adapters/postgres/pool';
import { loadConfig } from '../../../src/config';
import { openDatabase } from '../../../src/database';
import { createTestDatabase } from '../../support/database';
import { until } from '../../support/wait';

/**
 * Tollgate's own sessions name themselves (application_name, for pg_stat_activity) and are ended
 * by the server when left idle inside a transaction: one left open would hold back every
 * global-log reader in the cluster (README, "Long transactions").
 */

let databaseUrl: string;
beforeAll(async () => {
  databaseUrl = await createTestDatabase('sessions');
});

test('the gateway database sets application_name and the configured idle_in_transaction_session_timeout (default 60 s)', async () => {
  const silent = pino({ level: 'silent' });
  for (const [env, expected] of [
    [{}, '1min'],
    [{ TOLLGATE_DB_IDLE_IN_TRANSACTION_TIMEOUT_S: '5' }, '5s'],
  ] as const) {
    const database = await openDatabase(loadConfig({ DATABASE_URL: databaseUrl, ...env }), silent, { poolSize: 1 });
    try {
      const { rows } = await database.pool.query<{ timeout: string; app: string }>(
        "SELECT current_setting('idle_in_transaction_session_timeout') AS timeout, current_setting('application_name') AS app",
      );
      expect(rows[0]).toEqual({ timeout: expected, app: 'tollgate' });
    } finally {
      await database.close();
    }
  }
});

test('a session of the pool left idle in a transaction is ended by the server', async () => {
  const pool = createPool({ connectionString: databaseUrl, max: 1, idleInTransactionTimeoutMs: 300 });
  const observer = createPool({ connectionString: databaseUrl, max: 1, applicationName: 'observer' });
  try {
    const client = await pool.connect();
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = rows[0]!.pid;
    await client.query('BEGIN');
    await client.query('SELECT pg_current_xact_id()');
    await until(
      async () => {
        const found = await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
        return found.rows.length === 0 ? true : undefined;
      },
      { what: 'the server to end the idle transaction', timeoutMs: 10_000 },
    );
    await expect(client.query('SELECT 1')).rejects.toThrow();
    client.release(true);
  } finally {
    await pool.end();
    await observer.end();
  }
});
