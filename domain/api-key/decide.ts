import { match } from 'ts-pattern';
import { accept, reject, type Decider, type Decision } from '../decider/decision';
import { eventMetadataFrom, type Command } from '../events/metadata';
import type { ApiKeyError } from './errors';
import { apiKeyScopeSchema, type ApiKeyEvent, type ApiKeyScope } from './events';

/**
 * One stream per key (`api-key-<keyId>`): revocation touches one small stream and never
 * contends with an account's money stream; "keys of an account" is a projection.
 */

export type IssueApiKey = Command<
  'IssueApiKey',
  {
    readonly keyId: string;
    readonly accountId: string;
    readonly prefix: string;
    /** bcrypt hash computed by the caller; the secret itself never reaches the domain */
    readonly secretHash: string;
    readonly name: string;
    readonly scopes: readonly string[];
  }
>;
export type RenameApiKey = Command<'RenameApiKey', { readonly name: string }>;
export type RevokeApiKey = Command<'RevokeApiKey', { readonly reason: string }>;
export type ApiKeyCommand = IssueApiKey | RenameApiKey | RevokeApiKey;

export type ApiKeyState =
  | { readonly status: 'not_issued' }
  | {
      readonly status: 'active' | 'revoked';
      readonly keyId: string;
      readonly accountId: string;
      readonly prefix: string;
      readonly secretHash: string;
      readonly name: string;
      readonly scopes: readonly ApiKeyScope[];
    };

export function initialApiKeyState(): ApiKeyState {
  return { status: 'not_issued' };
}

/** Only an issued, unrevoked key may be used; the hash still has to match (adapter side). */
export function isApiKeyUsable(state: ApiKeyState): boolean {
  return state.status === 'active';
}

const MAX_NAME_LENGTH = 100;
const BCRYPT_HASH = /^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$/;

function validName(name: string): boolean {
  return name.trim().length > 0 && name.length <= MAX_NAME_LENGTH;
}

export function decideApiKey(command: ApiKeyCommand, state: ApiKeyState): Decision<ApiKeyEvent, ApiKeyError> {
  const metadata = eventMetadataFrom(command.metadata);
  switch (command.type) {
    case 'IssueApiKey': {
      const { keyId, accountId, prefix, secretHash, name, scopes } = command.data;
      if (state.status !== 'not_issued') return reject({ error: 'api_key_already_issued', keyId });
      if (!validName(name)) return reject({ error: 'api_key_name_invalid' });
      const parsed = apiKeyScopeSchema.array().min(1).safeParse(scopes);
      if (!parsed.success || new Set(scopes).size !== scopes.length) return reject({ error: 'api_key_scopes_invalid', scopes });
      if (!BCRYPT_HASH.test(secretHash)) return reject({ error: 'api_key_hash_not_bcrypt' });
      return accept({ type: 'ApiKeyIssued', data: { keyId, accountId, prefix, secretHash, name, scopes: parsed.data }, metadata });
    }
    case 'RenameApiKey': {
      if (state.status === 'not_issued') return reject({ error: 'api_key_not_found' });
      if (state.status === 'revoked') return reject({ error: 'api_key_revoked' });
      if (!validName(command.data.name)) return reject({ error: 'api_key_name_invalid' });
      return accept({ type: 'ApiKeyRenamed', data: { name: command.data.name }, metadata });
    }
    case 'RevokeApiKey': {
      if (state.status === 'not_issued') return reject({ error: 'api_key_not_found' });
      if (state.status === 'revoked') return reject({ error: 'api_key_revoked' });
      return accept({ type: 'ApiKeyRevoked', data: { reason: command.data.reason }, metadata });
    }
    default:
      return command satisfies never;
  }
}

export function evolveApiKey(state: ApiKeyState, event: ApiKeyEvent): ApiKeyState {
  return match(event)
    .with({ type: 'ApiKeyIssued' }, ({ data }) => ({ status: 'active' as const, ...data }))
    .with({ type: 'ApiKeyRenamed' }, ({ data }) => (state.status === 'not_issued' ? state : { ...state, name: data.name }))
    .with({ type: 'ApiKeyRevoked' }, () => (state.status === 'not_issued' ? state : { ...state, status: 'revoked' as const }))
    .exhaustive();
}

export const apiKeyDecider: Decider<ApiKeyCommand, ApiKeyState, ApiKeyEvent, ApiKeyError> = {
  decide: decideApiKey,
  evolve: evolveApiKey,
  initialState: initialApiKeyState,
};

export function apiKeyStreamId(keyId: string): string {
  return `api-key-${keyId}`;
}
