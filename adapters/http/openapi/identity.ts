import { z } from 'zod';
import type { ZodOpenApiOperationObject, ZodOpenApiPathsObject, ZodOpenApiResponseObject } from 'zod-openapi';
import {
  acceptInvitationBody,
  codeBody,
  deleteMeBody,
  inviteBody,
  memberRoleBody,
  disableTwoFactorBody,
  emailBody,
  passwordBody,
  profileBody,
  resetBody,
  signInBody,
  signUpBody,
  switchBody,
  tokenBody,
} from '../dashboard/identity-routes';
import { errorSchema } from './responses';

/**
 * The people side of the dashboard's JSON API (adapters/http/dashboard/identity-routes.ts):
 * sign-up, verification, sign-in with two-factor, password reset, profile, sessions. Every call
 * must carry `X-Tollgate-Dashboard: 1` (403 `dashboard_header_required` otherwise); signed-in
 * calls use the session cookie (`dashboardSession`) and answer 401 `not_signed_in` without one.
 */

const TAG = 'Users and sessions';

const err = (description: string): ZodOpenApiResponseObject => ({ description, content: { 'application/json': { schema: errorSchema } } });
const json = <T extends z.ZodType>(description: string, schema: T): ZodOpenApiResponseObject => ({ description, content: { 'application/json': { schema } } });
const body = (schema: z.ZodType) => ({ required: true, content: { 'application/json': { schema } } });

const common = {
  '403': err('Without the header `X-Tollgate-Dashboard: 1` (`dashboard_header_required`).'),
  '500': err('An unexpected error; the detail is logged under the request id, never sent.'),
  '503': err('The database cannot be reached (`service_unavailable`).'),
};
const badInput = err(
  'Malformed input, named by `param`: `invalid_email`, `weak_password` (under 12 characters or too common), `invalid_value`, `missing_required_parameter`.',
);
const signedInOnly = {
  '401': err('No live signed-in session (`not_signed_in`): never signed in, signed out, revoked, expired, or a password changed elsewhere.'),
};

const memberRole = z.enum(['owner', 'admin', 'developer', 'billing', 'viewer']);

const sessionSchema = z
  .object({
    object: z.literal('dashboard.session'),
    signed_in: z.boolean(),
    kind: z.literal('user'),
    role: z.literal('customer'),
    user_id: z.string(),
    account_id: z.string().nullable(),
    member_role: memberRole.nullable(),
    email_verified: z.boolean(),
    permissions: z.array(z.enum(['keys', 'billing', 'members', 'close'])),
    admin_role: z.enum(['operator', 'finance', 'compliance']).nullable().meta({
      description: "the person's operator role (an admin user), whose /admin routes the session reaches; null for a customer or before the second factor",
    }),
    two_factor_required: z.literal(true).optional().meta({ description: 'password accepted; POST /dashboard/api/sign-in/two-factor completes the sign-in' }),
  })
  .meta({ id: 'UserSession' });

const profileSchema = z
  .object({
    object: z.literal('user'),
    user_id: z.string(),
    name: z.string(),
    email: z.string(),
    email_verified: z.boolean(),
    pending_email: z.string().nullable().meta({ description: 'a new address waiting for its confirmation link' }),
    two_factor_enabled: z.boolean(),
    memberships: z.array(z.object({ account_id: z.string(), role: memberRole })),
    current_account_id: z.string().nullable(),
    email_change_pending: z.boolean().optional(),
  })
  .meta({ id: 'UserProfile' });

const MEMBERS_TAG = 'Members';

const memberSchema = z
  .object({ user_id: z.string(), name: z.string(), email: z.string(), role: memberRole, since: z.string(), you: z.boolean() })
  .meta({ id: 'AccountMember' });

const invitationSchema = z
  .object({ id: z.string(), email: z.string(), role: memberRole, invited_by: z.string(), created_at: z.string(), expires_at: z.string() })
  .meta({ id: 'AccountInvitation' });

const checkEmail = z.object({ object: z.string(), status: z.literal('check_your_email'), message: z.string().optional() });

const op = (o: ZodOpenApiOperationObject, signed = false): ZodOpenApiOperationObject => ({
  tags: [TAG],
  ...(signed && { security: [{ dashboardSession: [] }] }),
  ...o,
  responses: { ...o.responses, ...common, ...(signed ? signedInOnly : {}) },
});

