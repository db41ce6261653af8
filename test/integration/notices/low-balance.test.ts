import pg from 'pg';
import { spend } from '../../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { TestSmtpServer } from '../../support/smtp';
import { until } from '../../support/wait';
import { apiClient } from '../admin/http';

/**
 * Low balance as an operational notice: a low-balance alert (a threshold crossed downward) is
 * also a `low_balance` notice in the dashboard and an email to the account's contact, once,
 * whether or not the webhook was delivered; an account that turned `low_balance` off gets
 * neither the email nor the banner (the notice is still listed).
 */

const smtp = new TestSmtpServer();
let gw: TestGateway;
let pool: pg.Pool;
let call: ReturnType<typeof apiClient>;
const emailOf = (name: string) => `${name}.lowbalance@example.org`;

beforeAll(async () => {
  await smtp.start();
  gw = await startTestGateway({
    models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
    env: {
      SMTP_URL: smtp.url,
      TOLLGATE_ALERTS_ALLOW_LOOPBACK_HTTP: 'true',
      TOLLGATE_BILLING_POLL_INTERVAL_S: '0.1',
      TOLLGATE_ALERT_RETRY_BASE_S: '60',
      TOLLGATE_NOTICES_INTERVAL_S: '0.2',
      TOLLGATE_MAIL_POLL_INTERVAL_S: '0.2',
    },
  });
  pool = new pg.Pool({ connectionString: gw.databaseUrl, max: 2 });
  call = apiClient(gw.url);
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await gw?.stop();
  await smtp.stop();
});

async function customer(name: string): Promise<{ accountId: string; key: string }> {
  const opened = await call('POST', '/admin/accounts', gw.adminKey, {
    display_name: `Customer ${name}`,
    email: emailOf(name),
    promo_credit_usd: '20',
    promo_expires_at: '2031-01-01T00:00:00Z',
  });
  expect(opened.status).toBe(201);
  const key = await call('POST', `/admin/accounts/${opened.body.account_id}/keys`, gw.adminKey, { name: 'ci' });
  expect(key.status).toBe(201);
  // The webhook goes nowhere (nothing listens on port 9): the notice does not depend on it.
  const alerts = await call('PUT', '/v1/billing/alerts', key.body.key, { url: 'http://127.0.0.1:9/hook', thresholds: [{ usd: '5' }] });
  expect(alerts.status).toBe(200);
  return { accountId: opened.body.account_id, key: key.body.key };
}

const lowBalanceNotices = async (key: string, unread = false) =>
  (
    (await call('GET', `/v1/account/notices${unread ? '?unread=true' : ''}`, key)).body.data as {
      id: string;
      kind: string;
      essential: boolean;
      subject: string;
    }[]
  ).filter((n) => n.kind === 'low_balance');

test('crossing a low-balance threshold is a dashboard notice and one email; an account that turned low_balance off gets no email and no banner', async () => {
  const on = await customer('on');
  const off = await customer('off');
  const turnedOff = await call('PUT', '/v1/account/notice-preferences', off.key, { kinds: { low_balance: false } });
  expect(turnedOff.status).toBe(200);
  expect(turnedOff.body.data).toContainEqual({ kind: 'low_balance', essential: false, enabled: false });

  await spend(gw.gateway.ledger, on.accountId, '16'); // 4 left: below 5
  await spend(gw.gateway.ledger, off.accountId, '16');

  const mail = await smtp.waitFor(emailOf('on'));
  expect(mail.subject).toBe('Your balance is low: $4.000000 left');
  expect(mail.text).toContain('below your alert threshold of $5.000000');

  const [notice] = await until(async () => {
    const found = await lowBalanceNotices(on.key, true);
    return found.length > 0 ? found : undefined;
  });
  expect(notice).toMatchObject({ kind: 'low_balance', essential: false, subject: 'Your balance is low: $4.000000 left' });

  // The opted-out account's notice is decided and handled, but skipped: listed, not bannered, not mailed.
  const offNotice = await until(async () => {
    const found = await lowBalanceNotices(off.key);
    return found[0];
  });
  await until(
    async () => {
      const { rows } = await pool.query('SELECT skipped FROM notice_mailings WHERE notice_id = $1 AND account_id = $2', [offNotice.id, off.accountId]);
      return rows[0];
    },
    { what: 'the opted-out account handled by the mailer' },
  ).then((row) => expect(row).toEqual({ skipped: 'opted_out' }));
  expect(await lowBalanceNotices(off.key, true)).toEqual([]);
  expect(smtp.to(emailOf('off'))).toEqual([]);

  // Further spending while still below the threshold makes no new notice; the crossing made exactly one.
  await spend(gw.gateway.ledger, on.accountId, '1');
  const { rows: alerts } = await until(async () => {
    const result = await pool.query('SELECT notice_id FROM low_balance_notices WHERE account_id = $1', [on.accountId]);
    const handled = await pool.query(
      "SELECT count(*)::int AS n FROM notice_mailings m JOIN notices n USING (notice_id) WHERE n.kind = 'low_balance' AND m.account_id = $1",
      [on.accountId],
    );
    return handled.rows[0].n >= 1 ? result : undefined;
  });
  expect(alerts).toHaveLength(1);
  expect(await lowBalanceNotices(on.key)).toHaveLength(1);
  expect(smtp.to(emailOf('on')).filter((m) => m.subject.startsWith('Your balance is low'))).toHaveLength(1);
}, 120_000);
