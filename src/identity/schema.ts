import type { Migration } from '../ports/migration';

/**
 * Where credentials live: PostgreSQL tables, never events. Each holds only hashes or ciphertexts:
 * - user_credentials: the bcrypt password hash, the email's keyed lookup hash (HMAC, so the table
 *   holds no address in clear), the email encrypted under the user's vault key, the TOTP secret
 *   encrypted under the same key;
 * - user_recovery_codes: SHA-256 of each two-factor recovery code (random, 50 bits and up);
 * - identity_tokens: SHA-256 of each emailed link's token (verification, reset, email change);
 * - user_sessions: SHA-256 of each session id, with its idle and absolute expiry;
 * - memberships: who has which role in which account (from MemberAdded/RoleChanged/Removed);
 * - account_invitations: SHA-256 of each invitation link's token, the invitee's email encrypted
 *   under the account's vault key and its keyed lookup hash, the role offered, expiry and use;
 * - sign_in_failures: keyed hashes of emails and client addresses that failed, for the limits.
 * Erasing a user deletes their rows and destroys their vault key (src/identity/identity.ts).
 */
export const identityMigration: Migration = {
  id: '0061_identity',
  sql: `
    CREATE TABLE identity_secret (
      id integer PRIMARY KEY CHECK (id = 1),
      secret_ciphertext text NOT NULL
    );
    CREATE TABLE user_credentials (
      user_id text PRIMARY KEY,
      email_lookup text NOT NULL UNIQUE,
      email_ciphertext text NOT NULL,
      password_hash text NOT NULL,
      email_verified_at timestamptz,
      totp_secret_ciphertext text,
      totp_enabled_at timestamptz,
      totp_last_step bigint,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE user_recovery_codes (
      user_id text NOT NULL REFERENCES user_credentials (user_id) ON DELETE CASCADE,
      code_hash text NOT NULL,
      used_at timestamptz,
      PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE identity_tokens (
      token_hash text PRIMARY KEY,
      purpose text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
      user_id text NOT NULL,
      new_email_lookup text,
      new_email_ciphertext text,
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX identity_tokens_user ON identity_tokens (user_id);
    CREATE TABLE user_sessions (
      session_hash text PRIMARY KEY,
      public_id text NOT NULL UNIQUE,
      user_id text NOT NULL,
      account_id text,
      stage text NOT NULL CHECK (stage IN ('two_factor', 'signed_in')),
      user_agent text,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_seen_at timestamptz NOT NULL DEFAULT now(),
      idle_expires_at timestamptz NOT NULL,
      absolute_expires_at timestamptz NOT NULL,
      ended_at timestamptz,
      ended_why text
    );
    CREATE INDEX user_sessions_user ON user_sessions (user_id) WHERE ended_at IS NULL;
    CREATE TABLE memberships (
      account_id text NOT NULL,
      user_id text NOT NULL,
      role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'billing', 'viewer')),
      since timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (account_id, user_id)
    );
    CREATE INDEX memberships_user ON memberships (user_id);
    CREATE TABLE signup_promo_grants (
      email_lookup text PRIMARY KEY,
      user_id text NOT NULL,
      account_id text NOT NULL,
      granted_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE sign_in_failures (
      subject text NOT NULL,
      at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX sign_in_failures_subject ON sign_in_failures (subject, at);
  `,
};

/** Invitations to join an account (src/identity/members.ts). */
export const invitationsMigration: Migration = {
  id: '0062_account_invitations',
  sql: `
    CREATE TABLE account_invitations (
      invitation_id text PRIMARY KEY,
      token_hash text NOT NULL UNIQUE,
      account_id text NOT NULL,
      email_lookup text NOT NULL,
      email_ciphertext text NOT NULL,
      role text NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'billing', 'viewer')),
      invited_by text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz,
      accepted_by text,
      revoked_at timestamptz
    );
    CREATE INDEX account_invitations_account ON account_invitations (account_id);
  `,
};

/**
 * Operators as people: a user with an operator role (operator, finance, compliance) reaches the
 * /admin routes their role allows, signed in with their password (and TOTP) like a customer. The
 * bootstrap admin key stays for first set-up and scripts. Granted by `tollgate admins add`.
 */
export const adminUsersMigration: Migration = {
  id: '0090_admin_users',
  sql: `
    CREATE TABLE admin_roles (
      user_id text PRIMARY KEY,
      role text NOT NULL CHECK (role IN ('operator', 'finance', 'compliance')),
      granted_at timestamptz NOT NULL DEFAULT now()
    );
  `,
};

/**
 * Crash safety of identity's multi-step commands (src/identity/identity.ts):
 * - user_credentials.registered_at: null while a sign-up (or an invitee's new login) is not
 *   finished: such a row holds the address but cannot sign in; the reconciler finishes it from the
 *   user's UserRegistered event, or, when no such event came, fences the stream and frees the address;
 * - user_credentials.deleting_at: the user asked to be deleted (their sessions ended then); the
 *   reconciler finishes what a crash interrupted: memberships removed, UserDeleted, shredding;
 * - account_invitations.completed_at: the invitee's membership is recorded (used_at alone: claimed,
 *   membership still to record);
 * - memberships is a projection of the members streams from now on (src/read-models/memberships.ts);
 *   membership_streams holds the revision each account's rows are at.
 */
export const identityCrashSafetyMigration: Migration = {
  id: '0095_identity_crash_safety',
  sql: `
    ALTER TABLE user_credentials ADD COLUMN registered_at timestamptz;
    UPDATE user_credentials SET registered_at = created_at;
    ALTER TABLE user_credentials ALTER COLUMN registered_at SET DEFAULT now();
    ALTER TABLE user_credentials ADD COLUMN deleting_at timestamptz;
    CREATE INDEX user_credentials_unfinished ON user_credentials (created_at) WHERE registered_at IS NULL OR deleting_at IS NOT NULL;
    ALTER TABLE account_invitations ADD COLUMN completed_at timestamptz;
    UPDATE account_invitations SET completed_at = used_at WHERE used_at IS NOT NULL;
    CREATE INDEX account_invitations_unfinished ON account_invitations (used_at) WHERE used_at IS NOT NULL AND completed_at IS NULL;
    CREATE TABLE membership_streams (
      account_id text PRIMARY KEY,
      revision bigint NOT NULL
    );
  `,
};

/**
 * admin_roles becomes a projection of the `admin-roles` stream (src/read-models/admin-roles.ts):
 * the rows the first cut wrote directly (with AdminUserAdded, which no longer gives a role) are
 * cleared, so the table holds exactly what a rebuild from the log gives.
 */
export const adminRolesProjectionMigration: Migration = {
  id: '0098_admin_roles_projection',
  sql: `
    TRUNCATE admin_roles;
  `,
};
