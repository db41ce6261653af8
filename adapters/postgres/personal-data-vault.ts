import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import type { Pool, PoolClient } from 'pg';
import { MasterKeyError, type PersonalDataVault as PersonalDataVaultPort } from '../../src/ports/personal-data-vault';
import { inTransaction } from '../../src/read-models/transaction';

export { MasterKeyError };

/**
 * Crypto-shredding of personal data. Each account's personal fields (display name, email)
 * are encrypted with the account's own AES-256-GCM key before they enter an event; erasure
 * destroys the key, after which every copy of those events (replicas, exports, replays) holds
 * only noise, while the ledger's amounts stay intact.
 *
 * The account keys themselves are stored wrapped (envelope encryption): AES-256-GCM under a
 * master key that never enters the database, with the account id as additional data so a
 * wrapped key cannot be moved to another account. Each row records the id of the master key
 * that wrapped it, and personal_data_master_key holds the current master key's id and a check
 * value (a known plaintext wrapped under it), so a wrong master key is detected before any
 * row is read or written.
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

/**
 * Keys under a master key. data_key (the clear key of earlier versions) stays as a column so
 * existing deployments can be wrapped on their first start with a master key; after that it
 * is always NULL.
 */
export const personalDataEnvelopeMigration = {
  id: '0002a_personal_data_key_envelopes',
  sql: `
    ALTER TABLE personal_data_keys DROP CONSTRAINT IF EXISTS personal_data_keys_check;
    ALTER TABLE personal_data_keys ADD COLUMN wrapped_key bytea, ADD COLUMN master_key_id text;
    ALTER TABLE personal_data_keys ADD CONSTRAINT personal_data_keys_destroyed_check
      CHECK ((destroyed_at IS NOT NULL) = (data_key IS NULL AND wrapped_key IS NULL));
    ALTER TABLE personal_data_keys ADD CONSTRAINT personal_data_keys_wrapped_check
      CHECK ((wrapped_key IS NULL) = (master_key_id IS NULL));
    CREATE TABLE personal_data_master_key (
      singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
      key_id text NOT NULL,
      check_value bytea NOT NULL,
      since timestamptz NOT NULL DEFAULT now()
    );
  `,
};

const FORMAT = 'pd1';
const KEY_BYTES = 32;
const CHECK_PLAINTEXT = Buffer.from('tollgate personal-data master key check v1');
const CHECK_AAD = 'tollgate:master-key-check';

/**
 * The 32-byte master key, and its id: the first 16 hex digits of HMAC-SHA256(key, label). The
 * id says which key wrapped a row without revealing anything about the key.
 */
export class MasterKey {
  readonly id: string;
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== KEY_BYTES) throw new MasterKeyError(`a master key is ${KEY_BYTES} bytes, not ${key.length}`);
    this.#key = Buffer.from(key);
    this.id = createHmac('sha256', this.#key).update('tollgate master key id').digest('hex').slice(0, 16);
  }

  static generate(): MasterKey {
    return new MasterKey(randomBytes(KEY_BYTES));
  }

  /** base64 of the key, for writing a key file. */
  export(): string {
    return this.#key.toString('base64');
  }

  /** iv (12) | tag (16) | ciphertext */
  wrap(plaintext: Buffer, aad: string): Buffer {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]);
  }

  /** Throws MasterKeyError when the key (or the additional data) is not the one it was wrapped with. */
  unwrap(wrapped: Buffer, aad: string): Buffer {
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, wrapped.subarray(0, 12));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(wrapped.subarray(12, 28));
      return Buffer.concat([decipher.update(wrapped.subarray(28)), decipher.final()]);
    } catch {
      throw new MasterKeyError(`a personal-data key does not open with master key ${this.id}`);
    }
  }

  wrapAccountKey(accountId: string, key: Buffer): Buffer {
    return this.wrap(key, accountAad(accountId));
  }

  unwrapAccountKey(accountId: string, wrapped: Buffer): Buffer {
    return this.unwrap(wrapped, accountAad(accountId));
  }

  checkValue(): Buffer {
    return this.wrap(CHECK_PLAINTEXT, CHECK_AAD);
  }

  /** Whether `checkValue` was made by this key. */
  opens(checkValue: Buffer): boolean {
    try {
      return this.unwrap(checkValue, CHECK_AAD).equals(CHECK_PLAINTEXT);
    } catch {
      return false;
    }
  }
}

