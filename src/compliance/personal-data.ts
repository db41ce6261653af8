import type { Pool } from 'pg';
import { accountStreamId, type AccountEvent, type AccountState } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { CommandMetadata } from '../../domain/events/metadata';
import { MasterKeyError, type PersonalDataVault } from '../ports/personal-data-vault';
import type { Ledger } from '../ledger';

/** The account's personal data as last written: AccountOpened, then each PersonalDataCorrected. */
export function currentPersonalDataCiphertexts(events: readonly DomainEvent[]): { displayNameCiphertext: string; emailCiphertext: string } | null {
  let current: { displayNameCiphertext: string; emailCiphertext: string } | null = null;
  for (const event of events) {
    if (event.type === 'AccountOpened') current = { displayNameCiphertext: event.data.displayNameCiphertext, emailCiphertext: event.data.emailCiphertext };
    if (event.type === 'PersonalDataCorrected' && current) {
      current = {
        displayNameCiphertext: event.data.displayNameCiphertext ?? current.displayNameCiphertext,
        emailCiphertext: event.data.emailCiphertext ?? current.emailCiphertext,
      };
    }
  }
  return current;
}

/**
 * Plaintext or null: the key is destroyed (erased) or the ciphertext is not the vault's. A
 * master-key problem (this process on a rotated-away key) is thrown, never shown as "no data".
 */
export async function readPersonalField(vault: PersonalDataVault, accountId: string, ciphertext: string): Promise<string | null> {
  try {
    return await vault.decrypt(accountId, ciphertext);
  } catch (error) {
    if (error instanceof MasterKeyError) throw error;
    return null;
  }
}

export type CorrectionRefusal =
  | { readonly error: 'account_not_open' }
  | { readonly error: 'personal_data_already_erased' }
  | { readonly error: 'nothing_to_correct' };

/**
 * Rectification: the new values are encrypted with the account's own key and recorded as
 * PersonalDataCorrected (audited with its actor). Checked before encrypting, so nothing is
 * stored for an erased person.
 */
export async function correctPersonalData(
  deps: { readonly ledger: Ledger; readonly vault: PersonalDataVault },
  input: { readonly accountId: string; readonly displayName?: string; readonly email?: string; readonly metadata: CommandMetadata },
): Promise<{ ok: true; state: AccountState; events: readonly AccountEvent[] } | { ok: false; error: CorrectionRefusal | { error: string } }> {
  const stream = accountStreamId(input.accountId);
  const { state } = await deps.ledger.accounts.load(stream);
  if (state.status === 'not_opened') return { ok: false, error: { error: 'account_not_open' } };
  if (state.personalDataErased) return { ok: false, error: { error: 'personal_data_already_erased' } };
  if (input.displayName === undefined && input.email === undefined) return { ok: false, error: { error: 'nothing_to_correct' } };
  const data = {
    ...(input.displayName !== undefined ? { displayNameCiphertext: await deps.vault.encrypt(input.accountId, input.displayName) } : {}),
    ...(input.email !== undefined ? { emailCiphertext: await deps.vault.encrypt(input.accountId, input.email) } : {}),
  };
  const result = await deps.ledger.accounts.handle(stream, { type: 'CorrectPersonalData', data, metadata: input.metadata });
  if (!result.ok) return { ok: false, error: result.error };
  return { ok: true, state: result.state, events: result.events.map((e) => e.event) };
}

/** Ids of the keys issued for an account (PostgreSQL event store). */
export async function keyIdsOf(pool: Pool, accountId: string): Promise<string[]> {
  const { rows } = await pool.query<{ key_id: string }>(
    `SELECT data->>'keyId' AS key_id FROM events WHERE type = 'ApiKeyIssued' AND data->>'accountId' = $1 ORDER BY global_seq`,
    [accountId],
  );
  return rows.map((r) => r.key_id);
}
