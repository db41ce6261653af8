import { Client } from 'pg';

/**
 * A transaction someone else left open, as a finance query, a migration or a stuck client would:
 * it holds a transaction id, so PostgreSQL's xmin horizon (cluster-wide) stays below it and every
 * global-log reader on the server waits until it ends.
 */
export interface BlockingTransaction {
  /** its server process id, as pg_stat_activity shows it */
  readonly pid: number;
  readonly applicationName: string;
  /** whether the server still has it open with its transaction id (asked on another connection) */
  stillOpen(): Promise<boolean>;
  /** commits it and disconnects */
  end(): Promise<void>;
}

export async function openBlockingTransaction(databaseUrl: string, applicationName = 'finance-report'): Promise<BlockingTransaction> {
  const client = new Client({ connectionString: databaseUrl, application_name: applicationName });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = rows[0]!.pid;
  await client.query('BEGIN');
  await client.query('SELECT pg_current_xact_id()');
  let ended = false;
  return {
    pid,
    applicationName,
    async stillOpen() {
      const observer = new Client({ connectionString: databaseUrl });
      await observer.connect();
      try {
        const found = await observer.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND backend_xid IS NOT NULL', [pid]);
        return found.rows.length === 1;
      } finally {
        await observer.end();
      }
    },
    async end() {
      if (ended) return;
      ended = true;
      await client.query('COMMIT').catch(() => {});
      await client.end();
    },
  };
}
