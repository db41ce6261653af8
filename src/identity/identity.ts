import { createHash, createHmac, randomBytes, randomInt, randomUUID } from 'node:crypto';
import bcrypt from 'bcrypt';
import * as OTPAuth from 'otpauth';
import type { Pool, PoolClient } from 'pg';
import type { Logger } from 'pino';
import { accountStreamId } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import { eventMetadataFrom, type CommandMetadata } from '../../domain/events/metadata';
import type { MicroUsd } from '../../domain/money';
import { addMs } from '../../domain/time';
import { membersStreamId, userStreamId, type MemberRole } from '../../domain/user';
import {
  ADMIN_ROLES_STREAM_ID,
  adminRolesDecider,
  type AdminRole,
  type AdminRolesCommand,
  type AdminRolesRefusal,
  type AdminRolesState,
} from '../../domain/admin-roles';
import { fold } from '../../domain/decider';
import { commandMetadata, systemMetadata } from '../command-metadata';
import { currentPersonalDataCiphertexts } from '../compliance/personal-data';
import type { Ledger } from '../ledger';
import type { MailOutbox } from '../mail/outbox';
import { hashLinkToken } from '../mail/outbox';
import { VersionConflictError, type EventStore } from '../ports/event-store';
import type { PersonalDataVault } from '../ports/personal-data-vault';
import { syncMembers } from '../read-models/memberships';
import { inTransaction } from '../read-models/transaction';
import { passwordProblem } from './passwords';

/**
 * People and their credentials: sign-up, email verification, sign-in with an optional TOTP
 * second factor, sessions, password change and reset, profile, memberships.
 *
 * The person's facts are events in their stream (`user-<userId>`), personal fields encrypted
 * under their own vault key; credentials live in the tables of ./schema.ts, hashed or encrypted,
 * never in an event, a log line or an error. Answers about emails never tell whether an address
 * is registered: sign-up and "forgot password" answer the same either way and do comparable
 * work (a bcrypt hash or comparison each time), and sign-in compares against a dummy hash when
 * there is no such user.
 */

export interface IdentityOptions {
  readonly bcryptCost: number;
  readonly sessionIdleMs: number;
  readonly sessionMaxMs: number;
  readonly signupPromo: MicroUsd;
  readonly signupPromoDays: number;
  readonly failuresPerEmail: number;
  readonly failuresPerAddress: number;
  readonly failureWindowMs: number;
  /**
   * A fault seam for crash tests, called at each point where a crash falls between two writes of
   * a multi-step command (e.g. 'sign-up:registered'); a test throws there to stop the command as a
   * dying process would. Unset in production.
   */
  readonly fault?: (step: string) => void | Promise<void>;
}

export const VERIFY_EMAIL_MS = 24 * 3_600_000;
/**
 * A registration's credentials row older than this without a UserRegistered is abandoned: no
 * request spends this long between its two writes, so the process that made it is gone.
 */
export const ABANDON_REGISTRATION_AFTER_MS = 15 * 60_000;
export const RESET_PASSWORD_MS = 3_600_000;
/** An invitation's link works this long (the invitation email says 7 days). */
export const INVITATION_MS = 7 * 24 * 3_600_000;
/** A signed-in password waits this long for its second factor. */
const TWO_FACTOR_STAGE_MS = 10 * 60_000;
const RECOVERY_CODES = 10;

export type IdentityRefusal =
  | { readonly code: 'invalid_email'; readonly message: string }
  | { readonly code: 'weak_password'; readonly message: string }
  | { readonly code: 'invalid_credentials'; readonly message: string }
  | { readonly code: 'too_many_attempts'; readonly message: string; readonly retryAfterS: number }
  | { readonly code: 'invalid_token'; readonly message: string }
  | { readonly code: 'invalid_code'; readonly message: string }
  | { readonly code: 'two_factor_not_pending'; readonly message: string }
  | { readonly code: 'two_factor_already_enabled'; readonly message: string }
  | { readonly code: 'two_factor_not_enabled'; readonly message: string }
  | { readonly code: 'session_not_found'; readonly message: string }
  | { readonly code: 'not_a_member'; readonly message: string }
  | { readonly code: 'insufficient_role'; readonly message: string }
  | { readonly code: 'last_owner'; readonly message: string; readonly accountIds?: readonly string[] }
  | { readonly code: 'member_not_found'; readonly message: string }
  | { readonly code: 'invitation_not_found'; readonly message: string }
  | { readonly code: 'already_a_member'; readonly message: string }
  | { readonly code: 'admin_not_found'; readonly message: string }
  | { readonly code: 'last_operator'; readonly message: string }
  | { readonly code: 'missing_required_parameter'; readonly message: string; readonly param: string };

const ADMIN_REFUSALS: Record<AdminRolesRefusal['error'], string> = {
  admin_not_found: 'No admin user with this id.',
  last_operator: 'This is the last admin user with the operator role: make someone else an operator first.',
};

export interface AdminUserView {
  readonly user_id: string;
  /** null once the user's personal data is erased */
  readonly email: string | null;
  readonly role: AdminRole;
  readonly granted_at: string;
  readonly two_factor_enabled: boolean;
}

export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: IdentityRefusal };

const ok = <T>(value: T): Outcome<T> => ({ ok: true, value });
const no = (code: IdentityRefusal['code'], message: string, extra: Partial<IdentityRefusal> = {}): Outcome<never> => ({
  ok: false,
  error: { code, message, ...extra } as IdentityRefusal,
});

const INVALID_TOKEN = 'This link is invalid, expired or already used. Ask for a new one.';
const INVALID_CREDENTIALS = 'The email or password is wrong.';

/** A signed-in (or half signed-in) session, as a request sees it. */
export interface SessionPrincipal {
  readonly publicId: string;
  readonly userId: string;
  readonly stage: 'two_factor' | 'signed_in';
  /** the account this session works in; null when the user belongs to none */
  readonly accountId: string | null;
  readonly role: MemberRole | null;
  readonly emailVerified: boolean;
}

export interface SessionView {
  readonly id: string;
  readonly created_at: string;
  readonly last_seen_at: string;
  readonly idle_expires_at: string;
  readonly absolute_expires_at: string;
  readonly user_agent: string | null;
  readonly current: boolean;
}

export interface Profile {
  readonly user_id: string;
  readonly name: string;
  readonly email: string;
  readonly email_verified: boolean;
  /** an address waiting for its confirmation link, when the user asked to change it */
  readonly pending_email: string | null;
  readonly two_factor_enabled: boolean;
  readonly memberships: readonly { account_id: string; role: MemberRole }[];
  readonly current_account_id: string | null;
}

export interface MemberView {
  readonly user_id: string;
  readonly name: string;
  readonly email: string;
  readonly role: MemberRole;
  readonly since: string;
  readonly you: boolean;
}

export interface InvitationView {
  readonly id: string;
  readonly email: string;
  readonly role: MemberRole;
  readonly invited_by: string;
  readonly created_at: string;
  readonly expires_at: string;
}

/**
 * Who may manage members, and how far: an owner does anything; an admin invites, re-roles and
 * removes members below owner, but cannot make, demote or remove an owner (an admin cannot seize
 * or take away ownership). Others manage nobody, though any member may leave (remove themself).
 * The last owner can neither leave nor be demoted: an account always has an owner.
 */
function mayManage(actor: MemberRole, target: MemberRole | null, newRole: MemberRole | null): string | null {
  if (actor !== 'owner' && actor !== 'admin') return `Your role in this account (${actor}) does not allow managing members; ask an owner or an admin.`;
  if (actor === 'admin' && (target === 'owner' || newRole === 'owner')) return 'Only an owner can make, demote or remove an owner.';
  return null;
}

export function normaliseEmail(email: string): string {
  return email.trim().toLowerCase();
}

