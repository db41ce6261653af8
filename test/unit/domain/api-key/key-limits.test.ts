import { apiKeyDecider, isApiKeyExpired, isModelAllowed, NO_LIMITS, type ApiKeyCommand } from '../../../../domain/api-key/decide';
import type { ApiKeyEvent } from '../../../../domain/api-key/events';
import { fold } from '../../../../domain/decider/decision';
import { domainEventCodec } from '../../../../domain/events/codec';
import { eventMetadataFrom } from '../../../../domain/events/metadata';
import { deciderSpec } from '../decider-spec';
import { commandMetadata, T0 } from '../account/fixtures';

const given = deciderSpec(apiKeyDecider);
const cmd = <T extends ApiKeyCommand['type']>(type: T, data: Extract<ApiKeyCommand, { type: T }>['data']) =>
  ({ type, data, metadata: commandMetadata() }) as Extract<ApiKeyCommand, { type: T }>;
const ev = <T extends ApiKeyEvent['type']>(type: T, data: Extract<ApiKeyEvent, { type: T }>['data']) =>
  ({ type, data, metadata: eventMetadataFrom(commandMetadata()) }) as Extract<ApiKeyEvent, { type: T }>;

const HASH = '$2b$10$' + 'N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'.slice(0, 53);
const base = { keyId: 'k1', accountId: 'a1', prefix: 'tg_k1', secretHash: HASH, name: 'ci', scopes: ['inference'] as ('inference' | 'account_read')[] };
const issued = ev('ApiKeyIssued', base);
const revoked = ev('ApiKeyRevoked', { reason: 'leaked' });
const LATER = '2026-02-01T00:00:00.000Z';
const limitsSet = (data: Partial<Extract<ApiKeyEvent, { type: 'ApiKeyLimitsSet' }>['data']>) =>
  ev('ApiKeyLimitsSet', { spendLimit: null, expiresAt: null, allowedModels: null, ...data });

describe('API key limits: given / when / then', () => {
  it('records who created a key', () =>
    given([])
      .when(cmd('IssueApiKey', { ...base, createdBy: { kind: 'key', keyId: 'k0' } }))
      .then([ev('ApiKeyIssued', { ...base, createdBy: { kind: 'key', keyId: 'k0' } })]));

  it('a key issued with limits has them from its first event on', () =>
    given([])
      .when(cmd('IssueApiKey', { ...base, createdBy: { kind: 'operator' }, limits: { spendLimit: { period: 'day', amount: 5_000_000n }, expiresAt: LATER } }))
      .then([
        ev('ApiKeyIssued', { ...base, createdBy: { kind: 'operator' } }),
        limitsSet({ spendLimit: { period: 'day', amount: 5_000_000n }, expiresAt: LATER }),
      ]));

  it('sets a spend limit, keeping the other limits as they are', () =>
    given([issued, limitsSet({ expiresAt: LATER })])
      .when(cmd('SetApiKeyLimits', { spendLimit: { period: 'month', amount: 120_000_000n } }))
      .then([limitsSet({ spendLimit: { period: 'month', amount: 120_000_000n }, expiresAt: LATER })]));

  it('null clears one limit', () =>
    given([issued, limitsSet({ expiresAt: LATER, allowedModels: ['m1'] })])
      .when(cmd('SetApiKeyLimits', { allowedModels: null }))
      .then([limitsSet({ expiresAt: LATER })]));

  it('a zero limit is allowed: the key spends nothing more', () =>
    given([issued])
      .when(cmd('SetApiKeyLimits', { spendLimit: { period: 'total', amount: 0n } }))
      .then([limitsSet({ spendLimit: { period: 'total', amount: 0n } })]));

  it('spend_limit_negative', () =>
    given([issued])
      .when(cmd('SetApiKeyLimits', { spendLimit: { period: 'day', amount: -10_000n } }))
      .then({ error: 'spend_limit_negative', amount: -10_000n }));

  it('spend_limit_not_whole_cents: USD 1.005 is refused', () =>
    given([issued])
      .when(cmd('SetApiKeyLimits', { spendLimit: { period: 'day', amount: 1_005_000n } }))
      .then({ error: 'spend_limit_not_whole_cents', amount: 1_005_000n }));

  it('expiry_not_in_future: now or earlier is refused', () => {
    given([issued])
      .when(cmd('SetApiKeyLimits', { expiresAt: T0 }))
      .then({ error: 'expiry_not_in_future', expiresAt: T0, now: T0 });
    given([])
      .when(cmd('IssueApiKey', { ...base, limits: { expiresAt: '2025-01-01T00:00:00Z' } }))
      .thenRejectedWith('expiry_not_in_future');
  });

  it('allowed_models_invalid: empty, duplicated or blank', () => {
    for (const allowedModels of [[], ['m1', 'm1'], [' ']]) {
      given([issued]).when(cmd('SetApiKeyLimits', { allowedModels })).thenRejectedWith('allowed_models_invalid');
    }
  });

  it('no_limit_given', () => given([issued]).when(cmd('SetApiKeyLimits', {})).then({ error: 'no_limit_given' }));
  it('api_key_not_found / api_key_revoked', () => {
    given([])
      .when(cmd('SetApiKeyLimits', { expiresAt: null }))
      .then({ error: 'api_key_not_found' });
    given([issued, revoked])
      .when(cmd('SetApiKeyLimits', { expiresAt: null }))
      .then({ error: 'api_key_revoked' });
  });

  it('old keys (no creator, no limits event) read back with no limits', () => {
    const state = fold(apiKeyDecider, [issued]);
    expect(state.status === 'active' && state.limits).toEqual(NO_LIMITS);
    expect(state.status === 'active' && state.createdBy).toBeNull();
    // an ApiKeyIssued stored before createdBy existed decodes
    const stored = domainEventCodec.encode(issued);
    expect(domainEventCodec.decode({ ...stored, data: { ...(stored.data as object) } })).toEqual(issued);
  });

  it('expiry and allowlist as the gateway asks them', () => {
    const limits = { spendLimit: null, expiresAt: LATER, allowedModels: ['m1'] };
    expect(isApiKeyExpired(limits, T0)).toBe(false);
    expect(isApiKeyExpired(limits, LATER)).toBe(true);
    expect(isApiKeyExpired(NO_LIMITS, '2999-01-01T00:00:00Z')).toBe(false);
    expect(isModelAllowed(limits, 'm1')).toBe(true);
    expect(isModelAllowed(limits, 'm2')).toBe(false);
    expect(isModelAllowed(NO_LIMITS, 'anything')).toBe(true);
  });
});
