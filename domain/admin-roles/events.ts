import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema } from '../events/schema';

/**
 * Operators as people: which users hold an operator role (operator, finance, compliance) and so
 * reach the part of the /admin routes that role allows. Every grant, change and revocation is an
 * event in one stream, `admin-roles`, so the rule "there is always an operator left" is decided
 * against the whole set at one expected version, and the `admin_roles` table is a projection of
 * it (rebuildable from the log). The actor in the metadata is the person (or the bootstrap key,
 * or the CLI's named admin) who made the change.
 */
export const ADMIN_ROLES_STREAM_ID = 'admin-roles';

export const adminRoleSchema = z.enum(['operator', 'finance', 'compliance']);
export type AdminRole = z.output<typeof adminRoleSchema>;
export const ADMIN_ROLES: readonly AdminRole[] = adminRoleSchema.options;

/**
 * A user was given an operator role. `emailCiphertext` is set when the grant created the user
 * (`tollgate admins add` for a new address: there is no UserRegistered), encrypted under the
 * user's own personal-data key as UserRegistered's is; null for an existing user.
 */
export const AdminRoleGranted = defineEvent(
  'AdminRoleGranted',
  z.object({ userId: idSchema, role: adminRoleSchema, emailCiphertext: z.string().min(1).nullable() }),
);
export const AdminRoleChanged = defineEvent('AdminRoleChanged', z.object({ userId: idSchema, role: adminRoleSchema, previousRole: adminRoleSchema }));
/** The user is no admin any more (they stay a user; their sessions were ended). */
export const AdminRoleRevoked = defineEvent('AdminRoleRevoked', z.object({ userId: idSchema, previousRole: adminRoleSchema }));

/**
 * A finance report was run over HTTP by an admin (GET /admin/finance/journal or /verification):
 * reads of money, recorded so the audit log shows who looked at the books and when. In a plain
 * record stream per actor, `finance-reports-<actor id>` (nothing is decided on it).
 */
export const FinanceReportRun = defineEvent(
  'FinanceReportRun',
  z.object({
    report: z.enum(['journal', 'verification']),
    from: z.string().nullable(),
    to: z.string().nullable(),
    /** the verification's verdict; null for the journal */
    ok: z.boolean().nullable(),
  }),
);

export function financeReportsStreamId(actorId: string): string {
  return `finance-reports-${actorId}`;
}

export const adminRoleEventDefinitions = [AdminRoleGranted, AdminRoleChanged, AdminRoleRevoked, FinanceReportRun] as const;
export type AdminRoleEvent = EventOf<(typeof adminRoleEventDefinitions)[number]>;