function accountAad(accountId: string): string {
  return `tollgate:personal-data-key:${accountId}`;
}

/** What the database says about its master key, read without touching anything. */
export async function recordedMasterKey(pool: Pool | PoolClient): Promise<{ keyId: string; checkValue: Buffer } | null> {
  const { rows } = await pool.query<{ key_id: string; check_value: Buffer }>('SELECT key_id, check_value FROM personal_data_master_key');
  return rows[0] ? { keyId: rows[0].key_id, checkValue: rows[0].check_value } : null;
}

/**
 * Checks `master` against the check value the database records, before anything is read or
 * written; a wrong key throws MasterKeyError and nothing is touched. On the first start with a
 * master key it records the check value and wraps any clear keys left by earlier versions, in
 * one transaction. Returns how many clear keys it wrapped.
 */
export async function adoptMasterKey(pool: Pool, master: MasterKey): Promise<{ wrapped: number; firstUse: boolean }> {
  const recorded = await recordedMasterKey(pool);
  if (recorded) {
    assertOpens(recorded, master);
    return { wrapped: 0, firstUse: false };
  }
  return inTransaction(pool, async (client) => {
    await client.query('LOCK TABLE personal_data_master_key IN EXCLUSIVE MODE');
    const again = await recordedMasterKey(client);
    if (again) {
      assertOpens(again, master);
      return { wrapped: 0, firstUse: false };
    }
    await client.query('INSERT INTO personal_data_master_key (key_id, check_value) VALUES ($1, $2)', [master.id, master.checkValue()]);
    const { rows } = await client.query<{ account_id: string; data_key: Buffer }>(
      'SELECT account_id, data_key FROM personal_data_keys WHERE data_key IS NOT NULL FOR UPDATE',
    );
    for (const row of rows) {
      await client.query('UPDATE personal_data_keys SET data_key = NULL, wrapped_key = $2, master_key_id = $3 WHERE account_id = $1', [
        row.account_id,
        master.wrapAccountKey(row.account_id, row.data_key),
        master.id,
      ]);
    }
    return { wrapped: rows.length, firstUse: true };
  });
}

function assertOpens(recorded: { keyId: string; checkValue: Buffer }, master: MasterKey): void {
  if (!master.opens(recorded.checkValue)) {
    throw new MasterKeyError(
      `wrong master key: the database's personal-data keys are wrapped under master key ${recorded.keyId}, the configured one is ${master.id}; nothing was changed`,
    );
  }
}

/**
 * Re-wraps every account key under `next`, and records `next` as the master key, in one
 * transaction: either all keys move or none. Events are not touched (they hold data encrypted
 * with the account keys, which do not change). `onProgress(done, total)` after each key.
 * A running gateway still on the old key can neither create nor open keys once this commits
 * (it finds another key id recorded) and must be restarted with the new key.
 */
