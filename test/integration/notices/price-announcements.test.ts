import OpenAI from 'openai';
import pg from 'pg';
import { noticeStreamId } from '../../../domain/notice';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { startMockLlm, type MockLlm } from '../../support/mock-llm';
import { TestSmtpServer } from '../../support/smtp';
import { until } from '../../support/wait';
import { apiClient, type Answer } from '../admin/http';

/**
 * The catalogue and price-increase notices on real gateways (fresh database, mock-llm upstream)
 * with an injected wall clock: an increase scheduled 14 days out is announced to exactly the
 * accounts that used the model, once, across a restart and a second instance; sooner is refused
 * unless forced with a reason (audited); a model past its retirement date gets a 404 naming it.
 */

const MODEL = 'llama-notices';
const OTHER = 'mistral-notices';
const DAY = 86_400_000;
let upstream: MockLlm;
let first: TestGateway;
let second: TestGateway | undefined;
let pool: pg.Pool;
// Near the real date: usage is recorded by the day it happened, and the 90-day window is the clock's.
let now = new Date(Math.floor(Date.now() / 1000) * 1000);
const clock = () => now;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, first.adminKey, body);
const keys: Record<'a' | 'b' | 'c', { accountId: string; key: string }> = {} as never;

function expectError(answer: Answer, status: number, code: string): void {
  expect({ status: answer.status, code: answer.body?.error?.code }).toEqual({ status, code });
}

const models = [
  { id: MODEL, upstreams: [{ baseUrl: '', capacity: 8 }], maxOutputTokens: 64, operations: ['chat' as const] },
  { id: OTHER, upstreams: [{ baseUrl: '', capacity: 8 }], maxOutputTokens: 64, operations: ['chat' as const] },
];
const smtp = new TestSmtpServer();
const env: Record<string, string> = { TOLLGATE_NOTICES_INTERVAL_S: '0.2', TOLLGATE_INSTANCE_LEASE_S: '2', TOLLGATE_MAIL_POLL_INTERVAL_S: '0.2' };
const emailOf = (name: 'a' | 'b' | 'c') => `${name}.notices@example.org`;

beforeAll(async () => {
  upstream = await startMockLlm();
  await smtp.start();
  env['SMTP_URL'] = smtp.url;
  for (const m of models) m.upstreams[0]!.baseUrl = upstream.baseUrl;
  first = await startTestGateway({ models, env, clock });
  pool = new pg.Pool({ connectionString: first.databaseUrl, max: 2 });
  call = apiClient(first.url);
  for (const id of [MODEL, OTHER]) {
    expect((await admin('POST', '/admin/models', { id, operations: ['chat'], max_output_tokens: 64 })).status).toBe(201);
    expect((await admin('POST', '/admin/prices', { model: id, operation: 'chat', input_usd_per_million: '1', output_usd_per_million: '2' })).status).toBe(201);
  }
  for (const name of ['a', 'b', 'c'] as const) {
    const opened = await admin('POST', '/admin/accounts', {
      display_name: `Customer ${name}`,
      email: emailOf(name),
      promo_credit_usd: '5',
      promo_expires_at: '2031-01-01T00:00:00Z',
    });
    const key = await admin('POST', `/admin/accounts/${opened.body.account_id}/keys`, { name: 'ci' });
    keys[name] = { accountId: opened.body.account_id, key: key.body.key };
  }
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await second?.stop();
  await first?.stop();
  await upstream?.stop();
  await smtp.stop();
});

