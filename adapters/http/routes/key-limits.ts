import type { Response, Router } from 'express';
import { apiKeyStreamId, type LimitChanges } from '../../../domain/api-key';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { adminMetadata, commandMetadata } from '../../../src/command-metadata';
import { ADMIN_KEY_ID } from '../../../src/api-keys';
import type { RouteMount } from '../../../src/gateway';
import { keyOf } from '../auth';
import { ApiError } from '../openai/errors';
import { requestIdOf } from '../observability/request-id';
import {
  AccountReader,
  authenticated,
  checkModelsKnown,
  isId,
  keyLimitsSchema,
  keyNotFound,
  limitChangesOf,
  parseInput,
  refusedLimits,
  type GatewayParts,
} from './account';

/**
 * A key's limits (domain/api-key): spend limit, expiry, model allowlist.
 *   PATCH /v1/account/keys/:keyId/limits  a key of the caller's own account (account_write)
 *   PATCH /admin/keys/:keyId/limits       any customer key (admin)
 * Each field absent stays as it is; null clears it. Refused input changes nothing (400 naming
 * the parameter). The new limits reach every gateway instance through the event log
 * (ApiKeyLimitsSet is announced like a revocation).
 */
export const mountKeyLimitRoutes: RouteMount = (router: Router, gateway) => {
  const reader = new AccountReader(gateway);
  const write = authenticated(gateway.keys, 'account_write');
  const admin = authenticated(gateway.keys, 'admin');

  router.patch('/v1/account/keys/:keyId/limits', write, async (req, res) => {
    const caller = keyOf(res);
    const keyId = String(req.params['keyId']);
    const changes = limitChangesOf(parseInput(keyLimitsSchema, req.body));
    const state = await reader.keyOfAccount(caller.accountId, keyId);
    if (!state) throw keyNotFound();
    // A limited key could lift its own limits; an unlimited one may limit itself (it loses nothing).
    const limited = state.limits.spendLimit !== null || state.limits.expiresAt !== null || state.limits.allowedModels !== null;
    if (keyId === caller.keyId && limited) {
      throw new ApiError(
        403,
        'invalid_request_error',
        'cannot_change_own_limits',
        null,
        'A key with limits cannot change its own limits: use another key of the account with the account_write scope, or ask an operator.',
      );
    }
    const metadata = commandMetadata({ kind: 'customer_key', keyId: caller.keyId }, requestIdOf(res));
    res.json(await setLimits(gateway, reader, keyId, changes, metadata));
  });

  router.patch('/admin/keys/:keyId/limits', admin, async (req, res) => {
    const keyId = String(req.params['keyId']);
    if (!isId(keyId)) throw keyNotFound();
    const changes = limitChangesOf(parseInput(keyLimitsSchema, req.body));
    const { state } = await gateway.ledger.apiKeys.load(apiKeyStreamId(keyId));
    // Operators' own keys belong to no account and take no limits.
    if (state.status === 'not_issued' || keyId === ADMIN_KEY_ID || state.scopes.includes('admin')) throw keyNotFound();
    res.json(await setLimits(gateway, reader, keyId, changes, metadataOf(res)));
  });
};

function metadataOf(res: Response): CommandMetadata {
  return { ...adminMetadata(keyOf(res).keyId, requestIdOf(res)), causationId: requestIdOf(res) };
}

async function setLimits(gateway: GatewayParts, reader: AccountReader, keyId: string, changes: LimitChanges, metadata: CommandMetadata) {
  if (changes.allowedModels) await checkModelsKnown(gateway, changes.allowedModels);
  const result = await gateway.ledger.apiKeys.handle(apiKeyStreamId(keyId), { type: 'SetApiKeyLimits', data: changes, metadata });
  if (!result.ok) throw refusedLimits(result.error);
  // This process applies the new limits at once; the others when the event log announces them.
  gateway.keys.forget(keyId);
  if (result.state.status === 'not_issued') throw keyNotFound();
  return await reader.keyViewOf(result.state);
}