const signedOut = z.object({ object: z.literal('dashboard.session'), signed_in: z.literal(false) });
const keySession = z.object({
  object: z.literal('dashboard.session'),
  signed_in: z.literal(true),
  role: z.enum(['admin', 'customer']),
  account_id: z.string(),
  key_id: z.string(),
  prefix: z.string(),
  scopes: z.array(z.string()),
});

export const identityPaths: ZodOpenApiPathsObject = {
  '/dashboard/api/session': {
    get: op({
      summary: "This browser's dashboard session",
      description: 'A person signed in with a password (`kind: user`), an API key exchanged for a session, or `signed_in: false`.',
      responses: { '200': json('The session.', z.union([sessionSchema, keySession, signedOut])) },
    }),
    post: op({
      summary: 'Sign in to the dashboard with an API key (operators, scripts)',
      description:
        "The key comes as the Bearer token; it is kept in the gateway process's memory (a restart signs such a session out). People sign in with a password (POST /dashboard/api/sign-in).",
      security: [{ customerKey: [] }, { adminKey: [] }],
      responses: {
        '201': json('Signed in.', keySession),
        '401': err('No key, or a key that does not verify (`invalid_api_key`).'),
        '429': err('Too many failed authentications from this client address.'),
      },
    }),
    delete: op({ summary: 'Sign out (ends the session on the server too)', responses: { '200': json('Signed out.', signedOut) } }),
  },
  '/dashboard/api/sign-up': {
    post: op({
      summary: 'Sign up: a user and an account (organisation) they own',
      description:
        'Sends a confirmation link (valid 24 h, single use). The answer is the same whether or not the address is registered already (its owner is told by email instead); nothing says which.',
      requestBody: body(signUpBody),
      responses: { '202': json('Accepted; check the mailbox.', checkEmail), '400': badInput },
    }),
  },
  '/dashboard/api/verify-email': {
    post: op({
      summary: "Confirm an email address with its link's token",
      requestBody: body(tokenBody),
      responses: {
        '200': json('Confirmed.', z.object({ object: z.literal('email_verification'), verified: z.literal(true) })),
        '400': err('Malformed, or `invalid_token`: unknown, expired or already used.'),
      },
    }),
  },
  '/dashboard/api/sign-in': {
    post: op({
      summary: 'Sign in with email and password',
      description:
        'Sets the session cookie (HttpOnly, SameSite=Strict, Secure over TLS). With two-factor on, the session waits for the code (`two_factor_required`). Unknown email and wrong password answer the same.',
      requestBody: body(signInBody),
      responses: {
        '200': json('Signed in (or waiting for the second factor).', sessionSchema),
        '400': badInput,
        '401': err('`invalid_credentials`: the email or password is wrong (which one is not said).'),
        '429': err('`too_many_attempts` for this email or client address; Retry-After says how long.'),
      },
    }),
  },
  '/dashboard/api/sign-in/two-factor': {
    post: op({
      summary: 'Complete a sign-in with a TOTP code or a recovery code',
      requestBody: body(codeBody),
      responses: {
        '200': json('Signed in; a new session id replaces the half-signed-in one.', sessionSchema),
        '400': err('`invalid_code` (wrong, already used) or malformed.'),
        '409': err('`two_factor_not_pending`: sign in with the password first.'),
        '429': err('`too_many_attempts`.'),
      },
    }),
  },
  '/dashboard/api/forgot-password': {
    post: op({
      summary: 'Ask for a password-reset link',
      description: 'A registered address gets a link valid 1 h, single use. The answer is the same for any address.',
      requestBody: body(emailBody),
      responses: { '202': json('Accepted; check the mailbox.', checkEmail), '400': badInput },
    }),
  },
  '/dashboard/api/reset-password': {
    post: op({
      summary: "Choose a new password with a reset link's token",
      description: "Ends every session of the user; the link's token works once.",
      requestBody: body(resetBody),
      responses: {
        '200': json('Reset.', z.object({ object: z.literal('password_reset'), reset: z.literal(true) })),
        '400': err('`invalid_token` (unknown, expired, used), `weak_password`, or malformed.'),
      },
    }),
  },
  '/dashboard/api/me': {
    get: op({ summary: 'Your profile', responses: { '200': json('The profile.', profileSchema) } }, true),
    patch: op(
      {
        summary: 'Correct your name or email',
        description: 'A new email is sent a confirmation link and replaces the current one only when the link is followed.',
        requestBody: body(profileBody),
        responses: { '200': json('The profile.', profileSchema), '400': badInput },
      },
      true,
    ),
    delete: op(
      {
        summary: 'Delete yourself',
        description:
          'Confirmed with your password. Refused (409 `last_owner`) while you are the only owner of an account that is not closed: make another member an owner or close the account first. Otherwise your memberships are removed, your personal data is erased at once by crypto-shredding (your name and email become unreadable, your password, two-factor secret and sessions are deleted) and the audit log records `user.deleted` with you as the actor.',
        requestBody: body(deleteMeBody),
        responses: {
          '200': json('Deleted; the session cookie is cleared.', z.object({ object: z.literal('user'), id: z.string(), deleted: z.literal(true) })),
          '400': badInput,
          '401': err('`invalid_credentials` (the password is wrong) or `not_signed_in`.'),
          '409': err('`last_owner`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/password': {
    post: op(
      {
        summary: 'Change your password',
        description: 'Needs the current password; ends your other sessions.',
        requestBody: body(passwordBody),
        responses: {
          '200': json('Changed.', z.object({ object: z.literal('password_change'), changed: z.literal(true) })),
          '400': badInput,
          '401': err('`invalid_credentials` (the current password is wrong) or `not_signed_in`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/resend-verification': {
    post: op({ summary: 'Send the email confirmation link again', responses: { '202': json('Sent if the address is not confirmed yet.', checkEmail) } }, true),
  },
  '/dashboard/api/me/sessions': {
    get: op(
      {
        summary: 'Your live sessions',
        responses: {
          '200': json(
            'Newest use first; `current` marks this one.',
            z.object({
              object: z.literal('list'),
              data: z.array(
                z.object({
                  id: z.string(),
                  created_at: z.string(),
                  last_seen_at: z.string(),
                  idle_expires_at: z.string(),
                  absolute_expires_at: z.string(),
                  user_agent: z.string().nullable(),
                  current: z.boolean(),
                }),
              ),
            }),
          ),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/sessions/{id}': {
    delete: op(
      {
        summary: 'End one of your sessions',
        requestParams: { path: z.object({ id: z.string() }) },
        responses: {
          '200': json('Ended.', z.object({ object: z.literal('session'), id: z.string(), revoked: z.literal(true) })),
          '404': err('`session_not_found`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/export': {
    get: op(
      {
        summary: 'Download everything held about you (and, for an owner, about the account)',
        description:
          "A JSON attachment: your profile, the events of your record (ciphertexts left out), memberships and sessions; for the current account's owner also what `tollgate export` gives the operator (personal data, keys, ledger events, usage, audit entries, retention). The account part is audited as PersonalDataViewed with you as the actor. Credentials are never exported.",
        responses: {
          '200': json(
            'The export.',
            z.object({
              object: z.literal('data_export'),
              exported_at: z.string(),
              user: z.object({
                profile: z.object({ user_id: z.string() }).loose(),
                events: z.array(z.object({}).loose()),
                sessions: z.array(z.object({}).loose()),
              }),
              account: z.object({ account_id: z.string() }).loose().nullable(),
            }),
          ),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/account': {
    post: op(
      {
        summary: 'Work in another of your accounts',
        requestBody: body(switchBody),
        responses: { '200': json('The session, now in that account.', sessionSchema), '400': badInput, '403': err('`not_a_member`, or no dashboard header.') },
      },
      true,
    ),
  },
  '/dashboard/api/me/two-factor': {
    post: op(
      {
        summary: 'Start two-factor enrolment',
        description: 'A new TOTP secret (RFC 6238, SHA-1, 6 digits, 30 s) and its otpauth:// URI, in force once confirmed with a code.',
        responses: {
          '200': json('The secret, shown this once.', z.object({ object: z.literal('two_factor_enrolment'), secret: z.string(), otpauth_uri: z.string() })),
          '409': err('`two_factor_already_enabled`.'),
        },
      },
      true,
    ),
    delete: op(
      {
        summary: 'Turn two-factor off',
        requestBody: body(disableTwoFactorBody),
        responses: {
          '200': json('Off.', z.object({ object: z.literal('two_factor'), enabled: z.literal(false) })),
          '400': err('`invalid_code` or malformed.'),
          '401': err('`invalid_credentials` (password) or `not_signed_in`.'),
          '409': err('`two_factor_not_enabled`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/me/two-factor/confirm': {
    post: op(
      {
        summary: 'Confirm two-factor enrolment with a first code',
        requestBody: body(codeBody),
        responses: {
          '200': json(
            'On; ten single-use recovery codes, shown this once (only their hashes are kept).',
            z.object({ object: z.literal('two_factor'), enabled: z.literal(true), recovery_codes: z.array(z.string()).length(10) }),
          ),
          '400': err('`invalid_code` or malformed.'),
          '409': err('`two_factor_not_pending` (start first) or `two_factor_already_enabled`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/members': {
    get: op(
      {
        tags: [MEMBERS_TAG],
        summary: "The session account's members and pending invitations",
        description: 'Any member may read. Names and emails are decrypted for the answer; an erased person shows empty strings.',
        responses: {
          '200': json(
            'The members, oldest first.',
            z.object({ object: z.literal('list'), account_id: z.string(), data: z.array(memberSchema), invitations: z.array(invitationSchema) }),
          ),
        },
      },
      true,
    ),
  },
  '/dashboard/api/members/invitations': {
    post: op(
      {
        tags: [MEMBERS_TAG],
        summary: 'Invite an address to the account with a role',
        description:
          "Owners and admins only; an admin cannot invite an owner. The invitee receives a single-use link valid for 7 days (only its token's hash is kept), through the mail outbox.",
        requestBody: body(inviteBody),
        responses: {
          '201': json('Invited; the email is on its way.', invitationSchema.extend({ object: z.literal('invitation') })),
          '400': badInput,
          '403': err('`insufficient_role` (not an owner or admin, or an admin inviting an owner), `not_a_member`, or no dashboard header.'),
          '409': err('`already_a_member`: the address belongs to a member already.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/members/invitations/{id}': {
    delete: op(
      {
        tags: [MEMBERS_TAG],
        summary: 'Withdraw a pending invitation (its link stops working)',
        requestParams: { path: z.object({ id: z.string() }) },
        responses: {
          '200': json('Withdrawn.', z.object({ object: z.literal('invitation'), id: z.string(), revoked: z.literal(true) })),
          '403': err('`insufficient_role`, `not_a_member`, or no dashboard header.'),
          '404': err('`invitation_not_found`: unknown, used, or withdrawn already.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/members/{id}': {
    patch: op(
      {
        tags: [MEMBERS_TAG],
        summary: "Change a member's role",
        description: 'Owners and admins only; an admin cannot make, demote or remove an owner. The last owner cannot be demoted.',
        requestParams: { path: z.object({ id: z.string().meta({ description: "the member's user id" }) }) },
        requestBody: body(memberRoleBody),
        responses: {
          '200': json('The new role.', z.object({ object: z.literal('member'), user_id: z.string(), role: memberRole })),
          '400': badInput,
          '403': err('`insufficient_role`, `not_a_member`, or no dashboard header.'),
          '404': err('`member_not_found`.'),
          '409': err('`last_owner`: make another member owner first.'),
        },
      },
      true,
    ),
    delete: op(
      {
        tags: [MEMBERS_TAG],
        summary: 'Remove a member, or leave (your own id)',
        description:
          "Owners and admins remove others (an admin never an owner); any member may leave. The removed member's sessions in this account end at once; keys they created stay with the account. The last owner cannot be removed or leave.",
        requestParams: { path: z.object({ id: z.string() }) },
        responses: {
          '200': json(
            'Removed.',
            z.object({ object: z.literal('member'), user_id: z.string(), removed: z.literal(true), sessions_ended: z.number().int().nonnegative() }),
          ),
          '403': err('`insufficient_role`, `not_a_member`, or no dashboard header.'),
          '404': err('`member_not_found`.'),
          '409': err('`last_owner`.'),
        },
      },
      true,
    ),
  },
  '/dashboard/api/invitations/accept': {
    post: op({
      tags: [MEMBERS_TAG],
      summary: "Accept an invitation with its emailed link's token",
      description:
        'Joins the account with the offered role. An address without a Tollgate login gets one: `name` and `password` are then required (the sign-up password rules) and the address counts as verified. The link works once; sign in afterwards.',
      requestBody: body(acceptInvitationBody),
      responses: {
        '200': json(
          'Joined.',
          z.object({ object: z.literal('invitation_acceptance'), account_id: z.string(), user_id: z.string(), role: memberRole, new_user: z.boolean() }),
        ),
        '400': err(
          '`invalid_token` (unknown, expired, withdrawn or used), `weak_password`, `missing_required_parameter` (`name` or `password` for a new login), or malformed.',
        ),
      },
    }),
  },
};
