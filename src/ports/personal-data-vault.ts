/**
 * Crypto-shredding of personal data, as the application uses it: each account's personal fields
 * are encrypted with the account's own key before they enter an event, and erasure destroys the
 * key. Implemented on PostgreSQL by adapters/postgres/personal-data-vault.ts; the composition
 * roots build it and hand it in.
 */
export interface PersonalDataVault {
  encrypt(accountId: string, plaintext: string): Promise<string>;
  /** The plaintext, or null once the account's key has been destroyed. */
  decrypt(accountId: string, ciphertext: string): Promise<string | null>;
  /** Destroys the account's key: its personal data can never be read again. */
  destroyKey(accountId: string): Promise<void>;
}

/** A refusal to start or to go on over the master key that wraps the account keys: one line, never key material. */
export class MasterKeyError extends Error {
  override readonly name = 'MasterKeyError';
}
