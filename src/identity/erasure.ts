import type { Pool } from 'pg';
import type { PersonalDataVault } from '../ports/personal-data-vault';

/**
 * A user's credentials and personal data go with the last account they belong to: when an
 * account's personal data is erased (retention, 30 days after closure), every member who belongs
 * to no other account whose data is kept is erased too. Their vault key is destroyed (the name
 * and email in their events, the TOTP secret and any queued email become unreadable) and their
 * credential rows are deleted: password hash, email lookup, recovery codes, sessions, link tokens.
 * Returns the users erased.
 */
export async function eraseMembersOf(pool: Pool, vault: PersonalDataVault, accountId: string, erasedAccounts: ReadonlySet<string>): Promise<string[]> {
  const { rows } = await pool.query<{ user_id: string; others: string[] }>(
    `SELECT m.user_id, coalesce(array_agg(o.account_id) FILTER (WHERE o.account_id IS NOT NULL AND k.destroyed_at IS NULL), '{}') AS others
       FROM memberships m
       LEFT JOIN memberships o ON o.user_id = m.user_id AND o.account_id <> m.account_id
       LEFT JOIN personal_data_keys k ON k.account_id = o.account_id
      WHERE m.account_id = $1
      GROUP BY m.user_id`,
    [accountId],
  );
  // Invitations hold the invitee's address (encrypted under the account's key, destroyed with it).
  await pool.query('DELETE FROM account_invitations WHERE account_id = $1', [accountId]);
  const erased: string[] = [];
  for (const row of rows) {
    if (row.others.some((other) => !erasedAccounts.has(other))) continue;
    await vault.destroyKey(row.user_id);
    await pool.query('DELETE FROM user_sessions WHERE user_id = $1', [row.user_id]);
    await pool.query('DELETE FROM identity_tokens WHERE user_id = $1', [row.user_id]);
    await pool.query('DELETE FROM user_credentials WHERE user_id = $1', [row.user_id]);
    erased.push(row.user_id);
  }
  return erased;
}
