import { z } from 'zod';
import { defineEvent, type EventOf } from '../events/define';
import { idSchema } from '../events/schema';

export const apiKeyScopeSchema = z.enum(['inference', 'account_read', 'account_write', 'admin']);
export type ApiKeyScope = z.output<typeof apiKeyScopeSchema>;

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
  }),
);

export const ApiKeyRenamed = defineEvent('ApiKeyRenamed', z.object({ name: z.string() }));

export const ApiKeyRevoked = defineEvent('ApiKeyRevoked', z.object({ reason: z.string().min(1) }));

export const apiKeyEventDefinitions = [ApiKeyIssued, ApiKeyRenamed, ApiKeyRevoked] as const;

export type ApiKeyEvent = EventOf<(typeof apiKeyEventDefinitions)[number]>;
