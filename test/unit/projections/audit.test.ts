import { createHash } from 'node:crypto';
import type { DomainEvent } from '../../../domain/events';
import type { Actor } from '../../../domain/events/metadata';
import { auditEntryOf, auditFactOf, canonicalJson, chainBatch, entryHash, GENESIS_HASH, verifyStep, type AuditSource } from '../../../projections/audit/audit';

const T0 = '2026-03-01T10:00:00.000Z';
const ada: Actor = { kind: 'admin', adminId: 'ada' };
let seq = 0n;

function recorded(streamId: string, event: Omit<DomainEvent, 'metadata'>, actor: Actor = ada, correlationId = 'corr-1'): AuditSource {
  seq += 1n;
  return {
    id: `00000000-0000-4000-8000-${seq.toString().padStart(12, '0')}`,
    streamId,
    position: { tx: 100n, seq },
    event: { ...event, metadata: { correlationId, causationId: correlationId, actor, occurredAt: T0 } } as DomainEvent,
  };
}

const opened = recorded('account-acct_1', {
  type: 'AccountOpened',
  data: { accountId: 'acct_1', displayNameCiphertext: 'pd1.secret-name', emailCiphertext: 'pd1.secret-mail' },
});
const suspended = recorded('account-acct_1', { type: 'AccountSuspended', data: { reason: 'terms_violation' } });
const keyIssued = recorded('api-key-k1', {
  type: 'ApiKeyIssued',
  data: { keyId: 'k1', accountId: 'acct_1', prefix: 'tg_k1', secretHash: '$2b$10$hash', name: 'Jane personal laptop', scopes: ['inference'] },
});
const revoked = recorded('api-key-k1', { type: 'ApiKeyRevoked', data: { reason: 'leaked in a repo' } });
const priceSet = recorded('price-book', {
  type: 'PriceSet',
  data: { version: 3, modelId: 'llama', operation: 'chat', inputPerMillion: 150_000n, outputPerMillion: 600_000n, effectiveAt: T0 },
});
const settled = recorded(
  'account-acct_1',
  {
    type: 'ReservationSettled',
    data: {
      requestId: 'r1',
      keyId: 'k1',
      model: 'llama',
      operation: 'chat',
      reservedAmount: 10n,
      actualCost: 5n,
      fromPromo: [],
      fromPurchased: 5n,
      usage: { inputTokens: 1n, outputTokens: 1n, estimated: false },
      priceVersion: 3,
      outcome: 'completed',
    },
  },
  { kind: 'customer_key', keyId: 'k1' },
);

describe('audit facts: which acts are audited, with what', () => {
  it('an account suspension: admin actor, account target, the reason', () => {
    expect(auditEntryOf(suspended, 1n)).toMatchObject({
      action: 'account.suspended',
      actorKind: 'admin',
      actorId: 'ada',
      targetKind: 'account',
      targetId: 'acct_1',
      reason: 'terms_violation',
      correlationId: 'corr-1',
      positionTx: '100',
      eventId: suspended.id,
      occurredAt: T0,
    });
  });
  it('a key revocation targets the key named by its stream and carries the reason', () =>
    expect(auditFactOf(revoked.streamId, revoked.event)).toEqual({
      action: 'api_key.revoked',
      targetKind: 'api_key',
      targetId: 'k1',
      reason: 'leaked in a repo',
      details: {},
    }));
  it('a price change targets the model, amounts in USD', () =>
    expect(auditFactOf(priceSet.streamId, priceSet.event)).toMatchObject({
      action: 'price.set',
      targetKind: 'model',
      targetId: 'llama',
      details: { operation: 'chat', version: '3', inputUsdPerMillion: '0.150000', outputUsdPerMillion: '0.600000' },
    }));
  it("a manual top-up is a manual credit grant, its reason taken from the admin route's correlation id", () => {
    const manual = recorded(
      'account-acct_1',
      { type: 'TopUpCompleted', data: { paymentReference: 'manual:goodwill-7', amount: 10_000_000n, autoTopUpAttemptId: null } },
      ada,
      'reason: outage credit',
    );
    expect(auditFactOf(manual.streamId, manual.event)).toEqual({
      action: 'credit.manual_top_up',
      targetKind: 'account',
      targetId: 'acct_1',
      reason: 'outage credit',
      details: { paymentReference: 'manual:goodwill-7', amountUsd: '10.000000' },
    });
  });
  it('a paid top-up, a reservation and its settlement are not administrative acts', () => {
    const paid = recorded('account-acct_1', { type: 'TopUpCompleted', data: { paymentReference: 'pi_123', amount: 10_000_000n, autoTopUpAttemptId: null } });
    expect(auditFactOf(paid.streamId, paid.event)).toBeNull();
    expect(auditFactOf(settled.streamId, settled.event)).toBeNull();
  });
  it('never copies personal data, ciphertexts, key names or key hashes into an entry', () => {
    const text = JSON.stringify([auditEntryOf(opened, 1n), auditEntryOf(keyIssued, 2n)]);
    for (const secret of ['secret-name', 'secret-mail', 'Jane', '$2b$']) expect(text).not.toContain(secret);
    expect(auditFactOf(keyIssued.streamId, keyIssued.event)).toMatchObject({
      targetId: 'k1',
      details: { accountId: 'acct_1', prefix: 'tg_k1', scopes: ['inference'] },
    });
  });
  it('a correction says which fields changed, not their values', () => {
    const corrected = recorded('account-acct_1', { type: 'PersonalDataCorrected', data: { displayNameCiphertext: null, emailCiphertext: 'pd1.x' } });
    expect(auditFactOf(corrected.streamId, corrected.event)).toMatchObject({ action: 'personal_data.corrected', details: { fields: ['email'] } });
  });
  it('a view of personal data targets the account it shows (not the access stream), the purpose as reason, the view and fields as details', () => {
    const viewed = recorded(
      'personal-data-access-acct_1',
      {
        type: 'PersonalDataViewed',
        data: { accountId: 'acct_1', what: 'export', fields: ['display_name', 'email'], purpose: 'data-access request 42' },
      },
      { kind: 'admin', adminId: 'dpo-7' },
    );
    expect(auditFactOf(viewed.streamId, viewed.event)).toEqual({
      action: 'personal_data.viewed',
      targetKind: 'account',
      targetId: 'acct_1',
      reason: 'data-access request 42',
      details: { what: 'export', fields: ['display_name', 'email'] },
    });
  });
});

