import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_DELIVERY_ATTEMPTS } from '../../../src/process-managers/low-balance-alerts';
import { dumpDatabase, issueKey, openAccount, topUp, spend as spendOnLedger } from '../../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { until } from '../../support/wait';

interface Received {
  readonly path: string;
  readonly body: string;
  readonly signature: string | undefined;
}

/** The customer's endpoint: records what arrives; answers each path's scripted statuses, then 200. */
class Receiver {
  readonly received: Received[] = [];
  readonly script = new Map<string, number[]>();
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const path = req.url ?? '/';
        this.received.push({ path, body, signature: req.headers['tollgate-signature'] as string | undefined });
        const status = this.script.get(path)?.shift() ?? 200;
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  at(path: string): Received[] {
    return this.received.filter((r) => r.path === path);
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}

/** What a customer would write: recompute the HMAC over "<t>.<raw body>" and compare. */
function verify(secret: string, received: Received): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(received.signature ?? '');
  if (!match) return false;
  const expected = createHmac('sha256', secret).update(`${match[1]}.${received.body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex')) && Math.abs(Date.now() / 1_000 - Number(match[1])) < 300;
}

describe('low-balance alerts', () => {
  let gw: TestGateway;
  const receiver = new Receiver();

  beforeAll(async () => {
    await receiver.start();
    gw = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 10, operations: ['chat'] }],
      env: { TOLLGATE_ALERTS_ALLOW_LOOPBACK_HTTP: 'true', TOLLGATE_BILLING_POLL_INTERVAL_S: '0.05', TOLLGATE_ALERT_RETRY_BASE_S: '0.1' },
    });
  });
  afterAll(async () => {
    await gw.stop();
    await receiver.stop();
  });

  const spend = (accountId: string, costUsd: string) => spendOnLedger(gw.gateway.ledger, accountId, costUsd, 'm');

  /** The alert subscriber has seen everything written so far (so "no notice" is a real no). */
  async function caughtUp(): Promise<void> {
    const head = await gw.gateway.store.latestPosition();
    await until(async () => {
      const { rows } = await gw.gateway.database.pool.query<{ tx: string; seq: string }>(
        "SELECT tx::text, seq::text FROM checkpoints WHERE name = 'low-balance-alerts'",
      );
      const row = rows[0];
      if (!row) return undefined;
      return BigInt(row.tx) > head.tx || (BigInt(row.tx) === head.tx && BigInt(row.seq) >= head.seq) ? true : undefined;
    });
  }

  async function customer(path: string, thresholds: unknown[]) {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '20' });
    const key = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
    const headers = { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' };
    await caughtUp();
    const response = await fetch(`${gw.url}/v1/billing/alerts`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ url: `${receiver.url}${path}`, thresholds }),
    });
    expect(response.status).toBe(200);
    const body = (await response.json()) as { signing_secret: string; thresholds: unknown };
    return { accountId, headers, secret: body.signing_secret, configured: body };
  }

  test('crossing a threshold downward POSTs a signed notice; it fires again only after the balance went back above', async () => {
    const { accountId, headers, secret, configured } = await customer('/a', [{ percent_of_last_top_up: 50 }, { usd: '3' }]);
    expect(configured.thresholds).toEqual([{ percent_of_last_top_up: 50 }, { usd: '3.000000' }]);
    expect(secret).toMatch(/^tgwhsec_/);

    await spend(accountId, '11'); // 9 left: below 50% of the last top-up (10)
    const [first] = await until(() => (receiver.at('/a').length >= 1 ? receiver.at('/a') : undefined));
    expect(verify(secret, first!)).toBe(true);
    expect(verify('tgwhsec_wrong', first!)).toBe(false);
    const notice = JSON.parse(first!.body) as Record<string, unknown>;
    expect(notice).toEqual({
      notice_id: expect.stringMatching(/^lbn_/),
      account_id: accountId,
      threshold: { kind: 'percent_of_last_top_up', percent: 50, amount_usd: '10.000000' },
      available_usd: '9.000000',
      occurred_at: expect.any(String),
    });

    await spend(accountId, '1'); // 8: still below 10, above 3: nothing new
    await caughtUp();
    await spend(accountId, '6'); // 2: below 3
    await until(() => (receiver.at('/a').length >= 2 ? true : undefined));
    await spend(accountId, '1'); // 1: below both, already told
    await topUp(gw.gateway.ledger, accountId, '10'); // 11: above both (50% of 10 = 5)
    await spend(accountId, '9'); // 2: below both again
    await until(() => (receiver.at('/a').length >= 4 ? true : undefined));
    await caughtUp();
    await new Promise((resolve) => setTimeout(resolve, 300));
    const bodies = receiver.at('/a').map((r) => JSON.parse(r.body) as { threshold: { kind: string }; available_usd: string });
    const seen = bodies.map((b) => `${b.threshold.kind} ${b.available_usd}`);
    expect(seen.slice(0, 2)).toEqual(['percent_of_last_top_up 9.000000', 'usd 2.000000']);
    // One settlement crossed both again: their notices are delivered concurrently, in either order.
    expect(seen.slice(2).sort()).toEqual(['percent_of_last_top_up 2.000000', 'usd 2.000000']);
    expect(receiver.at('/a').every((r) => verify(secret, r))).toBe(true);

    const listed = (await (await fetch(`${gw.url}/v1/billing/alerts/notices`, { headers })).json()) as {
      data: { status: string; attempts: { http_status: number; outcome: string }[] }[];
    };
    expect(listed.data).toHaveLength(4);
    expect(listed.data.every((n) => n.status === 'delivered' && n.attempts.length === 1 && n.attempts[0]!.http_status === 200)).toBe(true);

    // The secret is shown once and kept only encrypted: in no row, no log line.
    const dump = await dumpDatabase(gw.databaseUrl);
    expect(dump.rows.filter((row) => row.includes(secret))).toEqual([]);
    expect(gw.logLines.filter((line) => line.includes(secret))).toEqual([]);
    const shown = (await (await fetch(`${gw.url}/v1/billing/alerts`, { headers })).json()) as Record<string, unknown>;
    expect(shown).not.toHaveProperty('signing_secret');
  });

  test("only a fall crosses downward: thresholds stored before the subscriber reads the account's opening (at 0) do not fire on it", async () => {
    // What a fast sign-up can do: the thresholds are saved while the subscriber has not yet read
    // the opening. Stored here before the account exists, so the order is certain.
    const accountId = `acct_lb_${Date.now().toString(36)}`;
    await gw.gateway.database.pool.query(
      `INSERT INTO low_balance_alert_settings (account_id, url, thresholds, secret_ciphertext) VALUES ($1, 'http://127.0.0.1:9/none', $2, 'unused')`,
      [accountId, JSON.stringify([{ kind: 'usd', amount: '5000000' }])],
    );
    await openAccount(gw.gateway.ledger, { accountId, topUpUsd: '20' });
    await caughtUp();
    const notices = () =>
      gw.gateway.database.pool.query<{ available: string }>('SELECT available::text FROM low_balance_notices WHERE account_id = $1', [accountId]);
    expect((await notices()).rows).toEqual([]);
    await spend(accountId, '16'); // 4 left: below 5, by a fall
    await caughtUp();
    expect((await notices()).rows).toEqual([{ available: '4000000' }]);
  });

  test('a failed delivery is retried with backoff and every attempt is recorded', async () => {
    receiver.script.set('/flaky', [500, 503]);
    const { accountId, headers, secret } = await customer('/flaky', [{ usd: '10' }]);
    await spend(accountId, '11');
    const [notice] = await until(async () => {
      const listed = (await (await fetch(`${gw.url}/v1/billing/alerts/notices`, { headers })).json()) as {
        data: { status: string; attempts: { attempt: number; http_status: number; outcome: string; attempted_at: string }[] }[];
      };
      return listed.data[0]?.status === 'delivered' ? listed.data : undefined;
    });
    expect(notice!.attempts.map((a) => [a.attempt, a.http_status, a.outcome])).toEqual([
      [1, 500, 'failed'],
      [2, 503, 'failed'],
      [3, 200, 'delivered'],
    ]);
    // Backoff: the second wait (0.2 s) is longer than the first (0.1 s).
    const at = notice!.attempts.map((a) => Date.parse(a.attempted_at));
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(100);
    expect(at[2]! - at[1]!).toBeGreaterThanOrEqual(200);
    // The same notice each time (same id, same body), all signed.
    const got = receiver.at('/flaky');
    expect(got).toHaveLength(3);
    expect(new Set(got.map((r) => r.body)).size).toBe(1);
    expect(got.every((r) => verify(secret, r))).toBe(true);
  });

  test(`delivery gives up after ${MAX_DELIVERY_ATTEMPTS} attempts`, async () => {
    receiver.script.set(
      '/down',
      Array.from({ length: 10 }, () => 500),
    );
    const { accountId, headers } = await customer('/down', [{ usd: '10' }]);
    await spend(accountId, '11');
    const [notice] = await until(
      async () => {
        const listed = (await (await fetch(`${gw.url}/v1/billing/alerts/notices`, { headers })).json()) as { data: { status: string; attempts: unknown[] }[] };
        return listed.data[0]?.status === 'failed' ? listed.data : undefined;
      },
      { timeoutMs: 12_000 },
    );
    expect(notice!.attempts).toHaveLength(MAX_DELIVERY_ATTEMPTS);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.at('/down')).toHaveLength(MAX_DELIVERY_ATTEMPTS);
  });

  test('the callback must be HTTPS (loopback HTTP only when the test flag allows it) and thresholds are validated', async () => {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '20' });
    const key = await issueKey(gw.gateway.keys, accountId, ['account_read', 'account_write']);
    const put = (body: unknown) =>
      fetch(`${gw.url}/v1/billing/alerts`, {
        method: 'PUT',
        headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    expect((await put({ url: 'http://example.com/hook', thresholds: [{ usd: '5' }] })).status).toBe(400);
    expect((await put({ url: 'https://user:pw@example.com/hook', thresholds: [{ usd: '5' }] })).status).toBe(400);
    expect((await put({ url: 'https://example.com/hook', thresholds: [] })).status).toBe(400);
    expect((await put({ url: 'https://example.com/hook', thresholds: [{ percent_of_last_top_up: 150 }] })).status).toBe(400);
    expect((await put({ url: 'https://example.com/hook', thresholds: [{ usd: '5' }, { percent_of_last_top_up: 10 }] })).status).toBe(200);
  });
});
