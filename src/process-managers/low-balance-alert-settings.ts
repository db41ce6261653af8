import type { Pool } from 'pg';
import { inTransaction } from '../read-models/transaction';
import { loadThresholds, storeThresholds, thresholdsBelow, type AlertThreshold } from './low-balance-alerts';

/** An account's low-balance alert settings as its API shows them (the signing secret never again). */
export interface AlertSettings {
  readonly url: string;
  readonly thresholds: AlertThreshold[];
}

/**
 * Stores an account's alert settings (the signing secret encrypted by the caller) in one
 * transaction with the alert process's view of its balance: thresholds the balance is already
 * below fire only after it has recovered above them.
 */
export async function saveAlertSettings(
  pool: Pool,
  accountId: string,
  settings: { readonly url: string; readonly thresholds: readonly AlertThreshold[]; readonly secretCiphertext: string },
): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query(
      `INSERT INTO low_balance_alert_settings (account_id, url, thresholds, secret_ciphertext) VALUES ($1, $2, $3, $4)
       ON CONFLICT (account_id) DO UPDATE SET url = excluded.url, thresholds = excluded.thresholds, secret_ciphertext = excluded.secret_ciphertext, updated_at = now()`,
      [accountId, settings.url, JSON.stringify(storeThresholds(settings.thresholds)), settings.secretCiphertext],
    );
    const { rows } = await client.query<{ available: string; last_top_up: string | null }>(
      'SELECT available::text, last_top_up::text FROM low_balance_alert_balances WHERE account_id = $1 FOR UPDATE',
      [accountId],
    );
    if (rows[0]) {
      const below = thresholdsBelow(settings.thresholds, BigInt(rows[0].available), rows[0].last_top_up === null ? null : BigInt(rows[0].last_top_up));
      await client.query('UPDATE low_balance_alert_balances SET below = $2 WHERE account_id = $1', [accountId, JSON.stringify(below)]);
    }
  });
}

/** The account's alert settings, or null when none are configured. */
export async function alertSettingsOf(pool: Pool, accountId: string): Promise<AlertSettings | null> {
  const { rows } = await pool.query<{ url: string; thresholds: Parameters<typeof loadThresholds>[0] }>(
    'SELECT url, thresholds FROM low_balance_alert_settings WHERE account_id = $1',
    [accountId],
  );
  return rows[0] ? { url: rows[0].url, thresholds: loadThresholds(rows[0].thresholds) } : null;
}

export async function deleteAlertSettings(pool: Pool, accountId: string): Promise<void> {
  await pool.query('DELETE FROM low_balance_alert_settings WHERE account_id = $1', [accountId]);
}
