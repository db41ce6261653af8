import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema, isoInstantSchema, naturalSchema } from '../events/schema';

export const apiKeyScopeSchema = z.enum(['inference', 'account_read', 'account_write', 'admin']);
export type ApiKeyScope = z.output<typeof apiKeyScopeSchema>;

/**
 * Who created a key: an operator (the admin API or CLI, the first run), another key of the
 * account, or a signed-in user (a member of the account). Keys issued before this was recorded
 * have none.
 */
export const keyCreatorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('operator') }),
  z.object({ kind: z.literal('key'), keyId: idSchema }),
  z.object({ kind: z.literal('user'), userId: idSchema }),
]);
export type KeyCreator = z.output<typeof keyCreatorSchema>;

/**
 * The secret is shown once by the caller and never enters an event: only its public prefix
 * (to find the key) and its bcrypt hash (to verify it).
 */
export const ApiKeyIssued = defineEvent(
  'ApiKeyIssued',
  z.object({
    keyId: idSchema,
    accountId: idSchema,
    prefix: idSchema,
    secretHash: z.string().min(1),
    name: z.string(),
    scopes: z.array(apiKeyScopeSchema).min(1),
    /** absent on keys issued before creators were recorded */
    createdBy: keyCreatorSchema.optional(),
  }),
);

export const ApiKeyRenamed = defineEvent('ApiKeyRenamed', z.object({ name: z.string() }));

export const ApiKeyRevoked = defineEvent('ApiKeyRevoked', z.object({ reason: z.string().min(1) }));

/** Spend windows: the UTC calendar day, the UTC calendar month, or the key's whole life. */
export const spendLimitPeriodSchema = z.enum(['day', 'month', 'total']);
export type SpendLimitPeriod = z.output<typeof spendLimitPeriodSchema>;

export const spendLimitSchema = z.object({ period: spendLimitPeriodSchema, amount: naturalSchema });
export type SpendLimit = z.output<typeof spendLimitSchema>;

/**
 * The key's limits as they now stand, whole (each null: none). Keys issued before limits existed
 * have no such event and no limits. `allowedModels` null: every model the price book offers.
 */
export const ApiKeyLimitsSet = defineEvent(
  'ApiKeyLimitsSet',
  z.object({
    spendLimit: spendLimitSchema.nullable(),
    expiresAt: isoInstantSchema.nullable(),
    allowedModels: z.array(idSchema).nullable(),
  }),
);

export const apiKeyEventDefinitions = [ApiKeyIssued, ApiKeyRenamed, ApiKeyRevoked, ApiKeyLimitsSet] as const;

export type ApiKeyEvent = EventOf<(typeof apiKeyEventDefinitions)[number]>;
