import { apiKeyDecider, isApiKeyUsable, type ApiKeyCommand } from '../../../../domain/api-key/decide';
import type { ApiKeyEvent } from '../../../../domain/api-key/events';
import { fold } from '../../../../domain/decider/decision';
import { domainEventCodec } from '../../../../domain/events/codec';
import { eventMetadataFrom } from '../../../../domain/events/metadata';
import { deciderSpec } from '../decider-spec';
import { commandMetadata } from '../account/fixtures';

const given = deciderSpec(apiKeyDecider);
const cmd = <T extends ApiKeyCommand['type']>(type: T, data: Extract<ApiKeyCommand, { type: T }>['data']) =>
  ({ type, data, metadata: commandMetadata() }) as Extract<ApiKeyCommand, { type: T }>;
const ev = <T extends ApiKeyEvent['type']>(type: T, data: Extract<ApiKeyEvent, { type: T }>['data']) =>
  ({ type, data, metadata: eventMetadataFrom(commandMetadata()) }) as Extract<ApiKeyEvent, { type: T }>;

const HASH = '$2b$10$' + 'N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy'.slice(0, 53);
const issue = (over: Partial<Extract<ApiKeyCommand, { type: 'IssueApiKey' }>['data']> = {}) =>
  cmd('IssueApiKey', { keyId: 'k1', accountId: 'a1', prefix: 'tg_live_ab12', secretHash: HASH, name: 'ci', scopes: ['inference', 'account_read'], ...over });
const issued = ev('ApiKeyIssued', {
  keyId: 'k1',
  accountId: 'a1',
  prefix: 'tg_live_ab12',
  secretHash: HASH,
  name: 'ci',
  scopes: ['inference', 'account_read'],
});
const revoked = ev('ApiKeyRevoked', { reason: 'leaked' });

describe('API key decider', () => {
  it('issues a key with its bcrypt hash and scopes', () => given([]).when(issue()).then([issued]));
  it('api_key_already_issued', () => given([issued]).when(issue()).then({ error: 'api_key_already_issued', keyId: 'k1' }));
  it('api_key_scopes_invalid: scopes are a subset of the known ones', () =>
    given([])
      .when(issue({ scopes: ['inference', 'root'] }))
      .thenRejectedWith('api_key_scopes_invalid'));
  it('api_key_scopes_invalid: at least one scope, none twice', () => {
    given([])
      .when(issue({ scopes: [] }))
      .thenRejectedWith('api_key_scopes_invalid');
    given([])
      .when(issue({ scopes: ['inference', 'inference'] }))
      .thenRejectedWith('api_key_scopes_invalid');
  });
  it('api_key_hash_not_bcrypt: a plain secret is never stored', () =>
    given([])
      .when(issue({ secretHash: 'tg_live_ab12_the-secret-itself' }))
      .then({ error: 'api_key_hash_not_bcrypt' }));
  it('api_key_name_invalid', () =>
    given([])
      .when(issue({ name: '  ' }))
      .then({ error: 'api_key_name_invalid' }));
  it('renames', () =>
    given([issued])
      .when(cmd('RenameApiKey', { name: 'prod' }))
      .then([ev('ApiKeyRenamed', { name: 'prod' })]));
  it('api_key_not_found', () =>
    given([])
      .when(cmd('RenameApiKey', { name: 'prod' }))
      .then({ error: 'api_key_not_found' }));
  it('revokes', () =>
    given([issued])
      .when(cmd('RevokeApiKey', { reason: 'leaked' }))
      .then([revoked]));
  it('api_key_revoked: revoking again is refused, so the caller knows', () =>
    given([issued, revoked])
      .when(cmd('RevokeApiKey', { reason: 'again' }))
      .then({ error: 'api_key_revoked' }));
  it('api_key_revoked: a revoked key cannot be renamed', () =>
    given([issued, revoked])
      .when(cmd('RenameApiKey', { name: 'x' }))
      .then({ error: 'api_key_revoked' }));
  it('a revoked key is never usable again, whatever follows', () => {
    expect(isApiKeyUsable(fold(apiKeyDecider, [issued]))).toBe(true);
    expect(isApiKeyUsable(fold(apiKeyDecider, [issued, revoked]))).toBe(false);
    expect(isApiKeyUsable(fold(apiKeyDecider, [issued, revoked, ev('ApiKeyRenamed', { name: 'x' })]))).toBe(false);
  });
  it('no event carries more than the prefix and the hash', () => {
    const stored = JSON.stringify(domainEventCodec.encode(issued));
    expect(Object.keys(issued.data).sort()).toEqual(['accountId', 'keyId', 'name', 'prefix', 'scopes', 'secretHash']);
    expect(stored).not.toMatch(/secret-itself/);
  });
});
