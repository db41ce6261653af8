import type { DomainEvent } from '../../../domain/events';
import {
  cutoffFor,
  DEFAULT_RETENTION_POLICY,
  dueErasures,
  erasureDueAt,
  personalDataChange,
  planRetention,
  type PersonalDataRow,
} from '../../../projections/retention/retention';

const NOW = '2026-06-30T00:00:00.000Z';
const meta = (occurredAt: string) => ({ correlationId: 'c', causationId: 'c', actor: { kind: 'system' as const, process: 't' }, occurredAt });

describe('retention periods', () => {
  it('the policy is 90 days of request metadata and audit entries, personal data 30 days after closure', () =>
    expect(DEFAULT_RETENTION_POLICY).toEqual({ requestMetadataDays: 90, auditDays: 90, personalDataDays: 30 }));
  it('cutoff is now minus the period', () => expect(cutoffFor(NOW, 90)).toBe('2026-04-01T00:00:00.000Z'));
  it('personal data is due 30 days after closure; at once when closed on an erasure request', () => {
    expect(erasureDueAt('2026-06-01T00:00:00Z', 'customer_request')).toBe('2026-07-01T00:00:00.000Z');
    expect(erasureDueAt('2026-06-01T00:00:00Z', 'erasure_request')).toBe('2026-06-01T00:00:00.000Z');
  });
});

describe('personalDataChange', () => {
  it('closure schedules the erasure', () =>
    expect(
      personalDataChange('account-a1', { type: 'AccountClosed', data: { reason: 'admin_decision' }, metadata: meta('2026-06-01T00:00:00Z') } as DomainEvent),
    ).toEqual({
      op: 'closed',
      accountId: 'a1',
      closedAt: '2026-06-01T00:00:00.000Z',
      reason: 'admin_decision',
      eraseDueAt: '2026-07-01T00:00:00.000Z',
    }));
  it('erasure and opening are recorded; money events are not retention facts', () => {
    expect(personalDataChange('account-a1', { type: 'PersonalDataErased', data: {}, metadata: meta(NOW) } as DomainEvent)).toEqual({
      op: 'erased',
      accountId: 'a1',
      erasedAt: NOW,
    });
    expect(
      personalDataChange('account-a1', {
        type: 'TopUpCompleted',
        data: { paymentReference: 'p', amount: 1n, autoTopUpAttemptId: null },
        metadata: meta(NOW),
      } as DomainEvent),
    ).toBeNull();
  });
});

describe('planRetention', () => {
  const accounts: PersonalDataRow[] = [
    { accountId: 'open', closedAt: null, eraseDueAt: null, erasedAt: null },
    { accountId: 'closed-long-ago', closedAt: '2026-05-01T00:00:00.000Z', eraseDueAt: '2026-05-31T00:00:00.000Z', erasedAt: null },
    { accountId: 'closed-recently', closedAt: '2026-06-20T00:00:00.000Z', eraseDueAt: '2026-07-20T00:00:00.000Z', erasedAt: null },
    { accountId: 'already-erased', closedAt: '2026-01-01T00:00:00.000Z', eraseDueAt: '2026-01-31T00:00:00.000Z', erasedAt: '2026-01-31T00:00:00.000Z' },
  ];
  const plan = planRetention({
    now: NOW,
    auditEntries: [
      { day: '2026-03-01', count: 4, last: '2026-03-01T18:00:00.000Z' },
      { day: '2026-06-29', count: 2, last: '2026-06-29T09:00:00.000Z' },
    ],
    requestMetadata: [{ readModel: 'request_log', groups: [{ day: '2026-04-15', count: 7, last: '2026-04-15T12:00:00.000Z' }] }],
    personalData: accounts,
  });

  it('lists what expires when, soonest first, and marks what is due now', () => {
    const dated = plan.filter((i) => i.expiresAt !== null).map((i) => [i.category, i.subject, i.expiresAt, i.due, i.action]);
    expect(dated).toEqual([
      ['audit_entries', 'audit log 2026-03-01', '2026-05-30T18:00:00.000Z', true, 'purge'],
      ['personal_data', 'account closed-long-ago', '2026-05-31T00:00:00.000Z', true, 'erase_personal_data'],
      ['request_metadata', 'request_log 2026-04-15', '2026-07-14T12:00:00.000Z', false, 'purge'],
      ['personal_data', 'account closed-recently', '2026-07-20T00:00:00.000Z', false, 'erase_personal_data'],
      ['audit_entries', 'audit log 2026-06-29', '2026-09-27T09:00:00.000Z', false, 'purge'],
    ]);
  });
  it('wallet transactions are kept, and so is personal data of accounts not closed', () => {
    expect(plan).toContainEqual({
      category: 'wallet_transactions',
      subject: 'money events in the ledger',
      count: null,
      expiresAt: null,
      due: false,
      action: 'keep',
    });
    expect(plan.find((i) => i.category === 'personal_data' && i.action === 'keep')).toMatchObject({ count: 1, expiresAt: null });
  });
  it('an erased account is no longer in the plan', () => expect(JSON.stringify(plan)).not.toContain('already-erased'));
  it("a group whose store states its expiry (a max-age stream's own age, e.g. 30 days configured) expires then, not at the default 90 days", () => {
    const shorter = planRetention({
      now: NOW,
      auditEntries: [],
      requestMetadata: [
        { readModel: 'request log', groups: [{ day: '2026-06-01', count: 3, last: '2026-06-01T12:00:00.000Z', expiresAt: '2026-07-01T12:00:00.000Z' }] },
      ],
      personalData: [],
    });
    expect(shorter[0]).toMatchObject({ subject: 'request log 2026-06-01', expiresAt: '2026-07-01T12:00:00.000Z', due: false, action: 'purge' });
  });
  it('dueErasures: closed accounts past their date, not yet erased', () => {
    expect(dueErasures(accounts, NOW)).toEqual(['closed-long-ago']);
    expect(dueErasures(accounts, '2026-07-20T00:00:00.000Z')).toEqual(['closed-long-ago', 'closed-recently']);
  });
});
