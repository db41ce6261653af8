import { accountStreamId } from '../../../domain/account';
import { apiKeyStreamId } from '../../../domain/api-key';
import { systemMetadata } from '../../../src/command-metadata';
import { startPaymentsHarness, type PaymentsHarness } from './harness';

/**
 * Closing an account revokes every key it has, in the request that closes it; and a key of a
 * closed account is refused by authentication even when its revocation was never written.
 */

let h: PaymentsHarness;

beforeAll(async () => {
  h = await startPaymentsHarness();
});

afterAll(async () => {
  await h?.stop();
});

async function keyEvents(keyId: string) {
  const { events } = await h.tg.gateway.store.readStream(apiKeyStreamId(keyId));
  return events.map((e) => e.event);
}

test('closing an account revokes every active key of it in the same request, named by the customer key that closed it', async () => {
  const kim = await h.openCustomer('Kim');
  const second = await h.call('POST', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey, { name: 'ci' });
  const third = await h.call('POST', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey, { name: 'old' });
  expect((await h.call('DELETE', `/admin/keys/${third.body.key_id}`, h.tg.adminKey, { reason: 'rotated' })).status).toBe(200);
  // Another customer's key is untouched.
  const other = await h.openCustomer('Other');

  const closed = await h.call('POST', '/v1/account/close', kim.key);
  expect(closed.status).toBe(200);
  expect(closed.body).toMatchObject({ status: 'closed', keys_revoked: 2 });

  const keys = await h.call('GET', `/admin/accounts/${kim.accountId}/keys`, h.tg.adminKey);
  expect(keys.body.data.map((k: { key_id: string; status: string }) => [k.key_id, k.status]).sort()).toEqual(
    [
      [kim.keyId, 'revoked'],
      [second.body.key_id, 'revoked'],
      [third.body.key_id, 'revoked'],
    ].sort(),
  );
  for (const key of [kim.key, second.body.key as string]) {
    const read = await h.call('GET', '/v1/account', key);
    expect([read.status, read.body.error.code]).toEqual([401, 'invalid_api_key']);
  }
  // The already-revoked key keeps its one revocation; the others were revoked for the closure by the closing key.
  expect((await keyEvents(third.body.key_id)).filter((e) => e.type === 'ApiKeyRevoked').map((e) => e.data)).toEqual([{ reason: 'rotated' }]);
  const revocation = (await keyEvents(second.body.key_id)).find((e) => e.type === 'ApiKeyRevoked');
  expect(revocation?.data).toEqual({ reason: 'account_closed' });
  expect(revocation?.metadata.actor).toEqual({ kind: 'customer_key', keyId: kim.keyId });

  expect((await h.call('GET', '/v1/account', other.key)).status).toBe(200);
});

test('a key of a closed account is refused even when its revocation was never written', async () => {
  const lou = await h.openCustomer('Lou');
  const unused = await h.call('POST', `/admin/accounts/${lou.accountId}/keys`, h.tg.adminKey, { name: 'never used' });
  // Verified once, so this process holds the key in its cache.
  expect((await h.call('GET', '/v1/account', lou.key)).status).toBe(200);

  // Closed without the HTTP handler: as if every revocation write had failed.
  const closed = await h.tg.gateway.ledger.accounts.handle(accountStreamId(lou.accountId), { type: 'CloseAccount', data: { reason: 'admin_decision' }, metadata: systemMetadata('test') });
  expect(closed.ok).toBe(true);
  const keys = await h.call('GET', `/admin/accounts/${lou.accountId}/keys`, h.tg.adminKey);
  expect(keys.body.data.map((k: { status: string }) => k.status)).toEqual(['active', 'active']);

  for (const key of [lou.key, unused.body.key as string]) {
    const read = await h.call('GET', '/v1/account', key);
    expect([read.status, read.body.error.code]).toEqual([401, 'invalid_api_key']);
    const chat = await h.call('POST', '/v1/chat/completions', key, { model: 'payments-test-model', messages: [{ role: 'user', content: 'hi' }] });
    expect([chat.status, chat.body.error.code]).toEqual([401, 'invalid_api_key']);
  }
  // The admin key belongs to no account and still works.
  expect((await h.call('GET', `/admin/accounts/${lou.accountId}`, h.tg.adminKey)).status).toBe(200);
});
