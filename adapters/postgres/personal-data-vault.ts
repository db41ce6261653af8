import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import type { PersonalDataVault as PersonalDataVaultPort } from '../../src/ports/personal-data-vault';

/**
 * Crypto-shredding of personal data. Each account's personal fields (display name, email)
 * are encrypted with the account's own AES-256-GCM key before they enter an event; erasure
 * destroys the key, after which every copy of those events (replicas, exports, replays) holds
 * only noise, while the ledger's amounts stay intact.
 */
export const personalDataMigration = {
  id: '0002_personal_data_keys',
  sql: `
    CREATE TABLE personal_data_keys (
      account_id text PRIMARY KEY,
      data_key bytea,
      created_at timestamptz NOT NULL DEFAULT now(),
      destroyed_at timestamptz,
      CHECK ((data_key IS NULL) = (destroyed_at IS NOT NULL))
    );
  `,
};

const FORMAT = 'pd1';

export class PersonalDataVault implements PersonalDataVaultPort {
  constructor(private readonly pool: Pool) {}

  async encrypt(accountId: string, plaintext: string): Promise<string> {
    const key = await this.keyFor(accountId, true);
    if (!key) throw new Error(`personal data of account ${accountId} was erased; nothing new is stored for it`);
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(Buffer.from(accountId));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return [FORMAT, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), body.toString('base64url')].join('.');
  }

  /** The plaintext, or null once the account's key has been destroyed. */
  async decrypt(accountId: string, ciphertext: string): Promise<string | null> {
    const key = await this.keyFor(accountId, false);
    if (!key) return null;
    const [format, iv, tag, body] = ciphertext.split('.');
    if (format !== FORMAT || !iv || !tag || body === undefined) throw new Error('not a personal-data ciphertext');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(accountId));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString('utf8');
  }

  /** Destroys the account's key: its personal data can never be read again. */
  async destroyKey(accountId: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO personal_data_keys (account_id, data_key, destroyed_at) VALUES ($1, NULL, now())
       ON CONFLICT (account_id) DO UPDATE SET data_key = NULL, destroyed_at = COALESCE(personal_data_keys.destroyed_at, now())`,
      [accountId],
    );
  }

  private async keyFor(accountId: string, create: boolean): Promise<Buffer | null> {
    if (create) {
      await this.pool.query('INSERT INTO personal_data_keys (account_id, data_key) VALUES ($1, $2) ON CONFLICT (account_id) DO NOTHING', [
        accountId,
        randomBytes(32),
      ]);
    }
    const { rows } = await this.pool.query<{ data_key: Buffer | null }>('SELECT data_key FROM personal_data_keys WHERE account_id = $1', [accountId]);
    return rows[0]?.data_key ?? null;
  }
}