const emailPattern = /^[^\s@"(),:;<>[\\\]]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

export function isEmail(email: string): boolean {
  return email.length <= 254 && emailPattern.test(email);
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** A UUID derived from a name: the event id of a step that may run again, so the store keeps it once. */
function deterministicUuid(name: string): string {
  const h = sha256(`identity|${name}`);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function randomId(prefix: string, bytes = 12): string {
  return `${prefix}_${randomBytes(bytes).toString('hex')}`;
}

export class Identity {
  private secret: Promise<Buffer> | undefined;
  private dummyHash: Promise<string> | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly store: EventStore<DomainEvent>,
    private readonly ledger: Ledger,
    private readonly vault: PersonalDataVault,
    private readonly mail: MailOutbox,
    private readonly log: Logger,
    readonly options: IdentityOptions,
  ) {}

  private async fault(step: string): Promise<void> {
    await this.options.fault?.(step);
  }

  // Sign-up and verification ------------------------------------------------------------------

  /**
   * Creates the user, an account they own and a verification email. For an address already
   * registered the answer is the same (the owner of the address gets a notice instead), so the
   * answer never tells whether an email is registered.
   *
   * Crash-safe in two writes: the credentials row claims the address (not yet registered, so it
   * cannot sign in), then UserRegistered records the whole sign-up, the account's opening
   * included. Everything after follows from that event (completeRegistration: the account, the
   * owner's membership, the verification email, the row marked registered), each step
   * idempotent, so the reconciler finishes it after a crash. A crash between the two writes
   * leaves a claimed row without an event: the reconciler fences the stream and frees the address.
   */
  async signUp(input: { email: string; name: string; password: string; organisation: string }): Promise<Outcome<{ accepted: true }>> {
    const email = normaliseEmail(input.email);
    if (!isEmail(email)) return no('invalid_email', 'That is not a valid email address.');
    const weak = passwordProblem(input.password, [email, input.name, input.organisation]);
    if (weak) return no('weak_password', weak);
    const lookup = await this.emailLookup(email);
    const passwordHash = await bcrypt.hash(input.password, this.options.bcryptCost);
    const userId = randomId('usr');
    const accountId = randomId('acct');
    const emailCiphertext = await this.vault.encrypt(userId, email);
    const claimed = await this.pool.query(
      `INSERT INTO user_credentials (user_id, email_lookup, email_ciphertext, password_hash, registered_at) VALUES ($1, $2, $3, $4, NULL)
       ON CONFLICT (email_lookup) DO NOTHING`,
      [userId, lookup, emailCiphertext, passwordHash],
    );
    if (claimed.rowCount === 0) {
      // Held by a registration a crash left unfinished: finished now, or, abandoned long enough, freed for this one.
      const held = await this.pool.query<{ user_id: string; stale: boolean }>(
        `SELECT user_id, created_at < now() - $2 * interval '1 millisecond' AS stale FROM user_credentials WHERE email_lookup = $1 AND registered_at IS NULL`,
        [lookup, ABANDON_REGISTRATION_AFTER_MS],
      );
      if (held.rows[0] && (await this.settleRegistration(held.rows[0].user_id, held.rows[0].stale)) === 'abandoned') {
        await this.vault.destroyKey(userId);
        return this.signUp(input);
      }
      // Registered already: tell the address's owner, not the caller.
      const existing = await this.userByLookup(lookup);
      if (existing) {
        await this.mail.request({
          kind: 'notice',
          to: email,
          subject: existing.user_id,
          params: {
            subject: 'Someone tried to sign up to Tollgate with your address',
            body: 'Someone (maybe you) tried to create a Tollgate account with this email address, which already has one.\n\nIf it was you, sign in, or use "Forgot password" on the sign-in page. If not, nothing changed: you can ignore this email.',
          },
          metadata: systemMetadata('sign-up'),
        });
      }
      await this.vault.destroyKey(userId);
      return ok({ accepted: true });
    }
    await this.fault('sign-up:claimed');
    const metadata = commandMetadata({ kind: 'user', userId });
    await this.store.appendToStream(
      userStreamId(userId),
      [
        {
          id: deterministicUuid(`UserRegistered|${userId}`),
          event: {
            type: 'UserRegistered',
            data: {
              userId,
              nameCiphertext: await this.vault.encrypt(userId, input.name),
              emailCiphertext,
              accountId,
              account: {
                displayNameCiphertext: await this.vault.encrypt(accountId, input.organisation),
                emailCiphertext: await this.vault.encrypt(accountId, email),
              },
            },
            metadata: eventMetadataFrom(metadata),
          },
        },
      ],
      { expectedVersion: 'no_stream' },
    );
    await this.fault('sign-up:registered');
    await this.completeRegistration(userId);
    return ok({ accepted: true });
  }

  /**
   * Finishes a registration from the user's UserRegistered event; every step is idempotent, so
   * it runs again after a crash (the reconciler) or beside a sign-up still in flight:
   * - a sign-up's account is opened (OpenAccount again answers account_already_opened) and the
   *   user made its owner (MemberAdded under a deterministic id, at the members stream's revision);
   * - the verification email is requested under an id derived from the user's, so it is one
   *   email however often this runs, and its link's hash is stored once;
   * - an invitee's confirmed address gets its UserEmailVerified;
   * - last, the credentials row is marked registered: from then on the person can sign in.
   * Returns false when the stream has no UserRegistered (nothing to finish).
   */
  async completeRegistration(userId: string): Promise<boolean> {
    const { events } = await this.store.readStream(userStreamId(userId));
    const registered = events.find((e) => e.event.type === 'UserRegistered')?.event;
    if (registered?.type !== 'UserRegistered') return false;
    const user = await this.pool.query<{ email_verified_at: Date | null; registered_at: Date | null }>(
      'SELECT email_verified_at, registered_at FROM user_credentials WHERE user_id = $1',
      [userId],
    );
    const row = user.rows[0];
    if (!row || row.registered_at !== null) return true;
    const metadata = commandMetadata({ kind: 'user', userId });
    const { accountId, account } = registered.data;
    if (accountId !== null && account !== undefined) {
      const opened = await this.ledger.accounts.handle(accountStreamId(accountId), {
        type: 'OpenAccount',
        data: { accountId, displayNameCiphertext: account.displayNameCiphertext, emailCiphertext: account.emailCiphertext },
        metadata,
      });
      if (!opened.ok && opened.error.error !== 'account_already_opened') throw new Error(`sign-up could not open the account: ${opened.error.error}`);
      await this.fault('sign-up:account-opened');
      await this.ensureMember(accountId, userId, 'owner', `sign-up|${userId}`, metadata);
      await this.fault('sign-up:member-added');
      if (row.email_verified_at === null) {
        const email = await this.vault.decrypt(userId, registered.data.emailCiphertext);
        const name = (await this.vault.decrypt(userId, registered.data.nameCiphertext)) ?? '';
        if (email !== null)
          await this.sendVerification(userId, email, name, 'verify_email', null, `em_${sha256(`sign-up-verification|${userId}`).slice(0, 32)}`);
      }
    } else if (row.email_verified_at !== null && !events.some((e) => e.event.type === 'UserEmailVerified')) {
      await this.appendToUser(userId, { type: 'UserEmailVerified', data: { userId } }, deterministicUuid(`UserEmailVerified|registration|${userId}`));
    }
    await this.pool.query('UPDATE user_credentials SET registered_at = now() WHERE user_id = $1 AND registered_at IS NULL', [userId]);
    return true;
  }

  /**
   * One unfinished registration: finished when its UserRegistered is there; otherwise, when
   * `stale`, fenced (UserRegistrationAbandoned as the stream's first event) and its row deleted.
   */
  private async settleRegistration(userId: string, stale: boolean): Promise<'completed' | 'abandoned' | 'left'> {
    if (await this.completeRegistration(userId)) return 'completed';
    if (!stale) return 'left';
    try {
      await this.store.appendToStream(
        userStreamId(userId),
        [
          {
            id: deterministicUuid(`UserRegistrationAbandoned|${userId}`),
            event: this.userEvent(userId, { type: 'UserRegistrationAbandoned', data: { userId } }),
          },
        ],
        { expectedVersion: 'no_stream' },
      );
    } catch (error) {
      if (!(error instanceof VersionConflictError)) throw error;
      // UserRegistered landed meanwhile: finish it instead.
      if (await this.completeRegistration(userId)) return 'completed';
    }
    const first = (await this.store.readStream(userStreamId(userId), { maxCount: 1 })).events[0]?.event;
    if (first?.type !== 'UserRegistrationAbandoned') return 'left';
    await this.pool.query('DELETE FROM user_credentials WHERE user_id = $1 AND registered_at IS NULL', [userId]);
    await this.vault.destroyKey(userId);
    return 'abandoned';
  }

  /**
   * Finishes what a crash interrupted, idempotently (run by the background workers, at start and
   * then periodically, and safe beside requests still in flight):
   * - registrations whose credentials row is not marked registered: finished from UserRegistered;
   *   without one, once older than `abandonAfterMs` (a request still between its two writes is
   *   younger), UserRegistrationAbandoned is appended as the stream's first event, so the late
   *   UserRegistered can never land, and the row is deleted: the address is free again;
   * - accepted invitations whose membership is not recorded yet;
   * - self-deletions asked for but not finished.
   */
  async reconcile(options: { abandonAfterMs: number }): Promise<{ completed: number; abandoned: number; invitations: number; deletions: number }> {
    const result = { completed: 0, abandoned: 0, invitations: 0, deletions: 0 };
    const invitations = await this.pool.query<{ invitation_id: string }>(
      'SELECT invitation_id FROM account_invitations WHERE used_at IS NOT NULL AND completed_at IS NULL AND accepted_by IS NOT NULL ORDER BY used_at',
    );
    const pending = await this.pool.query<{ user_id: string; stale: boolean }>(
      `SELECT user_id, created_at < now() - $1 * interval '1 millisecond' AS stale FROM user_credentials WHERE registered_at IS NULL ORDER BY created_at`,
      [options.abandonAfterMs],
    );
    for (const { user_id: userId, stale } of pending.rows) {
      const outcome = await this.settleRegistration(userId, stale);
      if (outcome !== 'left') result[outcome] += 1;
    }
    for (const { invitation_id } of invitations.rows) {
      if (await this.completeInvitation(invitation_id)) result.invitations += 1;
    }
    const deleting = await this.pool.query<{ user_id: string }>('SELECT user_id FROM user_credentials WHERE deleting_at IS NOT NULL ORDER BY deleting_at');
    for (const { user_id } of deleting.rows) {
      await this.completeDeletion(user_id);
      result.deletions += 1;
    }
    return result;
  }

  /** Confirms an address by its emailed link: the sign-up address or a new one from the profile. */
  async verifyEmail(token: string): Promise<Outcome<{ userId: string }>> {
    const row = await this.takeToken(token, ['verify_email', 'change_email']);
    if (!row) return no('invalid_token', INVALID_TOKEN);
    if (row.purpose === 'change_email') {
      const taken = await this.pool
        .query('UPDATE user_credentials SET email_lookup = $2, email_ciphertext = $3, email_verified_at = now() WHERE user_id = $1', [
          row.user_id,
          row.new_email_lookup,
          row.new_email_ciphertext,
        ])
        .catch((error: { code?: string }) => {
          if (error.code === '23505') return null;
          throw error;
        });
      // Another user verified the same address meanwhile: the link cannot apply.
      if (taken === null) return no('invalid_token', INVALID_TOKEN);
      await this.appendToUser(row.user_id, {
        type: 'UserProfileCorrected',
        data: { userId: row.user_id, nameCiphertext: null, emailCiphertext: row.new_email_ciphertext! },
      });
    } else {
      await this.pool.query('UPDATE user_credentials SET email_verified_at = COALESCE(email_verified_at, now()) WHERE user_id = $1', [row.user_id]);
    }
    await this.appendToUser(row.user_id, { type: 'UserEmailVerified', data: { userId: row.user_id } });
    await this.grantSignupPromo(row.user_id);
    return ok({ userId: row.user_id });
  }

  /** A new verification link for a signed-in user whose address is not confirmed yet. */
  async resendVerification(userId: string): Promise<void> {
    const user = await this.credentials(userId);
    if (!user || user.email_verified_at) return;
    const email = await this.vault.decrypt(userId, user.email_ciphertext);
    const name = await this.nameOf(userId);
    if (email) await this.sendVerification(userId, email, name ?? '', 'verify_email', null);
  }

  // Sign-in, sessions ----------------------------------------------------------------------------

  /**
   * Email and password. Unknown email and wrong password get the same answer after the same
   * work (a bcrypt comparison, against a dummy hash when there is no user). Failures count per
   * email and per client address; past either limit the answer is 429 until the window passes.
   */
  async signIn(input: {
    email: string;
    password: string;
    clientAddress: string;
    userAgent: string | null;
  }): Promise<Outcome<{ sessionId: string; stage: 'two_factor' | 'signed_in' }>> {
    const email = normaliseEmail(input.email);
    const lookup = await this.emailLookup(email);
    const subjects = [`email:${lookup}`, `addr:${await this.keyed(`addr|${input.clientAddress}`)}`];
    const blocked = await this.blockedFor(subjects);
    if (blocked > 0) return no('too_many_attempts', 'Too many failed sign-in attempts. Wait a few minutes and try again.', { retryAfterS: blocked });
    const user = await this.liveUserByLookup(lookup);
    const hash = user?.password_hash ?? (await this.dummy());
    const matches = await bcrypt.compare(input.password.slice(0, 1_024), hash);
    if (!user || !matches) {
      await this.pool.query('INSERT INTO sign_in_failures (subject) SELECT unnest($1::text[])', [subjects]);
      await this.pool.query(`DELETE FROM sign_in_failures WHERE at < now() - $1 * interval '1 millisecond' * 4`, [this.options.failureWindowMs]);
      return no('invalid_credentials', INVALID_CREDENTIALS);
    }
    await this.pool.query('DELETE FROM sign_in_failures WHERE subject = $1', [subjects[0]]);
    const stage = user.totp_enabled_at ? 'two_factor' : 'signed_in';
    const sessionId = await this.openSession(user.user_id, stage, input.userAgent);
    return ok({ sessionId, stage });
  }

  /** Second step of a sign-in with two-factor: a current TOTP code or an unused recovery code. */
  async completeTwoFactor(sessionId: string, code: string): Promise<Outcome<{ sessionId: string }>> {
    const session = await this.sessionRow(sessionId);
    if (!session || session.stage !== 'two_factor') return no('two_factor_not_pending', 'Sign in with your email and password first.');
    const failuresSubject = `2fa:${session.user_id}`;
    const blocked = await this.blockedFor([failuresSubject]);
    if (blocked > 0) return no('too_many_attempts', 'Too many wrong codes. Wait a few minutes and try again.', { retryAfterS: blocked });
    if (!(await this.checkSecondFactor(session.user_id, code))) {
      await this.pool.query('INSERT INTO sign_in_failures (subject) VALUES ($1)', [failuresSubject]);
      return no('invalid_code', 'That code is not valid.');
    }
    // A fresh id for the full session: the half-signed-in one ends.
    await this.endSessionByHash(sha256(sessionId), 'two_factor_completed');
    return ok({ sessionId: await this.openSession(session.user_id, 'signed_in', session.user_agent) });
  }

  /** The principal of a live session, sliding its idle expiry; null for unknown, ended or expired. */
  async session(sessionId: string): Promise<SessionPrincipal | null> {
    if (!/^tgs_[A-Za-z0-9_-]{43}$/.test(sessionId)) return null;
    const { rows } = await this.pool.query<{ public_id: string; user_id: string; stage: 'two_factor' | 'signed_in'; account_id: string | null }>(
      `UPDATE user_sessions SET last_seen_at = now(), idle_expires_at = LEAST(now() + $2 * interval '1 millisecond', absolute_expires_at)
        WHERE session_hash = $1 AND ended_at IS NULL AND idle_expires_at > now() AND absolute_expires_at > now()
        RETURNING public_id, user_id, stage, account_id`,
      [sha256(sessionId), this.options.sessionIdleMs],
    );
    const row = rows[0];
    if (!row) return null;
    const facts = await this.pool.query<{ role: MemberRole | null; verified: boolean }>(
      `SELECT (SELECT role FROM memberships WHERE user_id = $1 AND account_id = $2) AS role,
              (SELECT email_verified_at IS NOT NULL FROM user_credentials WHERE user_id = $1) AS verified`,
      [row.user_id, row.account_id],
    );
    const role = facts.rows[0]?.role ?? null;
    return {
      publicId: row.public_id,
      userId: row.user_id,
      stage: row.stage,
      accountId: role === null ? null : row.account_id,
      role,
      emailVerified: facts.rows[0]?.verified === true,
    };
  }

  async signOut(sessionId: string): Promise<void> {
    await this.endSessionByHash(sha256(sessionId), 'signed_out');
  }

  async listSessions(userId: string, currentPublicId: string): Promise<SessionView[]> {
    const { rows } = await this.pool.query<{
      public_id: string;
      created_at: Date;
      last_seen_at: Date;
      idle_expires_at: Date;
      absolute_expires_at: Date;
      user_agent: string | null;
    }>(
      `SELECT public_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, user_agent FROM user_sessions
        WHERE user_id = $1 AND ended_at IS NULL AND stage = 'signed_in' AND idle_expires_at > now() AND absolute_expires_at > now()
        ORDER BY last_seen_at DESC`,
      [userId],
    );
    return rows.map((r) => ({
      id: r.public_id,
      created_at: r.created_at.toISOString(),
      last_seen_at: r.last_seen_at.toISOString(),
      idle_expires_at: r.idle_expires_at.toISOString(),
      absolute_expires_at: r.absolute_expires_at.toISOString(),
      user_agent: r.user_agent,
      current: r.public_id === currentPublicId,
    }));
  }

  async revokeSession(userId: string, publicId: string): Promise<Outcome<{ revoked: true }>> {
    const { rowCount } = await this.pool.query(
      `UPDATE user_sessions SET ended_at = now(), ended_why = 'revoked' WHERE user_id = $1 AND public_id = $2 AND ended_at IS NULL`,
      [userId, publicId],
    );
    return rowCount ? ok({ revoked: true }) : no('session_not_found', 'No such session.');
  }

  /** Works in another of the user's accounts from now on. */
  async switchAccount(sessionId: string, userId: string, accountId: string): Promise<Outcome<{ accountId: string }>> {
    const member = await this.pool.query('SELECT 1 FROM memberships WHERE user_id = $1 AND account_id = $2', [userId, accountId]);
    if (!member.rowCount) return no('not_a_member', 'You are not a member of that account.');
    await this.pool.query('UPDATE user_sessions SET account_id = $2 WHERE session_hash = $1', [sha256(sessionId), accountId]);
    return ok({ accountId });
  }

  // Passwords ------------------------------------------------------------------------------------

  /** Same answer whether or not the address is registered; a registered one gets a reset link (1 h, single use). */
  async forgotPassword(rawEmail: string): Promise<Outcome<{ accepted: true }>> {
    const email = normaliseEmail(rawEmail);
    if (!isEmail(email)) return no('invalid_email', 'That is not a valid email address.');
    const user = await this.liveUserByLookup(await this.emailLookup(email));
    if (!user) {
      // Comparable work to the registered case's encryption and append.
      await bcrypt.hash(randomBytes(16).toString('hex'), this.options.bcryptCost);
      return ok({ accepted: true });
    }
    const name = (await this.nameOf(user.user_id)) ?? '';
    await this.sendVerification(user.user_id, email, name, 'reset_password', null);
    return ok({ accepted: true });
  }

  /** A new password by an emailed link: every session of the user ends. */
  async resetPassword(token: string, password: string): Promise<Outcome<{ userId: string }>> {
    const peek = await this.pool.query<{ user_id: string }>(
      `SELECT user_id FROM identity_tokens WHERE token_hash = $1 AND purpose = 'reset_password' AND used_at IS NULL AND expires_at > now()`,
      [hashLinkToken(token)],
    );
    if (!peek.rows[0]) return no('invalid_token', INVALID_TOKEN);
    const weak = passwordProblem(password);
    if (weak) return no('weak_password', weak);
    const row = await this.takeToken(token, ['reset_password']);
    if (!row) return no('invalid_token', INVALID_TOKEN);
    await this.setPassword(row.user_id, password, 'reset', null);
    return ok({ userId: row.user_id });
  }

  /** A signed-in user's new password (knowing the current one): their other sessions end. */
  async changePassword(userId: string, currentSessionId: string, current: string, next: string): Promise<Outcome<{ changed: true }>> {
    const user = await this.credentials(userId);
    if (!user || !(await bcrypt.compare(current.slice(0, 1_024), user.password_hash))) return no('invalid_credentials', 'The current password is wrong.');
    const weak = passwordProblem(next);
    if (weak) return no('weak_password', weak);
    await this.setPassword(userId, next, 'changed', sha256(currentSessionId));
    return ok({ changed: true });
  }

  // Profile ----------------------------------------------------------------------------------------

  async profile(userId: string, currentAccountId: string | null): Promise<Profile | null> {
    const user = await this.credentials(userId);
    if (!user) return null;
    const email = await this.vault.decrypt(userId, user.email_ciphertext);
    const pending = await this.pool.query<{ new_email_ciphertext: string }>(
      `SELECT new_email_ciphertext FROM identity_tokens WHERE user_id = $1 AND purpose = 'change_email' AND used_at IS NULL AND expires_at > now()
        ORDER BY created_at DESC LIMIT 1`,
      [userId],
    );
    const memberships = await this.pool.query<{ account_id: string; role: MemberRole }>(
      'SELECT account_id, role FROM memberships WHERE user_id = $1 ORDER BY since, account_id',
      [userId],
    );
    return {
      user_id: userId,
      name: (await this.nameOf(userId)) ?? '',
      email: email ?? '',
      email_verified: user.email_verified_at !== null,
      pending_email: pending.rows[0] ? await this.vault.decrypt(userId, pending.rows[0].new_email_ciphertext) : null,
      two_factor_enabled: user.totp_enabled_at !== null,
      memberships: memberships.rows,
      current_account_id: currentAccountId,
    };
  }

  /**
   * Everything held about a person, for their own data-access request: the profile (decrypted),
   * the events of their stream (ciphertexts left out: their clear values are the profile's), their
   * memberships and live sessions. Credentials (password hash, TOTP secret, recovery codes) are
   * never exported, only whether they are set.
   */
  async exportUser(userId: string, currentPublicId: string): Promise<Record<string, unknown> | null> {
    const profile = await this.profile(userId, null);
    if (!profile) return null;
    const { events } = await this.store.readStream(userStreamId(userId));
    // `account` holds the sign-up's organisation name and address, encrypted: their clear values are the account export's.
    const withheld = new Set(['nameCiphertext', 'emailCiphertext', 'account']);
    return {
      profile: { ...profile, current_account_id: undefined },
      events: events.map(({ revision, event }) => ({
        revision: revision.toString(),
        type: event.type,
        occurred_at: event.metadata.occurredAt,
        data: Object.fromEntries(Object.entries(event.data as Record<string, unknown>).filter(([k]) => !withheld.has(k))),
      })),
      sessions: await this.listSessions(userId, currentPublicId),
    };
  }

  /**
   * The user deletes themselves, confirming with their password. Refused while they are the only
   * owner of an account that is not closed (they close it, or make someone else an owner, first). Otherwise their
   * memberships are removed, UserDeleted is recorded with them as the actor, and their personal
   * data is crypto-shredded at once: the vault key under their id is destroyed (name and email in
   * their events become unreadable) and the credential rows go (password hash, TOTP secret,
   * recovery codes, link tokens, every session).
   *
   * Crash-safe by its order: the decision is one transaction (the accounts' memberships locked and
   * current, the owner check, `deleting_at` set, every session ended); from then on the user cannot
   * sign in, counts as an owner nowhere, and the rest follows idempotently (completeDeletion): a
   * crash at any later point is finished by the reconciler.
   */
  async deleteUser(userId: string, password: string): Promise<Outcome<{ deleted: true }>> {
    const user = await this.credentials(userId);
    if (!user) return no('session_not_found', 'No such user.');
    if (!(await bcrypt.compare(password, user.password_hash))) return no('invalid_credentials', 'The password is wrong.');
    const metadata = commandMetadata({ kind: 'user', userId });
    // An admin user gives up their operator role first (refused for the last operator); given back
    // below if the deletion is then refused.
    const formerRole = await this.adminRole(userId);
    if (formerRole !== null) {
      const revoked = await this.decideAdminRoles({ type: 'RevokeAdminRole', userId }, metadata);
      if (!revoked.ok && revoked.error.code !== 'admin_not_found') return revoked;
    }
    const decided = await inTransaction(this.pool, async (db) => {
      const { rows: accounts } = await db.query<{ account_id: string }>('SELECT account_id FROM memberships WHERE user_id = $1 ORDER BY account_id', [userId]);
      // Locked and brought up to date in id order (as every writer does): two owners deleting
      // themselves at once are decided one after the other, the second seeing the first as leaving.
      for (const { account_id } of accounts) await syncMembers(db, this.store, account_id);
      const open: string[] = [];
      for (const { account_id } of accounts) {
        if ((await this.memberRole(db, account_id, userId)) !== 'owner' || (await this.ownerCount(db, account_id)) > 1) continue;
        // A closed account needs no owner any more (its data goes with the retention worker).
        const { events } = await this.store.readStream(accountStreamId(account_id));
        if (!events.some((e) => e.event.type === 'AccountClosed' || e.event.type === 'AccountTerminated')) open.push(account_id);
      }
      if (open.length > 0) return { soleOwner: open };
      await db.query('UPDATE user_credentials SET deleting_at = COALESCE(deleting_at, now()) WHERE user_id = $1', [userId]);
      await db.query(`UPDATE user_sessions SET ended_at = now(), ended_why = 'user_deleted' WHERE user_id = $1 AND ended_at IS NULL`, [userId]);
      return { deleting: true };
    });
    if ('soleOwner' in decided) {
      if (formerRole !== null) await this.decideAdminRoles({ type: 'AssignAdminRole', userId, role: formerRole, emailCiphertext: null }, metadata);
      return no('last_owner', 'You are the only owner of an account: make another member an owner, or close the account, before deleting yourself.', {
        accountIds: decided.soleOwner,
      } as Partial<IdentityRefusal>);
    }
    await this.fault('delete:decided');
    await this.completeDeletion(userId);
    return ok({ deleted: true });
  }

  /**
   * Finishes a self-deletion decided by deleteUser, each step idempotent: MemberRemoved in each
   * account (deterministic ids, members locked), UserDeleted, then the shredding; the credentials
   * row, which marks the deletion as under way, goes last.
   */
  async completeDeletion(userId: string): Promise<void> {
    const decided = await this.pool.query('SELECT 1 FROM user_credentials WHERE user_id = $1 AND deleting_at IS NOT NULL', [userId]);
    if (!decided.rowCount) return;
    const metadata = commandMetadata({ kind: 'user', userId });
    const { rows: accounts } = await this.pool.query<{ account_id: string }>('SELECT account_id FROM memberships WHERE user_id = $1 ORDER BY account_id', [
      userId,
    ]);
    for (const { account_id: accountId } of accounts) {
      await this.withMembersLocked(accountId, async (db, revision) => {
        if ((await this.memberRole(db, accountId, userId)) === null) return ok(null);
        await this.appendToMembers(
          db,
          accountId,
          revision,
          { type: 'MemberRemoved', data: { accountId, userId } },
          metadata,
          deterministicUuid(`MemberRemoved|deleted|${userId}|${accountId}|${revision}`),
        );
        return ok(null);
      });
      await this.fault('delete:member-removed');
    }
    await this.appendToUser(userId, { type: 'UserDeleted', data: { userId } }, deterministicUuid(`UserDeleted|${userId}`));
    await this.fault('delete:recorded');
    await this.pool.query('DELETE FROM user_sessions WHERE user_id = $1', [userId]);
    await this.pool.query('DELETE FROM identity_tokens WHERE user_id = $1', [userId]);
    await this.vault.destroyKey(userId);
    await this.pool.query('DELETE FROM user_credentials WHERE user_id = $1', [userId]);
  }

  // Admin users ------------------------------------------------------------------------------------

  /**
   * Creates an admin user (email verified: the operator vouches for it) with an operator role, or
   * gives an existing user that role (their password is kept). They then sign in like anyone, with
   * two-factor if they turn it on, and reach the /admin routes their role allows. The grant is an
   * event in the `admin-roles` stream with `metadata.actor` as who granted it.
   */
  async addAdminUser(
    input: { email: string; password: string | null; role: AdminRole },
    metadata: CommandMetadata,
  ): Promise<Outcome<{ userId: string; created: boolean }>> {
    const email = normaliseEmail(input.email);
    if (!isEmail(email)) return no('invalid_email', 'That is not a valid email address.');
    const lookup = await this.emailLookup(email);
    let userId = (await this.userByLookup(lookup))?.user_id ?? null;
    let emailCiphertext: string | null = null;
    if (userId === null) {
      if (input.password === null) {
        return no('missing_required_parameter', 'No user has this email: give a password to create the admin user.', {
          param: 'password',
        } as Partial<IdentityRefusal>);
      }
      const weak = passwordProblem(input.password, [email]);
      if (weak) return no('weak_password', weak);
      userId = randomId('usr');
      emailCiphertext = await this.vault.encrypt(userId, email);
      const inserted = await this.pool.query(
        `INSERT INTO user_credentials (user_id, email_lookup, email_ciphertext, password_hash, email_verified_at) VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (email_lookup) DO NOTHING`,
        [userId, lookup, emailCiphertext, await bcrypt.hash(input.password, this.options.bcryptCost)],
      );
      if (inserted.rowCount === 0) return this.addAdminUser(input, metadata);
    }
    const decided = await this.decideAdminRoles({ type: 'AssignAdminRole', userId, role: input.role, emailCiphertext }, metadata);
    if (!decided.ok) return decided;
    return ok({ userId, created: emailCiphertext !== null });
  }

  /**
   * Gives an admin user another operator role. Refused for someone who is no admin
   * (`admin_not_found`) and for the last operator (`last_operator`): someone must keep the role.
   * Their sessions stay; the next call is judged by the new role.
   */
  async changeAdminRole(userId: string, role: AdminRole, metadata: CommandMetadata): Promise<Outcome<{ userId: string; role: AdminRole }>> {
    const state = await this.adminRolesState();
    if (!state.roles.has(userId)) return no('admin_not_found', 'No admin user with this id.');
    const decided = await this.decideAdminRoles({ type: 'AssignAdminRole', userId, role, emailCiphertext: null }, metadata);
    if (!decided.ok) return decided;
    return ok({ userId, role });
  }

  /**
   * Takes the user's operator role away and ends all their sessions (they stay a user, and a
   * member of any accounts they belong to). The last operator cannot be removed, not even by
   * themselves (`last_operator`).
   */
  async removeAdmin(userId: string, metadata: CommandMetadata): Promise<Outcome<{ userId: string }>> {
    const decided = await this.decideAdminRoles({ type: 'RevokeAdminRole', userId }, metadata);
    if (!decided.ok) return decided;
    await this.pool.query('DELETE FROM user_sessions WHERE user_id = $1', [userId]);
    return ok({ userId });
  }

  /** The user's operator role, or null for a customer: decided on the stream, so a revocation holds at once. */
  async adminRole(userId: string): Promise<AdminRole | null> {
    return (await this.adminRolesState()).roles.get(userId) ?? null;
  }

  /** Every admin user from the `admin_roles` projection (the caller brings it up to date), with their email. */
  async listAdmins(): Promise<AdminUserView[]> {
    const { rows } = await this.pool.query<{ user_id: string; role: AdminRole; granted_at: Date; email_ciphertext: string | null; totp: boolean | null }>(
      `SELECT r.user_id, r.role, r.granted_at, c.email_ciphertext, c.totp_enabled_at IS NOT NULL AS totp
         FROM admin_roles r LEFT JOIN user_credentials c ON c.user_id = r.user_id ORDER BY r.granted_at, r.user_id`,
    );
    return Promise.all(
      rows.map(async (r) => ({
        user_id: r.user_id,
        email: r.email_ciphertext ? await this.vault.decrypt(r.user_id, r.email_ciphertext).catch(() => null) : null,
        role: r.role,
        granted_at: r.granted_at.toISOString(),
        two_factor_enabled: r.totp === true,
      })),
    );
  }

  /** The user id for an email, or null: for `tollgate admins remove --email`. */
  async userIdOfEmail(email: string): Promise<string | null> {
    return (await this.userByLookup(await this.emailLookup(normaliseEmail(email))))?.user_id ?? null;
  }

  private async adminRolesState(): Promise<{ roles: AdminRolesState; revision: bigint | 'no_stream' }> {
    const { events, revision } = await this.store.readStream(ADMIN_ROLES_STREAM_ID);
    const roles = fold(
      adminRolesDecider,
      events.map((e) => e.event).filter((e) => e.type.startsWith('AdminRole')) as Parameters<typeof adminRolesDecider.evolve>[1][],
    );
    return { roles, revision: revision ?? 'no_stream' };
  }

  /** Decides against the whole set of roles and appends at its version; a concurrent change makes it decide again. */
  private async decideAdminRoles(command: AdminRolesCommand, metadata: CommandMetadata): Promise<Outcome<null>> {
    for (let attempt = 0; ; attempt++) {
      const { roles, revision } = await this.adminRolesState();
      const decision = adminRolesDecider.decide(command, roles);
      if (!decision.ok) return no(decision.error.error, ADMIN_REFUSALS[decision.error.error]);
      if (decision.events.length === 0) return ok(null);
      try {
        await this.store.appendToStream(
          ADMIN_ROLES_STREAM_ID,
          decision.events.map((e) => ({ id: randomUUID(), event: { ...e, metadata: eventMetadataFrom(metadata) } as DomainEvent })),
          { expectedVersion: revision },
        );
        return ok(null);
      } catch (error) {
        if (attempt >= 5 || (error as Error).name !== 'VersionConflictError') throw error;
      }
    }
  }

  /** Corrects the name at once; a new email is sent a confirmation link and applies when it is used. */
  async updateProfile(userId: string, input: { name?: string; email?: string }): Promise<Outcome<{ emailChangePending: boolean }>> {
    let emailChangePending = false;
    if (input.email !== undefined) {
      const email = normaliseEmail(input.email);
      if (!isEmail(email)) return no('invalid_email', 'That is not a valid email address.');
      const user = await this.credentials(userId);
      const current = user ? await this.vault.decrypt(userId, user.email_ciphertext) : null;
      if (email !== current) {
        // Sent even when the address belongs to someone else (the link then fails): the answer tells nothing.
        await this.sendVerification(userId, email, input.name ?? (await this.nameOf(userId)) ?? '', 'change_email', email);
        emailChangePending = true;
      }
    }
    if (input.name !== undefined) {
      await this.appendToUser(userId, {
        type: 'UserProfileCorrected',
        data: { userId, nameCiphertext: await this.vault.encrypt(userId, input.name), emailCiphertext: null },
      });
    }
    return ok({ emailChangePending });
  }

  // Two-factor -------------------------------------------------------------------------------------

  /** Starts enrolment: a new secret (kept encrypted, not yet in force) and its otpauth:// URI for an authenticator app. */
  async beginTwoFactor(userId: string): Promise<Outcome<{ secret: string; uri: string }>> {
    const user = await this.credentials(userId);
    if (!user) return no('session_not_found', 'No such user.');
    if (user.totp_enabled_at) return no('two_factor_already_enabled', 'Two-factor authentication is already on; turn it off first to enrol a new device.');
    const secret = new OTPAuth.Secret({ size: 20 }).base32;
    await this.pool.query('UPDATE user_credentials SET totp_secret_ciphertext = $2 WHERE user_id = $1', [userId, await this.vault.encrypt(userId, secret)]);
    const label = (await this.vault.decrypt(userId, user.email_ciphertext)) ?? userId;
    return ok({ secret, uri: totpOf(secret, label).toString() });
  }

  /** Turns two-factor on with a first valid code; answers the recovery codes, shown this once. */
  async confirmTwoFactor(userId: string, code: string): Promise<Outcome<{ recoveryCodes: string[] }>> {
    const user = await this.credentials(userId);
    if (!user?.totp_secret_ciphertext) return no('two_factor_not_pending', 'Start two-factor enrolment first.');
    if (user.totp_enabled_at) return no('two_factor_already_enabled', 'Two-factor authentication is already on.');
    const secret = await this.vault.decrypt(userId, user.totp_secret_ciphertext);
    const step = secret === null ? null : validTotpStep(secret, code);
    if (step === null) return no('invalid_code', 'That code is not valid. Check the time on your device and try the current code.');
    const codes = Array.from({ length: RECOVERY_CODES }, () => recoveryCode());
    await inTransaction(this.pool, async (db) => {
      await db.query('UPDATE user_credentials SET totp_enabled_at = now(), totp_last_step = $2 WHERE user_id = $1', [userId, step]);
      await db.query('DELETE FROM user_recovery_codes WHERE user_id = $1', [userId]);
      await db.query('INSERT INTO user_recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])', [
        userId,
        codes.map((c) => sha256(normaliseCode(c))),
      ]);
    });
    await this.appendToUser(userId, { type: 'UserTwoFactorChanged', data: { userId, change: 'enabled' } });
    return ok({ recoveryCodes: codes });
  }

  /** Turns two-factor off; needs the password and a current code (or a recovery code). */
  async disableTwoFactor(userId: string, password: string, code: string): Promise<Outcome<{ disabled: true }>> {
    const user = await this.credentials(userId);
    if (!user?.totp_enabled_at) return no('two_factor_not_enabled', 'Two-factor authentication is not on.');
    if (!(await bcrypt.compare(password.slice(0, 1_024), user.password_hash))) return no('invalid_credentials', 'The password is wrong.');
    if (!(await this.checkSecondFactor(userId, code))) return no('invalid_code', 'That code is not valid.');
    await this.pool.query('UPDATE user_credentials SET totp_enabled_at = NULL, totp_secret_ciphertext = NULL, totp_last_step = NULL WHERE user_id = $1', [
      userId,
    ]);
    await this.pool.query('DELETE FROM user_recovery_codes WHERE user_id = $1', [userId]);
    await this.appendToUser(userId, { type: 'UserTwoFactorChanged', data: { userId, change: 'disabled' } });
    return ok({ disabled: true });
  }

  // Memberships --------------------------------------------------------------------------------------

  /** Adds the user with the role, or gives a member that role (operators' and tests' direct way; no permission check). */
  async addMember(accountId: string, userId: string, role: MemberRole, metadata: CommandMetadata): Promise<void> {
    await this.withMembersLocked(accountId, async (db, revision) => {
      const current = await this.memberRole(db, accountId, userId);
      if (current === role) return ok(null);
      const event: WithoutMetadata<DomainEvent> =
        current === null ? { type: 'MemberAdded', data: { accountId, userId, role } } : { type: 'MemberRoleChanged', data: { accountId, userId, role } };
      await this.appendToMembers(db, accountId, revision, event, metadata);
      return ok(null);
    });
  }

  /**
   * Makes the user a member with the role unless they are one already: MemberAdded in the
   * account's members stream, under an event id derived from `key` (the step that adds them), at
   * the revision the decision was made on; the memberships projection is brought up to it in the
   * same transaction. Idempotent: a step run again after a crash finds the member and does nothing.
   */
  async ensureMember(accountId: string, userId: string, role: MemberRole, key: string, metadata: CommandMetadata): Promise<void> {
    await this.withMembersLocked(accountId, async (db, revision) => {
      if ((await this.memberRole(db, accountId, userId)) !== null) return ok(null);
      await this.appendToMembers(
        db,
        accountId,
        revision,
        { type: 'MemberAdded', data: { accountId, userId, role } },
        metadata,
        deterministicUuid(`MemberAdded|${key}`),
      );
      return ok(null);
    });
  }

  /** The account's members with their roles, and its pending invitations (any member may read them). */
  async listMembers(accountId: string, viewerId: string): Promise<{ members: MemberView[]; invitations: InvitationView[] }> {
    const { rows } = await this.pool.query<{ user_id: string; role: MemberRole; since: Date; email_ciphertext: string | null }>(
      `SELECT m.user_id, m.role, m.since, c.email_ciphertext FROM memberships m LEFT JOIN user_credentials c ON c.user_id = m.user_id
        WHERE m.account_id = $1 ORDER BY m.since, m.user_id`,
      [accountId],
    );
    const members: MemberView[] = [];
    for (const row of rows) {
      members.push({
        user_id: row.user_id,
        name: (await this.nameOf(row.user_id).catch(() => null)) ?? '',
        email: row.email_ciphertext ? ((await this.vault.decrypt(row.user_id, row.email_ciphertext).catch(() => null)) ?? '') : '',
        role: row.role,
        since: row.since.toISOString(),
        you: row.user_id === viewerId,
      });
    }
    const pending = await this.pool.query<{
      invitation_id: string;
      email_ciphertext: string;
      role: MemberRole;
      invited_by: string;
      created_at: Date;
      expires_at: Date;
    }>(
      `SELECT invitation_id, email_ciphertext, role, invited_by, created_at, expires_at FROM account_invitations
        WHERE account_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now() ORDER BY created_at`,
      [accountId],
    );
    const invitations: InvitationView[] = [];
    for (const row of pending.rows) {
      invitations.push({
        id: row.invitation_id,
        email: (await this.vault.decrypt(accountId, row.email_ciphertext).catch(() => null)) ?? '',
        role: row.role,
        invited_by: row.invited_by,
        created_at: row.created_at.toISOString(),
        expires_at: row.expires_at.toISOString(),
      });
    }
    return { members, invitations };
  }

  /**
   * Invites an address to the account with a role: a single-use link valid INVITATION_MS, sent
   * through the mail outbox; only its token's hash is kept. An address already a member is refused.
   */
  async invite(input: { accountId: string; actorId: string; actorRole: MemberRole; email: string; role: MemberRole }): Promise<Outcome<InvitationView>> {
    const denied = mayManage(input.actorRole, null, input.role);
    if (denied) return no('insufficient_role', denied);
    const email = normaliseEmail(input.email);
    if (!isEmail(email)) return no('invalid_email', 'That is not a valid email address.');
    const lookup = await this.emailLookup(email);
    const member = await this.pool.query(
      'SELECT 1 FROM memberships m JOIN user_credentials c ON c.user_id = m.user_id WHERE m.account_id = $1 AND c.email_lookup = $2',
      [input.accountId, lookup],
    );
    if (member.rowCount) return no('already_a_member', 'That address belongs to a member of this account already.');
    const invitationId = randomId('inv', 10);
    const emailId = `em_${randomUUID().replaceAll('-', '')}`;
    const tokenHash = hashLinkToken(await this.mail.linkToken(emailId));
    const { rows } = await this.pool.query<{ created_at: Date; expires_at: Date }>(
      `INSERT INTO account_invitations (invitation_id, token_hash, account_id, email_lookup, email_ciphertext, role, invited_by, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8 * interval '1 millisecond') RETURNING created_at, expires_at`,
      [invitationId, tokenHash, input.accountId, lookup, await this.vault.encrypt(input.accountId, email), input.role, input.actorId, INVITATION_MS],
    );
    const inviter = (await this.nameOf(input.actorId)) ?? 'A member';
    await this.mail.request({
      kind: 'invitation',
      to: email,
      subject: input.accountId,
      params: { account_name: (await this.accountName(input.accountId)) ?? 'a Tollgate account', role: input.role, inviter },
      emailId,
      metadata: commandMetadata({ kind: 'user', userId: input.actorId }),
    });
    return ok({
      id: invitationId,
      email,
      role: input.role,
      invited_by: input.actorId,
      created_at: rows[0]!.created_at.toISOString(),
      expires_at: rows[0]!.expires_at.toISOString(),
    });
  }

  /** Withdraws a pending invitation: its link stops working. */
  async revokeInvitation(input: { accountId: string; actorRole: MemberRole; invitationId: string }): Promise<Outcome<{ revoked: true }>> {
    const found = await this.pool.query<{ role: MemberRole }>(
      'SELECT role FROM account_invitations WHERE invitation_id = $1 AND account_id = $2 AND used_at IS NULL AND revoked_at IS NULL',
      [input.invitationId, input.accountId],
    );
    const row = found.rows[0];
    if (!row) return no('invitation_not_found', 'No such pending invitation.');
    const denied = mayManage(input.actorRole, null, row.role);
    if (denied) return no('insufficient_role', denied);
    await this.pool.query('UPDATE account_invitations SET revoked_at = now() WHERE invitation_id = $1 AND used_at IS NULL', [input.invitationId]);
    return ok({ revoked: true });
  }

  /**
   * Accepts an invitation by its link's token: the invitee joins with the offered role. An address
   * without a user becomes one (name and password needed, the sign-up password rules; the address
   * counts as verified, since the link reached it). Single use even under races.
   *
   * Crash-safe by its order: the invitee's login is made whole first (a new user fully registered,
   * or an unconfirmed login taken over); only then is the invitation claimed, the claim naming the
   * user; the membership follows from the claim (completeInvitation), again after a crash by the
   * reconciler. A crash before the claim leaves the invitation unused (the link works again); after
   * it, the membership is recorded on restart. The invitation is never burnt without a member.
   */
  async acceptInvitation(input: {
    token: string;
    name?: string | undefined;
    password?: string | undefined;
  }): Promise<Outcome<{ accountId: string; userId: string; role: MemberRole; newUser: boolean }>> {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(input.token)) return no('invalid_token', INVALID_TOKEN);
    const peek = await this.pool.query<{ invitation_id: string; account_id: string; email_lookup: string; email_ciphertext: string; role: MemberRole }>(
      `SELECT invitation_id, account_id, email_lookup, email_ciphertext, role FROM account_invitations
        WHERE token_hash = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()`,
      [hashLinkToken(input.token)],
    );
    const invitation = peek.rows[0];
    if (!invitation) return no('invalid_token', INVALID_TOKEN);
    let existing = await this.userByLookup(invitation.email_lookup);
    if (existing && existing.registered_at === null && (await this.completeRegistration(existing.user_id)))
      existing = await this.userByLookup(invitation.email_lookup);
    if (existing && (existing.registered_at === null || existing.deleting_at !== null))
      return no('invalid_token', 'The login of this address is being created or deleted just now: try the link again in a few minutes.');
    const email = await this.vault.decrypt(invitation.account_id, invitation.email_ciphertext);
    if (email === null) return no('invalid_token', INVALID_TOKEN);
    // An existing login whose address was never confirmed may be someone else's squat on it: the
    // link proves the mailbox, so its holder sets the password (and the squatter's sessions end).
    const unconfirmed = existing ? (await this.credentials(existing.user_id))?.email_verified_at === null : false;
    if (unconfirmed) {
      if (input.password === undefined)
        return no('missing_required_parameter', 'This address was never confirmed: choose a password to take over its login.', { param: 'password' });
      const weak = passwordProblem(input.password, [email]);
      if (weak) return no('weak_password', weak);
    }
    let passwordHash: string | null = null;
    if (!existing) {
      if (input.name === undefined || input.name.trim() === '')
        return no('missing_required_parameter', 'Give your name to create your login.', { param: 'name' });
      if (input.password === undefined) return no('missing_required_parameter', 'Choose a password to create your login.', { param: 'password' });
      const weak = passwordProblem(input.password, [email, input.name]);
      if (weak) return no('weak_password', weak);
      passwordHash = await bcrypt.hash(input.password, this.options.bcryptCost);
    }
    let userId = existing?.user_id ?? null;
    let created = false;
    if (userId === null) {
      userId = randomId('usr');
      const emailCiphertext = await this.vault.encrypt(userId, email);
      const inserted = await this.pool.query(
        `INSERT INTO user_credentials (user_id, email_lookup, email_ciphertext, password_hash, email_verified_at, registered_at) VALUES ($1, $2, $3, $4, now(), NULL)
         ON CONFLICT (email_lookup) DO NOTHING`,
        [userId, invitation.email_lookup, emailCiphertext, passwordHash],
      );
      if (!inserted.rowCount) {
        // The address signed up meanwhile: the link is tried again as theirs.
        await this.vault.destroyKey(userId);
        return no('invalid_token', 'The login of this address is being created just now: try the link again in a few minutes.');
      }
      await this.fault('invitation:user-claimed');
      await this.store.appendToStream(
        userStreamId(userId),
        [
          {
            id: deterministicUuid(`UserRegistered|${userId}`),
            event: this.userEvent(userId, {
              type: 'UserRegistered',
              data: { userId, nameCiphertext: await this.vault.encrypt(userId, input.name!.trim()), emailCiphertext, accountId: null },
            }),
          },
        ],
        { expectedVersion: 'no_stream' },
      );
      await this.completeRegistration(userId);
      created = true;
    } else if (unconfirmed) {
      await this.setPassword(userId, input.password!, 'reset', null);
      await this.pool.query('UPDATE user_credentials SET email_verified_at = COALESCE(email_verified_at, now()) WHERE user_id = $1', [userId]);
      await this.appendToUser(userId, { type: 'UserEmailVerified', data: { userId } });
    }
    await this.fault('invitation:user-ready');
    // The claim: of two concurrent acceptances one wins; it names the user the membership is for.
    const taken = await this.pool.query(
      `UPDATE account_invitations SET used_at = now(), accepted_by = $2 WHERE invitation_id = $1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > now()`,
      [invitation.invitation_id, userId],
    );
    if (!taken.rowCount) return no('invalid_token', INVALID_TOKEN);
    await this.fault('invitation:claimed');
    await this.completeInvitation(invitation.invitation_id);
    const role = (
      await this.pool.query<{ role: MemberRole }>('SELECT role FROM memberships WHERE account_id = $1 AND user_id = $2', [invitation.account_id, userId])
    ).rows[0]!.role;
    return ok({ accountId: invitation.account_id, userId, role, newUser: created });
  }

  /**
   * Records the membership a claimed invitation grants (unless the user is a member already),
   * then marks the invitation completed. Idempotent; false when there is nothing to complete.
   */
  async completeInvitation(invitationId: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ account_id: string; accepted_by: string; role: MemberRole }>(
      'SELECT account_id, accepted_by, role FROM account_invitations WHERE invitation_id = $1 AND used_at IS NOT NULL AND completed_at IS NULL AND accepted_by IS NOT NULL',
      [invitationId],
    );
    const row = rows[0];
    if (!row) return false;
    const live = await this.pool.query('SELECT 1 FROM user_credentials WHERE user_id = $1 AND deleting_at IS NULL', [row.accepted_by]);
    if (live.rowCount) {
      await this.ensureMember(
        row.account_id,
        row.accepted_by,
        row.role,
        `invitation|${invitationId}`,
        commandMetadata({ kind: 'user', userId: row.accepted_by }),
      );
      await this.fault('invitation:member-added');
    }
    await this.pool.query('UPDATE account_invitations SET completed_at = now() WHERE invitation_id = $1 AND completed_at IS NULL', [invitationId]);
    return true;
  }

  /** A member's new role; refused for a role that may not manage members, an admin touching owners, and the last owner. */
  async changeRole(input: {
    accountId: string;
    actorId: string;
    actorRole: MemberRole;
    userId: string;
    role: MemberRole;
  }): Promise<Outcome<{ role: MemberRole }>> {
    return this.withMembersLocked(input.accountId, async (db, revision) => {
      const target = await this.memberRole(db, input.accountId, input.userId);
      if (target === null) return no('member_not_found', 'No such member in this account.');
      const denied = mayManage(input.actorRole, target, input.role);
      if (denied) return no('insufficient_role', denied);
      if (target === input.role) return ok({ role: target });
      if (target === 'owner' && (await this.ownerCount(db, input.accountId)) <= 1) {
        return no('last_owner', 'This is the last owner of the account: make another member owner first.');
      }
      await this.appendToMembers(
        db,
        input.accountId,
        revision,
        { type: 'MemberRoleChanged', data: { accountId: input.accountId, userId: input.userId, role: input.role } },
        commandMetadata({ kind: 'user', userId: input.actorId }),
      );
      return ok({ role: input.role });
    });
  }

  /**
   * Removes a member (or lets a member leave): their sessions working in this account end at
   * once; keys they created stay with the account. The last owner cannot be removed or leave.
   */
  async removeMember(input: {
    accountId: string;
    actorId: string;
    actorRole: MemberRole;
    userId: string;
  }): Promise<Outcome<{ removed: true; sessionsEnded: number }>> {
    return this.withMembersLocked(input.accountId, async (db, revision) => {
      const target = await this.memberRole(db, input.accountId, input.userId);
      if (target === null) return no('member_not_found', 'No such member in this account.');
      if (input.userId !== input.actorId) {
        const denied = mayManage(input.actorRole, target, null);
        if (denied) return no('insufficient_role', denied);
      }
      if (target === 'owner' && (await this.ownerCount(db, input.accountId)) <= 1) {
        return no('last_owner', 'This is the last owner of the account: make another member owner first (or close the account).');
      }
      await this.appendToMembers(
        db,
        input.accountId,
        revision,
        { type: 'MemberRemoved', data: { accountId: input.accountId, userId: input.userId } },
        commandMetadata({ kind: 'user', userId: input.actorId }),
      );
      const ended = await db.query(
        `UPDATE user_sessions SET ended_at = now(), ended_why = 'member_removed' WHERE user_id = $1 AND account_id = $2 AND ended_at IS NULL`,
        [input.userId, input.accountId],
      );
      return ok({ removed: true as const, sessionsEnded: ended.rowCount ?? 0 });
    });
  }

  /**
   * Runs a membership decision on current rows: the account's memberships projection is brought up
   * to its members stream and locked (src/read-models/memberships.ts) for the transaction, so two
   * changes cannot both remove the last owner. `work` gets the stream's revision to append at.
   */
  private async withMembersLocked<T>(accountId: string, work: (db: PoolClient, revision: bigint | null) => Promise<Outcome<T>>): Promise<Outcome<T>> {
    return inTransaction(this.pool, async (db) => work(db, await syncMembers(db, this.store, accountId)));
  }

  private async memberRole(db: PoolClient, accountId: string, userId: string): Promise<MemberRole | null> {
    const { rows } = await db.query<{ role: MemberRole }>('SELECT role FROM memberships WHERE account_id = $1 AND user_id = $2', [accountId, userId]);
    return rows[0]?.role ?? null;
  }

  /** Owners who stay: an owner whose self-deletion is under way counts no more. */
  private async ownerCount(db: PoolClient, accountId: string): Promise<number> {
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM memberships m WHERE m.account_id = $1 AND m.role = 'owner'
          AND NOT EXISTS (SELECT 1 FROM user_credentials c WHERE c.user_id = m.user_id AND c.deleting_at IS NOT NULL)`,
      [accountId],
    );
    return rows[0]!.n;
  }

  /**
   * Appends to the members stream at the revision the decision was made on (a version conflict
   * means someone changed it meanwhile: the command fails and changes nothing), then brings the
   * projection up to it in the caller's transaction, so the caller reads its write at once. A crash
   * in between leaves the event, which the read-models runner projects.
   */
  private async appendToMembers(
    db: PoolClient,
    accountId: string,
    revision: bigint | null,
    event: WithoutMetadata<DomainEvent>,
    metadata: CommandMetadata,
    eventId: string = randomUUID(),
  ): Promise<void> {
    const full = { ...event, metadata: eventMetadataFrom(metadata) } as DomainEvent;
    await this.store.appendToStream(membersStreamId(accountId), [{ id: eventId, event: full }], { expectedVersion: revision ?? 'no_stream' });
    await syncMembers(db, this.store, accountId);
  }

  private async accountName(accountId: string): Promise<string | null> {
    const { events } = await this.store.readStream(accountStreamId(accountId));
    const current = currentPersonalDataCiphertexts(events.map((e) => e.event));
    return current ? this.vault.decrypt(accountId, current.displayNameCiphertext).catch(() => null) : null;
  }

  // Internals ------------------------------------------------------------------------------------------

  private async sendVerification(
    userId: string,
    email: string,
    name: string,
    purpose: 'verify_email' | 'reset_password' | 'change_email',
    newEmail: string | null,
    /** a fixed id makes a repeated request one email with one link (a registration finished again) */
    fixedEmailId?: string,
  ): Promise<void> {
    const emailId = fixedEmailId ?? `em_${randomUUID().replaceAll('-', '')}`;
    // The hash is stored before the mail is requested: the link works as soon as it can arrive.
    const tokenHash = hashLinkToken(await this.mail.linkToken(emailId));
    await this.pool.query(
      `INSERT INTO identity_tokens (token_hash, purpose, user_id, new_email_lookup, new_email_ciphertext, expires_at)
       VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond') ON CONFLICT (token_hash) DO NOTHING`,
      [
        tokenHash,
        purpose,
        userId,
        newEmail === null ? null : await this.emailLookup(newEmail),
        newEmail === null ? null : await this.vault.encrypt(userId, newEmail),
        purpose === 'reset_password' ? RESET_PASSWORD_MS : VERIFY_EMAIL_MS,
      ],
    );
    await this.mail.request({
      kind: purpose === 'reset_password' ? 'password_reset' : 'email_verification',
      to: email,
      subject: userId,
      params: { name },
      emailId,
      metadata: systemMetadata('identity'),
    });
  }

  /** Marks a live token used and returns it; null when unknown, used or expired (single use even under races). */
  private async takeToken(token: string, purposes: readonly string[]) {
    if (!/^[A-Za-z0-9_-]{20,100}$/.test(token)) return null;
    const { rows } = await this.pool.query<{
      user_id: string;
      purpose: 'verify_email' | 'reset_password' | 'change_email';
      new_email_lookup: string | null;
      new_email_ciphertext: string | null;
    }>(
      `UPDATE identity_tokens SET used_at = now()
        WHERE token_hash = $1 AND purpose = ANY($2) AND used_at IS NULL AND expires_at > now()
        RETURNING user_id, purpose, new_email_lookup, new_email_ciphertext`,
      [hashLinkToken(token), purposes],
    );
    return rows[0] ?? null;
  }

  private async setPassword(userId: string, password: string, how: 'changed' | 'reset', keepSessionHash: string | null): Promise<void> {
    const hash = await bcrypt.hash(password, this.options.bcryptCost);
    await this.pool.query('UPDATE user_credentials SET password_hash = $2 WHERE user_id = $1', [userId, hash]);
    await this.pool.query(
      `UPDATE user_sessions SET ended_at = now(), ended_why = 'password_${how}' WHERE user_id = $1 AND ended_at IS NULL AND session_hash IS DISTINCT FROM $2`,
      [userId, keepSessionHash],
    );
    // Outstanding reset links die with the old password.
    await this.pool.query(`UPDATE identity_tokens SET used_at = now() WHERE user_id = $1 AND purpose = 'reset_password' AND used_at IS NULL`, [userId]);
    await this.appendToUser(userId, { type: 'UserPasswordChanged', data: { userId, how } });
  }

  private async grantSignupPromo(userId: string): Promise<void> {
    if (this.options.signupPromo <= 0n) return;
    const { rows } = await this.pool.query<{ email_lookup: string; account_id: string | null }>(
      `SELECT c.email_lookup, (SELECT account_id FROM memberships m WHERE m.user_id = c.user_id AND m.role = 'owner' ORDER BY since LIMIT 1) AS account_id
         FROM user_credentials c WHERE c.user_id = $1`,
      [userId],
    );
    const row = rows[0];
    if (!row?.account_id) return;
    // Once per verified address, whatever account it signs up again with.
    const claimed = await this.pool.query(
      'INSERT INTO signup_promo_grants (email_lookup, user_id, account_id) VALUES ($1, $2, $3) ON CONFLICT (email_lookup) DO NOTHING',
      [row.email_lookup, userId, row.account_id],
    );
    if (!claimed.rowCount) return;
    const now = new Date().toISOString();
    const granted = await this.ledger.accounts.handle(accountStreamId(row.account_id), {
      type: 'GrantPromoCredit',
      data: {
        grantId: `signup-${userId}`,
        amount: this.options.signupPromo,
        expiresAt: addMs(now, this.options.signupPromoDays * 24 * 3_600_000),
        reason: 'sign-up promo credit',
      },
      metadata: systemMetadata('sign-up'),
    });
    if (!granted.ok) this.log.warn({ userId, accountId: row.account_id, error: granted.error.error }, 'sign-up promo credit refused');
  }

  private async checkSecondFactor(userId: string, code: string): Promise<boolean> {
    const user = await this.credentials(userId);
    if (!user?.totp_enabled_at || !user.totp_secret_ciphertext) return false;
    const trimmed = code.replace(/\s+/g, '');
    if (/^\d{6}$/.test(trimmed)) {
      const secret = await this.vault.decrypt(userId, user.totp_secret_ciphertext);
      const step = secret === null ? null : validTotpStep(secret, trimmed);
      if (step === null) return false;
      // Each code once: a step at or before the last one used is refused (replay of an observed code).
      const { rowCount } = await this.pool.query(
        'UPDATE user_credentials SET totp_last_step = $2 WHERE user_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)',
        [userId, step],
      );
      return rowCount === 1;
    }
    const { rowCount } = await this.pool.query('UPDATE user_recovery_codes SET used_at = now() WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL', [
      userId,
      sha256(normaliseCode(trimmed)),
    ]);
    if (rowCount !== 1) return false;
    await this.appendToUser(userId, { type: 'UserTwoFactorChanged', data: { userId, change: 'recovery_code_used' } });
    return true;
  }

  private async openSession(userId: string, stage: 'two_factor' | 'signed_in', userAgent: string | null): Promise<string> {
    const sessionId = `tgs_${randomBytes(32).toString('base64url')}`;
    const account = await this.pool.query<{ account_id: string }>('SELECT account_id FROM memberships WHERE user_id = $1 ORDER BY since, account_id LIMIT 1', [
      userId,
    ]);
    const maxMs = stage === 'two_factor' ? TWO_FACTOR_STAGE_MS : this.options.sessionMaxMs;
    await this.pool.query(
      `INSERT INTO user_sessions (session_hash, public_id, user_id, account_id, stage, user_agent, idle_expires_at, absolute_expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, now() + $7 * interval '1 millisecond', now() + $8 * interval '1 millisecond')`,
      [
        sha256(sessionId),
        randomId('ses', 8),
        userId,
        account.rows[0]?.account_id ?? null,
        stage,
        userAgent?.slice(0, 300) ?? null,
        Math.min(this.options.sessionIdleMs, maxMs),
        maxMs,
      ],
    );
    return sessionId;
  }

  private async sessionRow(sessionId: string) {
    if (!/^tgs_[A-Za-z0-9_-]{43}$/.test(sessionId)) return null;
    const { rows } = await this.pool.query<{ user_id: string; stage: string; user_agent: string | null }>(
      `SELECT user_id, stage, user_agent FROM user_sessions WHERE session_hash = $1 AND ended_at IS NULL AND idle_expires_at > now() AND absolute_expires_at > now()`,
      [sha256(sessionId)],
    );
    return rows[0] ?? null;
  }

  private async endSessionByHash(hash: string, why: string): Promise<void> {
    await this.pool.query('UPDATE user_sessions SET ended_at = now(), ended_why = $2 WHERE session_hash = $1 AND ended_at IS NULL', [hash, why]);
  }

  /** Seconds until every subject is under its limit again; 0 when none is over. */
  private async blockedFor(subjects: readonly string[]): Promise<number> {
    const { rows } = await this.pool.query<{ subject: string; failures: number; oldest: Date }>(
      `SELECT subject, count(*)::int AS failures, min(at) AS oldest FROM sign_in_failures
        WHERE subject = ANY($1) AND at > now() - $2 * interval '1 millisecond' GROUP BY subject`,
      [subjects, this.options.failureWindowMs],
    );
    let wait = 0;
    for (const row of rows) {
      const limit = row.subject.startsWith('addr:') ? this.options.failuresPerAddress : this.options.failuresPerEmail;
      if (row.failures >= limit) wait = Math.max(wait, Math.ceil(this.options.failureWindowMs / 1_000));
    }
    return wait;
  }

  private async credentials(userId: string) {
    const { rows } = await this.pool.query<{
      user_id: string;
      email_ciphertext: string;
      password_hash: string;
      email_verified_at: Date | null;
      totp_secret_ciphertext: string | null;
      totp_enabled_at: Date | null;
    }>('SELECT user_id, email_ciphertext, password_hash, email_verified_at, totp_secret_ciphertext, totp_enabled_at FROM user_credentials WHERE user_id = $1', [
      userId,
    ]);
    return rows[0] ?? null;
  }

  /** The credentials row holding the address, whatever its state (it may be unfinished or being deleted). */
  private async userByLookup(lookup: string) {
    const { rows } = await this.pool.query<{
      user_id: string;
      password_hash: string;
      totp_enabled_at: Date | null;
      registered_at: Date | null;
      deleting_at: Date | null;
    }>('SELECT user_id, password_hash, totp_enabled_at, registered_at, deleting_at FROM user_credentials WHERE email_lookup = $1', [lookup]);
    return rows[0] ?? null;
  }

  /** A user who may sign in or reset a password: registration finished, no deletion under way. */
  private async liveUserByLookup(lookup: string) {
    const user = await this.userByLookup(lookup);
    return user && user.registered_at !== null && user.deleting_at === null ? user : null;
  }

  /** The user's current name, from their stream (the latest correction wins). */
  async nameOf(userId: string): Promise<string | null> {
    const { events } = await this.store.readStream(userStreamId(userId));
    let ciphertext: string | null = null;
    for (const { event } of events) {
      if (event.type === 'UserRegistered') ciphertext = event.data.nameCiphertext;
      if (event.type === 'UserProfileCorrected' && event.data.nameCiphertext) ciphertext = event.data.nameCiphertext;
    }
    return ciphertext === null ? null : this.vault.decrypt(userId, ciphertext);
  }

  private userEvent(userId: string, event: WithoutMetadata<DomainEvent>): DomainEvent {
    return { ...event, metadata: eventMetadataFrom(commandMetadata({ kind: 'user', userId })) } as DomainEvent;
  }

  /**
   * Appends at the stream's head. With `eventId` (deterministic, for a step a reconciler may run
   * again) an event already in the stream under that id is not appended twice.
   */
  private async appendToUser(userId: string, event: WithoutMetadata<DomainEvent>, eventId?: string): Promise<void> {
    const full = this.userEvent(userId, event);
    for (let attempt = 0; ; attempt++) {
      const head = await this.store.readStream(userStreamId(userId), eventId === undefined ? { maxCount: 0 } : {});
      if (eventId !== undefined && head.events.some((e) => e.id === eventId)) return;
      try {
        await this.store.appendToStream(userStreamId(userId), [{ id: eventId ?? randomUUID(), event: full }], {
          expectedVersion: head.revision ?? 'no_stream',
        });
        return;
      } catch (error) {
        if (attempt >= 5 || (error as Error).name !== 'VersionConflictError') throw error;
      }
    }
  }

  /** HMAC of a normalised email under the identity secret: finds a user without keeping the address in clear. */
  async emailLookup(email: string): Promise<string> {
    return this.keyed(`email|${normaliseEmail(email)}`);
  }

  private async keyed(text: string): Promise<string> {
    return createHmac('sha256', await this.identitySecret())
      .update(text)
      .digest('hex');
  }

  private identitySecret(): Promise<Buffer> {
    this.secret ??= (async () => {
      const subject = 'system-identity';
      await this.pool.query('INSERT INTO identity_secret (id, secret_ciphertext) VALUES (1, $1) ON CONFLICT (id) DO NOTHING', [
        await this.vault.encrypt(subject, randomBytes(32).toString('base64url')),
      ]);
      const { rows } = await this.pool.query<{ secret_ciphertext: string }>('SELECT secret_ciphertext FROM identity_secret WHERE id = 1');
      const plain = await this.vault.decrypt(subject, rows[0]!.secret_ciphertext);
      if (plain === null) throw new Error('the identity secret is unreadable (its vault key was destroyed)');
      return Buffer.from(plain, 'base64url');
    })().catch((error) => {
      this.secret = undefined;
      throw error;
    });
    return this.secret;
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= bcrypt.hash(randomBytes(16).toString('hex'), this.options.bcryptCost);
    return this.dummyHash;
  }
}

type WithoutMetadata<E> = E extends unknown ? Omit<E, 'metadata'> : never;

function totpOf(secret: string, label: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: 'Tollgate', label, algorithm: 'SHA1', digits: 6, period: 30, secret: OTPAuth.Secret.fromBase32(secret) });
}

/** The 30-second step a code belongs to (one step of clock drift either way), or null. */
function validTotpStep(secret: string, code: string): number | null {
  if (!/^\d{6}$/.test(code)) return null;
  const totp = totpOf(secret, 'x');
  const delta = totp.validate({ token: code, window: 1 });
  if (delta === null) return null;
  return Math.floor(Date.now() / 1_000 / 30) + delta;
}

/** xxxxx-xxxxx from an alphabet without look-alikes: 50 bits. */
function recoveryCode(): string {
  const alphabet = 'abcdefghjkmnpqrstuvwxyz23456789';
  const chars = Array.from({ length: 10 }, () => alphabet[randomInt(alphabet.length)]);
  return `${chars.slice(0, 5).join('')}-${chars.slice(5).join('')}`;
}

function normaliseCode(code: string): string {
  return code
    .trim()
    .toLowerCase()
    .replace(/[^a-z0-9]/g, '');
}
