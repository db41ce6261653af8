import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { Pool } from 'pg';
import { personalDataAccessStreamId } from '../../../domain/personal-data-access';
import { accountStreamId } from '../../../domain/account';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { repoRoot, runToCompletion } from '../../support/processes';

const MODELS = [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat' as const] }];

interface AuditRow {
  occurred_at: string;
  actor: { kind: string; id: string };
  action: string;
  target: { kind: string; id: string };
  reason: string | null;
  details: Record<string, unknown>;
}

// Child processes (gateway, CLI) on a shared 2-core machine: generous safety nets, no verdict by the clock.
jest.setTimeout(180_000);

describe('who looked at personal data: every read is an audit entry naming the actor, the account and when', () => {
  let gw: TestGateway;
  const unique = randomUUID().slice(0, 8);
  const people = [
    { display_name: 'Henrietta Quastel', email: `h.quastel.${unique}@example.org` },
    { display_name: 'Bartholomew Ifeyinwa', email: `b.ifeyinwa.${unique}@example.net` },
  ];
  const ids: string[] = [];

  const admin = async (method: string, path: string, body?: unknown) => {
    const response = await fetch(`${gw.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${gw.adminKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const viewsOf = async (accountId: string): Promise<AuditRow[]> => {
    const { status, body } = await admin('GET', `/admin/audit?target=account:${accountId}&action=personal_data.viewed`);
    expect(status).toBe(200);
    return body['data'] as AuditRow[];
  };

  beforeAll(async () => {
    gw = await startTestGateway({ models: MODELS });
    for (const person of people) {
      const created = await admin('POST', '/admin/accounts', person);
      expect(created.status).toBe(201);
      ids.push(created.body['account_id'] as string);
    }
  });
  afterAll(() => gw.stop());

  test('creating accounts is not a view: nothing recorded yet', async () => {
    for (const id of ids) expect(await viewsOf(id)).toEqual([]);
  });

  test("an operator opening an account's details: one entry, with the purpose given", async () => {
    const before = new Date().toISOString();
    const details = await admin('GET', `/admin/accounts/${ids[0]}?purpose=${encodeURIComponent('ticket 4711')}`);
    expect(details.body).toMatchObject({ display_name: people[0]!.display_name, email: people[0]!.email });
    const views = await viewsOf(ids[0]!);
    expect(views).toEqual([
      expect.objectContaining({
        actor: { kind: 'admin', id: 'admin' },
        action: 'personal_data.viewed',
        target: { kind: 'account', id: ids[0] },
        reason: 'ticket 4711',
        details: { what: 'account_details', fields: ['display_name', 'email'] },
      }),
    ]);
    expect(views[0]!.occurred_at >= before).toBe(true);
    expect(await viewsOf(ids[1]!)).toEqual([]);
  });

  test('a search by email: an entry for the account found, none for the others, and the query is not recorded', async () => {
    const found = await admin('GET', `/admin/accounts?q=${encodeURIComponent(people[1]!.email)}`);
    expect((found.body['data'] as { account_id: string }[]).map((a) => a.account_id)).toEqual([ids[1]]);
    expect(await viewsOf(ids[1]!)).toEqual([
      expect.objectContaining({ actor: { kind: 'admin', id: 'admin' }, details: { what: 'account_search', fields: ['display_name', 'email'] } }),
    ]);
    expect((await viewsOf(ids[0]!)).map((v) => v.details['what'])).toEqual(['account_details']);
  });

  test("the access events are in the account's own access stream, not its ledger stream, and hold no personal data", async () => {
    const { events } = await gw.gateway.store.readStream(personalDataAccessStreamId(ids[1]!));
    expect(events.map((e) => e.event.type)).toEqual(['PersonalDataViewed']);
    const { events: ledger } = await gw.gateway.store.readStream(accountStreamId(ids[1]!));
    expect(ledger.map((e) => e.event.type)).not.toContain('PersonalDataViewed');
    const pool = new Pool({ connectionString: gw.databaseUrl, max: 1 });
    try {
      const { rows } = await pool.query<{ r: string }>(`SELECT t::text AS r FROM events t WHERE type = 'PersonalDataViewed'`);
      const { rows: audit } = await pool.query<{ r: string }>(`SELECT t::text AS r FROM audit_log t WHERE action = 'personal_data.viewed'`);
      const text = [...rows, ...audit]
        .map((r) => r.r)
        .join('\n')
        .toLowerCase();
      expect(rows.length).toBe(2);
      for (const person of people) {
        expect(text).not.toContain(person.email.toLowerCase());
        expect(text).not.toContain(person.display_name.toLowerCase());
      }
    } finally {
      await pool.end();
    }
  });

  test("`tollgate export` (the real CLI) records the operator; `tollgate audit --target` answers who saw the customer's data, when", async () => {
    const exported = await runToCompletion(
      resolve(repoRoot, 'bin/tollgate'),
      ['export', '--account', ids[0]!, '--admin', 'dpo-7', '--purpose', 'data-access request 42'],
      {
        DATABASE_URL: gw.databaseUrl,
        LOG_LEVEL: 'warn',
      },
      60_000,
    );
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);
    expect(JSON.parse(exported.stdout)).toMatchObject({ account_id: ids[0], personal_data: { email: people[0]!.email } });

    const audit = await runToCompletion(
      resolve(repoRoot, 'bin/tollgate'),
      ['audit', '--target', `account:${ids[0]}`, '--action', 'personal_data.viewed', '--json'],
      {
        DATABASE_URL: gw.databaseUrl,
        LOG_LEVEL: 'warn',
      },
      60_000,
    );
    expect(audit.code).toBe(0);
    const entries = audit.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { actorKind: string; actorId: string; reason: string | null; details: { what: string }; occurredAt: string });
    expect(entries.map((e) => [`${e.actorKind}:${e.actorId}`, e.details.what, e.reason])).toEqual([
      ['admin:admin', 'account_details', 'ticket 4711'],
      ['admin:dpo-7', 'export', 'data-access request 42'],
    ]);
    expect(entries[0]!.occurredAt < entries[1]!.occurredAt).toBe(true);
    // The HTTP API gives the same answer.
    expect((await viewsOf(ids[0]!)).map((v) => `${v.actor.id}:${String(v.details['what'])}`)).toEqual(['admin:account_details', 'dpo-7:export']);
  });
});