export async function rotateMasterKey(
  pool: Pool,
  current: MasterKey,
  next: MasterKey,
  onProgress: (done: number, total: number) => void = () => {},
): Promise<{ rewrapped: number }> {
  return inTransaction(pool, async (client) => {
    // Blocks creation of new account keys (which read this row FOR SHARE) until the rotation commits.
    const { rows: recorded } = await client.query<{ key_id: string; check_value: Buffer }>(
      'SELECT key_id, check_value FROM personal_data_master_key FOR UPDATE',
    );
    if (!recorded[0]) throw new MasterKeyError('no master key is recorded in this database yet; start the gateway once with a master key first');
    assertOpens({ keyId: recorded[0].key_id, checkValue: recorded[0].check_value }, current);
    const { rows } = await client.query<{ account_id: string; wrapped_key: Buffer; master_key_id: string }>(
      'SELECT account_id, wrapped_key, master_key_id FROM personal_data_keys WHERE wrapped_key IS NOT NULL ORDER BY account_id FOR UPDATE',
    );
    onProgress(0, rows.length);
    let done = 0;
    for (const row of rows) {
      if (row.master_key_id !== current.id) {
        throw new MasterKeyError(`the key of account ${row.account_id} is wrapped under master key ${row.master_key_id}, not the current ${current.id}`);
      }
      const key = current.unwrapAccountKey(row.account_id, row.wrapped_key);
      await client.query('UPDATE personal_data_keys SET wrapped_key = $2, master_key_id = $3 WHERE account_id = $1', [
        row.account_id,
        next.wrapAccountKey(row.account_id, key),
        next.id,
      ]);
      onProgress(++done, rows.length);
    }
    await client.query('UPDATE personal_data_master_key SET key_id = $1, check_value = $2, since = now()', [next.id, next.checkValue()]);
    // Verifiable: nothing is left under another key.
    const { rows: left } = await client.query<{ n: string }>(
      'SELECT count(*) AS n FROM personal_data_keys WHERE wrapped_key IS NOT NULL AND master_key_id <> $1',
      [next.id],
    );
    if (left[0]!.n !== '0') throw new MasterKeyError(`${left[0]!.n} keys are still under another master key; nothing was changed`);
    return { rewrapped: rows.length };
  });
}

/**
 * The only reader and writer of personal_data_keys' key material. Build it with
 * `openPersonalDataVault`, which checks the master key first.
 */
export class PersonalDataVault implements PersonalDataVaultPort {
  constructor(
    private readonly pool: Pool,
    private readonly master: MasterKey,
  ) {}

  get masterKeyId(): string {
    return this.master.id;
  }

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
       ON CONFLICT (account_id) DO UPDATE SET data_key = NULL, wrapped_key = NULL, master_key_id = NULL,
         destroyed_at = COALESCE(personal_data_keys.destroyed_at, now())`,
      [accountId],
    );
  }

  private async keyFor(accountId: string, create: boolean): Promise<Buffer | null> {
    if (create) {
      // Only while this vault's master key is the recorded one (FOR SHARE waits out a rotation in
      // progress); an instance left on a rotated-away key creates nothing.
      await this.pool.query(
        `INSERT INTO personal_data_keys (account_id, wrapped_key, master_key_id)
         SELECT $1, $2, $3 FROM personal_data_master_key WHERE key_id = $3 FOR SHARE
         ON CONFLICT (account_id) DO NOTHING`,
        [accountId, this.master.wrapAccountKey(accountId, randomBytes(KEY_BYTES)), this.master.id],
      );
    }
    const { rows } = await this.pool.query<{ wrapped_key: Buffer | null; master_key_id: string | null; destroyed_at: Date | null }>(
      'SELECT wrapped_key, master_key_id, destroyed_at FROM personal_data_keys WHERE account_id = $1',
      [accountId],
    );
    const row = rows[0];
    if (row?.destroyed_at) return null;
    if (!row?.wrapped_key) {
      if (create) throw new MasterKeyError(`master key ${this.master.id} is no longer the database's master key (rotated?); restart with the current one`);
      return null;
    }
    if (row.master_key_id !== this.master.id) {
      throw new MasterKeyError(
        `the key of account ${accountId} is wrapped under master key ${row.master_key_id}, this process has ${this.master.id}; restart it with the current master key`,
      );
    }
    return this.master.unwrapAccountKey(accountId, row.wrapped_key);
  }
}

/** Checks the master key against the database (see adoptMasterKey) and returns the vault. */
export async function openPersonalDataVault(pool: Pool, master: MasterKey): Promise<{ vault: PersonalDataVault; wrapped: number; firstUse: boolean }> {
  const adopted = await adoptMasterKey(pool, master);
  return { vault: new PersonalDataVault(pool, master), ...adopted };
}
