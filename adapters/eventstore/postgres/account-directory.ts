import type { Pool } from 'pg';
import { accountStreamId } from '../../../domain/account';
import type { AccountDirectory } from '../../../src/ports/account-directory';

/** The account directory of the PostgreSQL event store: SQL on its events table. */
export function postgresAccountDirectory(pool: Pool): AccountDirectory {
  return {
    async personalDataRecords(accountId) {
      const { rows } = await pool.query<{ data: unknown }>(
        `SELECT data FROM events WHERE stream_id = $1 AND type IN ('AccountOpened', 'PersonalDataCorrected') ORDER BY stream_revision`,
        [accountStreamId(accountId)],
      );
      return rows.map((row) => row.data);
    },
    async keyIdsOf(accountId) {
      const { rows } = await pool.query<{ key_id: string }>(
        `SELECT data->>'keyId' AS key_id FROM events WHERE type = 'ApiKeyIssued' AND data->>'accountId' = $1 ORDER BY global_seq`,
        [accountId],
      );
      return rows.map((r) => r.key_id);
    },
    async accountIdsNewestFirst() {
      const { rows } = await pool.query<{ account_id: string }>(
        `SELECT data->>'accountId' AS account_id FROM events WHERE type = 'AccountOpened' ORDER BY global_seq DESC`,
      );
      return rows.map((r) => r.account_id);
    },
  };
}