const ask = (key: string, model: string) =>
  new OpenAI({ baseURL: `${first.url}/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 8,
  });

describe('model catalogue', () => {
  test('the catalogue card shows in /v1/models, /v1/models/{id} and /pricing', async () => {
    const described = await admin('PUT', `/admin/models/${MODEL}/catalogue`, {
      description: 'A small chat model.',
      context_length: 8192,
      licence: 'Llama 3.1 Community Licence',
      rules_text: 'No use to build weapons.',
      rules_url: 'https://example.org/llama/aup',
      status: 'available',
    });
    expect(described.status).toBe(200);
    const card = {
      id: MODEL,
      description: 'A small chat model.',
      context_length: 8192,
      licence: 'Llama 3.1 Community Licence',
      model_rules: { text: 'No use to build weapons.', url: 'https://example.org/llama/aup' },
      status: 'available',
      retires_at: null,
    };
    const list = await new OpenAI({ baseURL: `${first.url}/v1`, apiKey: keys.a.key, maxRetries: 0 }).models.list();
    expect(list.data.find((m) => m.id === MODEL)).toMatchObject({ object: 'model', owned_by: 'tollgate', ...card });
    const one = await new OpenAI({ baseURL: `${first.url}/v1`, apiKey: keys.a.key, maxRetries: 0 }).models.retrieve(MODEL);
    expect(one).toMatchObject(card);
    const pricing = await call('GET', '/pricing', null);
    expect(pricing.body.models).toContainEqual(card);
  });

  test('a deprecated model without a retirement date is refused; one in the past too', async () => {
    const body = { description: 'x', context_length: 1, licence: 'MIT', rules_text: 'none', status: 'deprecated' };
    expectError(await admin('PUT', `/admin/models/${OTHER}/catalogue`, body), 400, 'missing_required_parameter');
    expectError(
      await admin('PUT', `/admin/models/${OTHER}/catalogue`, { ...body, retires_at: new Date(now.getTime() - 1).toISOString() }),
      409,
      'retirement_in_past',
    );
  });
});

describe('a price increase', () => {
  test('two accounts use the model, a third uses another', async () => {
    await ask(keys.a.key, MODEL);
    await ask(keys.b.key, MODEL);
    await ask(keys.c.key, OTHER);
    await until(
      async () => {
        const { rows } = await pool.query('SELECT count(DISTINCT account_id)::int AS n FROM usage_daily');
        return rows[0].n === 3 ? true : undefined;
      },
      { what: 'usage of all three accounts' },
    );
  });

  test('sooner than 14 days ahead is refused and nothing is set', async () => {
    const sooner = new Date(now.getTime() + 14 * DAY - 60_000).toISOString();
    const answer = await admin('POST', '/admin/prices', {
      model: MODEL,
      operation: 'chat',
      input_usd_per_million: '1.5',
      output_usd_per_million: '2',
      effective_at: sooner,
    });
    expectError(answer, 409, 'price_increase_notice_too_short');
    const listed = await admin('GET', '/admin/models');
    expect(listed.body.data.find((m: { id: string }) => m.id === MODEL).prices).toHaveLength(1);
  });

  test('a decrease applies at once without notice; no notice is published for it', async () => {
    const answer = await admin('POST', '/admin/prices', { model: OTHER, operation: 'chat', input_usd_per_million: '0.5', output_usd_per_million: '2' });
    expect(answer.status).toBe(201);
    expect(answer.body.increase).toBe(false);
  });

  test('14 days ahead is announced to exactly the accounts that used the model, once, across a restart and a second instance', async () => {
    const effective = new Date(now.getTime() + 14 * DAY).toISOString();
    const set = await admin('POST', '/admin/prices', {
      model: MODEL,
      operation: 'chat',
      input_usd_per_million: '1.5',
      output_usd_per_million: '2',
      effective_at: effective,
    });
    expect(set.status).toBe(201);
    expect(set.body).toMatchObject({ increase: true, effective_at: effective });
    const noticeId = `price-increase-v${set.body.version}`;

    const noticesOf = async (key: string) => (await call('GET', '/v1/account/notices', key)).body.data as { id: string; kind: string; read: boolean }[];
    await until(async () => ((await noticesOf(keys.a.key)).some((n) => n.id === noticeId) ? true : undefined), { what: 'the notice for account a' });
    expect((await noticesOf(keys.b.key)).map((n) => n.id)).toContain(noticeId);
    expect((await noticesOf(keys.c.key)).map((n) => n.id)).not.toContain(noticeId);

    // The scheduled price shows beside today's on /pricing.
    const pricing = await call('GET', '/pricing', null);
    expect(pricing.body.scheduled).toContainEqual(
      expect.objectContaining({ model: MODEL, effective_at: effective, input_usd_per_million: '1.500000', increase: true }),
    );

    // A restart, then a second instance on the same database: neither announces it again.
    await first.stop();
    first = await startTestGateway({ models, env, clock, databaseUrl: first.databaseUrl });
    call = apiClient(first.url);
    second = await startTestGateway({ models, env, clock, databaseUrl: first.databaseUrl });
    // Both have run their workers' passes by the time a later notice is announced by whichever holds the role.
    const later = new Date(now.getTime() + 20 * DAY).toISOString();
    const next = await admin('POST', '/admin/prices', {
      model: MODEL,
      operation: 'chat',
      input_usd_per_million: '1.6',
      output_usd_per_million: '2',
      effective_at: later,
    });
    await until(async () => ((await noticesOf(keys.a.key)).some((n) => n.id === `price-increase-v${next.body.version}`) ? true : undefined), {
      what: 'the second notice',
    });
    const events = await pool.query('SELECT count(*)::int AS n FROM events WHERE stream_id = $1', [noticeStreamId(noticeId)]);
    expect(events.rows[0].n).toBe(1);
    expect((await noticesOf(keys.a.key)).filter((n) => n.id === noticeId)).toHaveLength(1);

    // By email over real SMTP: to exactly the two accounts' contacts, once each, whatever restarted meanwhile.
    const subject = set.body && `Price increase for ${MODEL} (chat) from ${effective.slice(0, 10)}`;
    const secondSubject = `Price increase for ${MODEL} (chat) from ${later.slice(0, 10)}`;
    await smtp.waitFor(emailOf('a'), 2);
    await smtp.waitFor(emailOf('b'), 2);
    // Every mailing recorded means nothing more is on its way.
    await until(
      async () => {
        const { rows } = await pool.query(
          `SELECT count(*)::int AS n FROM notice_mailings m JOIN mail_outbox o ON o.email_id = m.email_id WHERE o.status = 'sent' AND m.notice_id LIKE 'price-increase-%'`,
        );
        return rows[0].n === 4 ? true : undefined;
      },
      { what: 'both price notices sent to both accounts' },
    );
    const increaseMails = smtp.received.filter((m) => m.subject === subject);
    expect(increaseMails.map((m) => m.to).sort()).toEqual([emailOf('a'), emailOf('b')]);
    expect(
      smtp.received
        .filter((m) => m.subject === secondSubject)
        .map((m) => m.to)
        .sort(),
    ).toEqual([emailOf('a'), emailOf('b')]);
    expect(smtp.to(emailOf('c')).filter((m) => m.subject.startsWith('Price increase'))).toEqual([]);
    expect(increaseMails[0]!.text).toContain('$1.500000 input');
  }, 120_000);

  test('sooner with a reason is accepted and audited with the reason', async () => {
    const sooner = new Date(now.getTime() + DAY).toISOString();
    const forced = await admin('POST', '/admin/prices', {
      model: OTHER,
      operation: 'chat',
      input_usd_per_million: '3',
      output_usd_per_million: '4',
      effective_at: sooner,
      short_notice_reason: 'upstream provider doubled its price',
    });
    expect(forced.status).toBe(201);
    expect(forced.body).toMatchObject({ increase: true, short_notice_reason: 'upstream provider doubled its price' });
    const audit = await until(
      async () => {
        const answer = await admin('GET', '/admin/audit?action=price.set');
        return answer.body.data.find((e: { reason: string | null }) => e.reason === 'upstream provider doubled its price');
      },
      { what: 'the audit entry' },
    );
    expect(audit).toMatchObject({ action: 'price.set', target: { kind: 'model', id: OTHER } });
  });
});

describe('preferences', () => {
  test('essential kinds cannot be turned off; a non-essential one can, and then is neither mailed nor bannered', async () => {
    const essential = await call('PUT', '/v1/account/notice-preferences', keys.c.key, { kinds: { price_increase: false } });
    expectError(essential, 409, 'notice_kind_essential');
    const off = await call('PUT', '/v1/account/notice-preferences', keys.c.key, { kinds: { incident: false } });
    expect(off.status).toBe(200);
    expect(off.body.data).toContainEqual({ kind: 'incident', essential: false, enabled: false });
    expect(off.body.data).toContainEqual({ kind: 'price_increase', essential: true, enabled: true });

    const posted = await admin('POST', '/admin/notices', { kind: 'incident', subject: 'Elevated errors on llama', body: 'We are looking into it.' });
    expect(posted.status).toBe(201);
    await smtp.waitFor(emailOf('a'), 3);
    await smtp.waitFor(emailOf('b'), 3);
    await until(
      async () => {
        const { rows } = await pool.query('SELECT count(*)::int AS n FROM notice_mailings WHERE notice_id = $1', [posted.body.id]);
        return rows[0].n === 3 ? true : undefined;
      },
      { what: 'the incident handled for all three accounts' },
    );
    const skipped = await pool.query('SELECT skipped FROM notice_mailings WHERE notice_id = $1 AND account_id = $2', [posted.body.id, keys.c.accountId]);
    expect(skipped.rows).toEqual([{ skipped: 'opted_out' }]);
    expect(smtp.to(emailOf('c')).filter((m) => m.subject === 'Elevated errors on llama')).toEqual([]);
    // Listed for c, but not in its banner (unread of kinds it receives).
    expect((await call('GET', '/v1/account/notices', keys.c.key)).body.data.map((n: { id: string }) => n.id)).toContain(posted.body.id);
    expect((await call('GET', '/v1/account/notices?unread=true', keys.c.key)).body.data.map((n: { id: string }) => n.id)).not.toContain(posted.body.id);
    // a reads it: gone from its banner.
    expect((await call('POST', `/v1/account/notices/${posted.body.id}/read`, keys.a.key)).status).toBe(200);
    expect((await call('GET', '/v1/account/notices?unread=true', keys.a.key)).body.data.map((n: { id: string }) => n.id)).not.toContain(posted.body.id);
  });

  test('maintenance is announced at least 24 hours ahead, a terms change 14 days ahead', async () => {
    const soon = new Date(now.getTime() + 23 * 3_600_000).toISOString();
    expectError(
      await admin('POST', '/admin/notices', { kind: 'maintenance', subject: 'Upgrade', body: 'Short.', effective_at: soon }),
      409,
      'notice_too_short',
    );
    const terms = new Date(now.getTime() + 13 * DAY).toISOString();
    expectError(
      await admin('POST', '/admin/notices', { kind: 'terms_change', subject: 'New terms', body: 'See.', effective_at: terms }),
      409,
      'notice_too_short',
    );
    const ok = new Date(now.getTime() + 25 * 3_600_000).toISOString();
    const posted = await admin('POST', '/admin/notices', {
      kind: 'maintenance',
      subject: 'Upgrade',
      body: 'Short.',
      effective_at: ok,
      ends_at: new Date(now.getTime() + 26 * 3_600_000).toISOString(),
    });
    expect(posted.status).toBe(201);
  });
});

describe('retirement', () => {
  test('past its retirement date a model gets a 404 naming the retirement', async () => {
    const retiresAt = new Date(now.getTime() + 15 * DAY).toISOString();
    const card = { description: 'Going away.', context_length: 4096, licence: 'Apache-2.0', rules_text: 'Apache licence terms.', status: 'deprecated' };
    // Less than 14 days' notice is refused, and changes nothing; forced with a reason, it is audited.
    const soon = new Date(now.getTime() + 13 * DAY).toISOString();
    const describedEvents = async () => (await pool.query("SELECT count(*)::int AS n FROM events WHERE type = 'ModelDescribed'")).rows[0].n as number;
    const before = await describedEvents();
    expectError(await admin('PUT', `/admin/models/${OTHER}/catalogue`, { ...card, retires_at: soon }), 409, 'retirement_notice_too_short');
    expect(await describedEvents()).toBe(before);
    expect((await call('GET', `/v1/models/${OTHER}`, keys.c.key)).body).toMatchObject({ id: OTHER, status: expect.not.stringMatching('deprecated') });
    const forced = await admin('PUT', `/admin/models/${OTHER}/catalogue`, {
      ...card,
      retires_at: soon,
      short_notice_reason: 'licence withdrawn by the vendor',
    });
    expect(forced.status).toBe(200);
    const audit = await until(
      async () =>
        (await admin('GET', '/admin/audit?action=model.described')).body.data.find(
          (e: { reason: string | null }) => e.reason === 'licence withdrawn by the vendor',
        ),
      { what: 'the audit entry of the forced retirement' },
    );
    expect(audit).toMatchObject({ action: 'model.described', target: { kind: 'model', id: OTHER } });
    // Postponing needs no reason.
    const described = await admin('PUT', `/admin/models/${OTHER}/catalogue`, { ...card, retires_at: retiresAt });
    expect(described.status).toBe(200);
    // Announced to the account that used it.
    await until(
      async () =>
        (await call('GET', '/v1/account/notices', keys.c.key)).body.data.some((n: { kind: string }) => n.kind === 'model_retirement') ? true : undefined,
      { what: 'the retirement notice' },
    );
    await ask(keys.c.key, OTHER); // still served before the date

    now = new Date(now.getTime() + 15 * DAY);
    const refused = await ask(keys.c.key, OTHER).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(OpenAI.NotFoundError);
    const error = refused as InstanceType<typeof OpenAI.NotFoundError>;
    expect(error.code).toBe('model_retired');
    expect(error.message).toContain(`was retired on ${retiresAt}`);
    const one = await call('GET', `/v1/models/${OTHER}`, keys.c.key);
    expect(one.status).toBe(404);
    expect(one.body.error.code).toBe('model_retired');
    const list = await call('GET', '/v1/models', keys.c.key);
    expect(list.body.data.map((m: { id: string }) => m.id)).not.toContain(OTHER);
  });
});
