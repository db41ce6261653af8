import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema } from '../events/schema';
import { adminRoleSchema } from '../admin-roles/events';

/**
 * People who sign in (users), apart from accounts (the billing entity, an organisation). A user's
 * stream is `user-<userId>`; its personal fields (name, email) are encrypted under the user's own
 * personal-data key (vault subject = the user id), so erasing the user shreds them. Credentials
 * (the password hash, session ids, TOTP secrets, recovery codes, link-token hashes) never enter
 * an event: they live in PostgreSQL tables (src/identity/), hashed or encrypted. These events
 * record only that a credential changed.
 */
export const UserRegistered = defineEvent(
  'UserRegistered',
  z.object({
    userId: idSchema,
    nameCiphertext: z.string().min(1),
    emailCiphertext: z.string().min(1),
    /** the account the user opened at sign-up (they own it); null for a user who joined by accepting an invitation */
    accountId: idSchema.nullable(),
    /**
     * What opening that account needs, encrypted under the account's own key (so erasing the
     * account shreds it): the organisation's name and the address. With it the event is the whole
     * sign-up: the account's opening, the owner's membership and the verification email follow
     * from it, again and idempotently after a crash (src/identity/identity.ts). Absent on events
     * recorded before it existed (their sign-ups completed in the same request) and on invitees.
     */
    account: z.object({ displayNameCiphertext: z.string().min(1), emailCiphertext: z.string().min(1) }).optional(),
  }),
);

/**
 * A sign-up or invitation acceptance that claimed an address but died before UserRegistered: the
 * reconciler records this as the stream's first event, so a late UserRegistered (expected
 * 'no_stream') can no longer land, and then frees the address. Nothing personal in it.
 */
export const UserRegistrationAbandoned = defineEvent('UserRegistrationAbandoned', z.object({ userId: idSchema }));

export const UserEmailVerified = defineEvent('UserEmailVerified', z.object({ userId: idSchema }));

/** Name or email corrected by the user; a new email is in force only once verified (UserEmailVerified follows). */
export const UserProfileCorrected = defineEvent(
  'UserProfileCorrected',
  z.object({
    userId: idSchema,
    nameCiphertext: z.string().min(1).nullable(),
    emailCiphertext: z.string().min(1).nullable(),
  }),
);

export const UserPasswordChanged = defineEvent(
  'UserPasswordChanged',
  z.object({
    userId: idSchema,
    /** changed: by the signed-in user (knowing the old one); reset: through an emailed link */
    how: z.enum(['changed', 'reset']),
  }),
);

export const UserTwoFactorChanged = defineEvent(
  'UserTwoFactorChanged',
  z.object({
    userId: idSchema,
    change: z.enum(['enabled', 'disabled', 'recovery_code_used', 'recovery_codes_renewed']),
  }),
);

/**
 * The user deleted themselves: their memberships were removed (MemberRemoved in each account's
 * members stream), their credentials deleted and their personal-data key destroyed, so the name
 * and email in this stream are unreadable from now on.
 */
export const UserDeleted = defineEvent('UserDeleted', z.object({ userId: idSchema }));

/**
 * Superseded, no longer written: the first cut of operators as people recorded a grant here, in
 * the user's stream, and wrote the admin_roles table directly. Grants are now AdminRoleGranted in
 * the `admin-roles` stream (domain/admin-roles), whose projection is the table; this type stays
 * so that stored events still parse (and are audited), but it gives no role.
 */
export const AdminUserAdded = defineEvent(
  'AdminUserAdded',
  z.object({ userId: idSchema, role: adminRoleSchema, emailCiphertext: z.string().min(1).nullable() }),
);

/** A membership: the user's role in an account. In the account's members stream `account-members-<accountId>`. */
export const memberRoleSchema = z.enum(['owner', 'admin', 'developer', 'billing', 'viewer']);
export type MemberRole = z.output<typeof memberRoleSchema>;

export const MemberAdded = defineEvent('MemberAdded', z.object({ accountId: idSchema, userId: idSchema, role: memberRoleSchema }));
export const MemberRoleChanged = defineEvent('MemberRoleChanged', z.object({ accountId: idSchema, userId: idSchema, role: memberRoleSchema }));
export const MemberRemoved = defineEvent('MemberRemoved', z.object({ accountId: idSchema, userId: idSchema }));

export const userEventDefinitions = [
  UserRegistered,
  UserRegistrationAbandoned,
  UserEmailVerified,
  UserProfileCorrected,
  UserPasswordChanged,
  UserTwoFactorChanged,
  UserDeleted,
  AdminUserAdded,
  MemberAdded,
  MemberRoleChanged,
  MemberRemoved,
] as const;

export type UserEvent = EventOf<(typeof userEventDefinitions)[number]>;

export function userStreamId(userId: string): string {
  return `user-${userId}`;
}

export function membersStreamId(accountId: string): string {
  return `account-members-${accountId}`;
}

/** What each role may do, beyond reading (every member reads). */
export type Permission = 'keys' | 'billing' | 'members' | 'close';

const PERMISSIONS: Record<MemberRole, readonly Permission[]> = {
  owner: ['keys', 'billing', 'members', 'close'],
  admin: ['keys', 'members'],
  developer: ['keys'],
  billing: ['billing'],
  viewer: [],
};

export function roleAllows(role: MemberRole, permission: Permission): boolean {
  return PERMISSIONS[role].includes(permission);
}

export function permissionsOf(role: MemberRole): readonly Permission[] {
  return PERMISSIONS[role];
}
