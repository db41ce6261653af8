import { z } from 'zod';
import type { ZodOpenApiOperationObject, ZodOpenApiPathsObject, ZodOpenApiResponseObject } from 'zod-openapi';
import { addAdminUserSchema, changeAdminRoleSchema, exportQuerySchema, journalQuerySchema, verificationQuerySchema } from '../routes/admin-users';
import { errorSchema, usdSchema } from './responses';

/**
 * The admin-user routes and the finance and compliance reads of adapters/http/routes/admin-users.ts.
 * document.ts adds to every /admin operation the security schemes and the 403 (`insufficient_role`).
 */

const err = (description: string): ZodOpenApiResponseObject => ({ description, content: { 'application/json': { schema: errorSchema } } });
const json = <T extends z.ZodType>(description: string, schema: T): ZodOpenApiResponseObject => ({ description, content: { 'application/json': { schema } } });
const body = (schema: z.ZodType) => ({ required: true, content: { 'application/json': { schema } } });

const common = {
  '400': err('Malformed body or parameter (`param` names it); a weak password (`weak_password`); nothing changed.'),
  '401': err('No key or session, or one that does not verify (`invalid_api_key`).'),
  '429': err('Too many failed authentications from this client address (`rate_limit_exceeded`).'),
  '500': err('An unexpected error; the detail is logged under the request id, never sent.'),
  '503': err('The database cannot be reached (`service_unavailable`).'),
};

const adminRole = z.enum(['operator', 'finance', 'compliance']).meta({ id: 'AdminRole', description: 'operator, finance or compliance' });
const adminUser = z
  .object({
    object: z.literal('admin_user'),
    user_id: z.string(),
    email: z.string().nullable().meta({ description: "null once the user's personal data is erased" }),
    role: adminRole,
    granted_at: z.string().meta({ description: 'when the user got their present role' }),
    two_factor_enabled: z.boolean(),
  })
  .meta({ id: 'AdminUser' });
const userIdParam = z.object({ userId: z.string().meta({ description: 'the admin user id, usr_…' }) });

const op = (o: ZodOpenApiOperationObject): ZodOpenApiOperationObject => ({ tags: ['Admin'], ...o });

export const adminUserPaths: ZodOpenApiPathsObject = {
  '/admin/admin-users': {
    get: op({
      summary: 'List admin users',
      description: 'Every user holding an operator role (`tollgate admins list`). Operator role (or the admin key).',
      responses: { '200': json('Admin users.', z.object({ object: z.literal('list'), data: z.array(adminUser) })), ...common },
    }),
    post: op({
      summary: 'Add an admin user, or give an existing user an operator role',
      description:
        'As `tollgate admins add`. A new user needs `password` (at least 12 characters, not a common one); their email counts as verified. An existing user keeps their password; a user who already holds the role changes nothing. Recorded as AdminRoleGranted (or AdminRoleChanged) with the acting person as the actor. Changing the last operator to another role is refused (409 `last_operator`).',
      requestBody: body(addAdminUserSchema),
      responses: {
        '200': json(
          'An existing user given the role.',
          z.object({ object: z.literal('admin_user'), user_id: z.string(), role: adminRole, created: z.literal(false) }),
        ),
        '201': json('A new admin user.', z.object({ object: z.literal('admin_user'), user_id: z.string(), role: adminRole, created: z.literal(true) })),
        '409': err('The user is the last operator and the role asked is another (`last_operator`).'),
        ...common,
      },
    }),
  },
  '/admin/admin-users/{userId}': {
    patch: op({
      summary: "Change an admin user's role",
      description: 'As `tollgate admins role`. The last operator keeps the role (409 `last_operator`). Audited as admin_role.changed.',
      requestParams: { path: userIdParam },
      requestBody: body(changeAdminRoleSchema),
      responses: {
        '200': json('Changed.', z.object({ object: z.literal('admin_user'), user_id: z.string(), role: adminRole })),
        '404': err('No admin user with this id (`admin_not_found`).'),
        '409': err('The last operator cannot be given another role (`last_operator`).'),
        ...common,
      },
    }),
    delete: op({
      summary: 'Remove an admin user',
      description:
        "As `tollgate admins remove`: takes the user's operator role away and ends their sessions; they stay a user. The last operator cannot be removed, not even by themselves (409 `last_operator`). Audited as admin_role.revoked.",
      requestParams: { path: userIdParam },
      responses: {
        '200': json('Removed.', z.object({ object: z.literal('admin_user'), user_id: z.string(), removed: z.literal(true) })),
        '404': err('No admin user with this id (`admin_not_found`).'),
        '409': err('The last operator cannot be removed (`last_operator`).'),
        ...common,
      },
    }),
  },
  '/admin/finance/journal': {
    get: op({
      summary: 'The double-entry journal',
      description:
        'As `tollgate journal`: the journal postings in [from, to), in log order; CSV with `Accept: text/csv`, else JSON. Recorded as FinanceReportRun (audit `finance.report_run`) with the caller as actor. Finance or operator role (or the admin key).',
      requestParams: { query: journalQuerySchema },
      responses: {
        '200': {
          description: 'The postings.',
          content: {
            'application/json': {
              schema: z.object({
                object: z.literal('list'),
                data: z.array(
                  z.object({
                    log_tx: z.string(),
                    log_seq: z.string(),
                    line: z.number().int(),
                    occurred_at: z.string(),
                    event_type: z.string(),
                    customer_account: z.string(),
                    ledger_account: z.string(),
                    debit_usd: usdSchema.nullable(),
                    credit_usd: usdSchema.nullable(),
                  }),
                ),
              }),
            },
            'text/csv': { schema: z.string() },
          },
        },
        ...common,
      },
    }),
  },
  '/admin/finance/verification': {
    get: op({
      summary: 'Verify balances, the journal and reservations',
      description:
        "As `tollgate verify`: recomputes every account's balance from its events and compares it with the projections, checks the journal's trial balance and looks for reservations open past their deadline plus `grace_seconds`. `ok` false lists the differences. Recorded as FinanceReportRun (audit `finance.report_run`, with the verdict) with the caller as actor. Finance or operator role (or the admin key).",
      requestParams: { query: verificationQuerySchema },
      responses: {
        '200': json(
          'The verification.',
          z.object({
            object: z.literal('finance_verification'),
            ok: z.boolean(),
            accounts: z.number().int(),
            events: z.number().int(),
            differences: z.array(z.object({ check: z.string(), account_id: z.string().nullable(), detail: z.string() })),
          }),
        ),
        ...common,
      },
    }),
  },
  '/admin/compliance/exports/{accountId}': {
    get: op({
      summary: 'Export everything held about an account (a data-access request)',
      description:
        'As `tollgate export`: personal data, keys, ledger events, usage, audit entries and retention, as JSON. Recorded first as PersonalDataViewed (what: export) with the acting person and `purpose` as the reason. Compliance role (or the admin key).',
      requestParams: { path: z.object({ accountId: z.string() }), query: exportQuerySchema },
      responses: {
        '200': json('The export.', z.object({ account_id: z.string(), exported_at: z.string() }).loose()),
        '404': err('No such account (`account_not_found`).'),
        ...common,
      },
    }),
  },
};
