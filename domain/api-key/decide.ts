import { match } from 'ts-pattern';
import { accept, reject, type Decider, type Decision } from '../decider/decision';
import { eventMetadataFrom, type Command } from '../events/metadata';
import type { ApiKeyError } from './errors';
import { isBefore, type IsoInstant } from '../time/instant';
import { apiKeyScopeSchema, type ApiKeyEvent, type ApiKeyScope, type KeyCreator, type SpendLimit } from './events';

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
    /** who asked for it; absent: not recorded */
    readonly createdBy?: KeyCreator;
    /** limits the key starts with (each absent: none) */
    readonly limits?: LimitChanges;
  }
>;
/** Each field absent: unchanged; null: cleared. */
export interface LimitChanges {
  readonly spendLimit?: SpendLimit | null;
  readonly expiresAt?: IsoInstant | null;
  readonly allowedModels?: readonly string[] | null;
}
export type SetApiKeyLimits = Command<'SetApiKeyLimits', LimitChanges>;
export type RenameApiKey = Command<'RenameApiKey', { readonly name: string }>;
export type RevokeApiKey = Command<'RevokeApiKey', { readonly reason: string }>;
export type ApiKeyCommand = IssueApiKey | RenameApiKey | RevokeApiKey | SetApiKeyLimits;

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
      readonly createdBy: KeyCreator | null;
      readonly limits: KeyLimits;
    };

/** A key's limits as they stand; each null: none. */
export interface KeyLimits {
  readonly spendLimit: SpendLimit | null;
  readonly expiresAt: IsoInstant | null;
  readonly allowedModels: readonly string[] | null;
}

export const NO_LIMITS: KeyLimits = Object.freeze({ spendLimit: null, expiresAt: null, allowedModels: null });

/** A spend limit is whole cents: 1 cent is 10,000 micro-USD. */
export const MICRO_USD_PER_CENT = 10_000n;
export const MAX_ALLOWED_MODELS = 100;

export function initialApiKeyState(): ApiKeyState {
  return { status: 'not_issued' };
}

/** Only an issued, unrevoked key may be used; the hash still has to match (adapter side). */
export function isApiKeyUsable(state: ApiKeyState): boolean {
  return state.status === 'active';
}

/** Whether the key's expiry time has come at `now` (a key without one never expires). */
export function isApiKeyExpired(limits: KeyLimits, now: IsoInstant): boolean {
  return limits.expiresAt !== null && !isBefore(now, limits.expiresAt);
}

/** Whether the key may use `model` (no allowlist: every model). */
export function isModelAllowed(limits: KeyLimits, model: string): boolean {
  return limits.allowedModels === null || limits.allowedModels.includes(model);
}

/** The limits after `changes`, or the rule they break. */
function limitsAfter(current: KeyLimits, changes: LimitChanges, now: IsoInstant): KeyLimits | ApiKeyError {
  const next: KeyLimits = {
    spendLimit: changes.spendLimit === undefined ? current.spendLimit : changes.spendLimit,
    expiresAt: changes.expiresAt === undefined ? current.expiresAt : changes.expiresAt,
    allowedModels: changes.allowedModels === undefined ? current.allowedModels : changes.allowedModels,
  };
  if (changes.spendLimit) {
    const { amount } = changes.spendLimit;
    if (amount < 0n) return { error: 'spend_limit_negative', amount };
    if (amount % MICRO_USD_PER_CENT !== 0n) return { error: 'spend_limit_not_whole_cents', amount };
  }
  // Only a new expiry must lie ahead; one already set stays as it is.
  if (changes.expiresAt && !isBefore(now, changes.expiresAt)) return { error: 'expiry_not_in_future', expiresAt: changes.expiresAt, now };
  if (changes.allowedModels) {
    const models = changes.allowedModels;
    if (models.length === 0 || models.length > MAX_ALLOWED_MODELS || new Set(models).size !== models.length || models.some((m) => m.trim() === '')) {
      return { error: 'allowed_models_invalid', count: models.length };
    }
  }
  return next;
}

function hasLimits(limits: KeyLimits): boolean {
  return limits.spendLimit !== null || limits.expiresAt !== null || limits.allowedModels !== null;
}

function limitsData(limits: KeyLimits) {
  return {
    spendLimit: limits.spendLimit === null ? null : { ...limits.spendLimit },
    expiresAt: limits.expiresAt,
    allowedModels: limits.allowedModels === null ? null : [...limits.allowedModels],
  };
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
      const limits = limitsAfter(NO_LIMITS, command.data.limits ?? {}, command.metadata.now);
      if ('error' in limits) return reject(limits);
      const createdBy = command.data.createdBy;
      const issuedEvent: ApiKeyEvent = {
        type: 'ApiKeyIssued',
        data: { keyId, accountId, prefix, secretHash, name, scopes: parsed.data, ...(createdBy === undefined ? {} : { createdBy: { ...createdBy } }) },
        metadata,
      };
      if (!hasLimits(limits)) return accept(issuedEvent);
      return accept<ApiKeyEvent>(issuedEvent, { type: 'ApiKeyLimitsSet', data: limitsData(limits), metadata });
    }
    case 'SetApiKeyLimits': {
      if (state.status === 'not_issued') return reject({ error: 'api_key_not_found' });
      if (state.status === 'revoked') return reject({ error: 'api_key_revoked' });
      const { spendLimit, expiresAt, allowedModels } = command.data;
      if (spendLimit === undefined && expiresAt === undefined && allowedModels === undefined) return reject({ error: 'no_limit_given' });
      const limits = limitsAfter(state.limits, command.data, command.metadata.now);
      if ('error' in limits) return reject(limits);
      return accept({ type: 'ApiKeyLimitsSet', data: limitsData(limits), metadata });
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
    .with({ type: 'ApiKeyIssued' }, ({ data: { createdBy, ...data } }) => ({
      status: 'active' as const,
      ...data,
      createdBy: createdBy ?? null,
      limits: NO_LIMITS,
    }))
    .with({ type: 'ApiKeyLimitsSet' }, ({ data }) => (state.status === 'not_issued' ? state : { ...state, limits: { ...data } }))
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