describe('canonical JSON', () => {
  it('sorts keys at every level and has no whitespace', () =>
    expect(canonicalJson({ b: 1, a: { d: [1, { z: null, y: 'x' }], c: true } })).toBe('{"a":{"c":true,"d":[1,{"y":"x","z":null}]},"b":1}'));
  it('the same value with keys in another order gives the same text', () =>
    expect(canonicalJson({ x: '1', y: ['a'] })).toBe(canonicalJson({ y: ['a'], x: '1' })));
});

describe('the hash chain', () => {
  const sources = [opened, settled, suspended, keyIssued, revoked, priceSet];
  const { entries, head } = chainBatch({ entryNo: 0n, hash: GENESIS_HASH }, sources);

  it('numbers audited events 1, 2, 3, ... skipping the rest, each linked to the one before', () => {
    expect(entries.map((e) => e.entryNo)).toEqual(['1', '2', '3', '4', '5']);
    expect(entries.map((e) => e.action)).toEqual(['account.opened', 'account.suspended', 'api_key.issued', 'api_key.revoked', 'price.set']);
    expect(entries[0]!.prevHash).toBe(GENESIS_HASH);
    for (let i = 1; i < entries.length; i++) expect(entries[i]!.prevHash).toBe(entries[i - 1]!.hash);
    expect(head).toEqual({ entryNo: 5n, hash: entries[4]!.hash });
  });

  it('hash = sha256(previous hash || canonical JSON of the entry fields)', () => {
    const { prevHash, hash, ...fields } = entries[1]!;
    expect(hash).toBe(
      createHash('sha256')
        .update(prevHash + canonicalJson(fields))
        .digest('hex'),
    );
    expect(entryHash('f'.repeat(64), fields)).not.toBe(hash);
  });

  it('chaining in two batches gives the same entries as in one', () => {
    const first = chainBatch({ entryNo: 0n, hash: GENESIS_HASH }, sources.slice(0, 3));
    const second = chainBatch(first.head, sources.slice(3));
    expect([...first.entries, ...second.entries]).toEqual(entries);
  });

  it('an intact chain verifies from genesis, and from an anchor after a purge', () => {
    expect(verifyStep({ entryNo: 0n, hash: GENESIS_HASH }, entries)).toEqual({ ok: true, head });
    expect(verifyStep({ entryNo: 2n, hash: entries[1]!.hash }, entries.slice(2))).toEqual({ ok: true, head });
  });

  it('an altered field breaks the link at that entry', () => {
    const altered = entries.map((e) => (e.entryNo === '3' ? { ...e, actorId: 'mallory' } : e));
    expect(verifyStep({ entryNo: 0n, hash: GENESIS_HASH }, altered)).toEqual({ ok: false, broken: { entryNo: '3', problem: 'hash_mismatch' } });
  });

  it('an entry removed from the middle is named by the entry after the gap', () => {
    const removed = entries.filter((e) => e.entryNo !== '2');
    expect(verifyStep({ entryNo: 0n, hash: GENESIS_HASH }, removed)).toEqual({
      ok: false,
      broken: { entryNo: '3', problem: 'missing_entries', expected: '2' },
    });
  });

  it('an entry rehashed after being altered still breaks the next link', () => {
    const e2 = { ...entries[1]!, reason: 'customer_request' as const };
    const rehashed = { ...e2, hash: entryHash(e2.prevHash, e2) };
    const tampered = entries.map((e) => (e.entryNo === '2' ? rehashed : e));
    expect(verifyStep({ entryNo: 0n, hash: GENESIS_HASH }, tampered)).toEqual({ ok: false, broken: { entryNo: '3', problem: 'prev_hash_mismatch' } });
  });
});
