import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { until } from '../../support/wait';
import { apiClient } from '../admin/http';

/**
 * Uptime from a scripted series of upstream failures, on a real gateway with an injected clock:
 * the probe's observations per minute give the uptime a hand calculation gives; a maintenance
 * window is left out; requests failed by the upstream (5xx) count against an endpoint, client
 * errors (4xx) do not; incidents are posted with updates, each a notice.
 */

const MINUTE = 60_000;
const DAY = 86_400_000;
const T0 = Math.floor(Date.now() / MINUTE) * MINUTE;
let now = new Date(T0 - 2 * DAY);
let up = true;
let chatStatus = 200;
let upstream: Server;
let baseUrl = '';
let tg: TestGateway;
let pool: pg.Pool;
let call: ReturnType<typeof apiClient>;
const admin = (method: string, path: string, body?: unknown) => call(method, path, tg.adminKey, body);

beforeAll(async () => {
  upstream = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [] }));
      return;
    }
    req.resume();
    req.on('end', () => {
      if (chatStatus !== 200) {
        res
          .writeHead(chatStatus, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { message: 'scripted', type: 'x', code: null, param: null } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: 'c1',
          object: 'chat.completion',
          created: 1,
          model: 'm',
          choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
        }),
      );
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  const models = ['steady', 'flaky'].map((id) => ({ id, upstreams: [{ baseUrl, capacity: 4 }], maxOutputTokens: 16, operations: ['chat' as const] }));
  tg = await startTestGateway({ models, env: { TOLLGATE_PROBE_INTERVAL_S: '0.05', TOLLGATE_NOTICES_INTERVAL_S: '0.2' }, clock: () => now });
  pool = new pg.Pool({ connectionString: tg.databaseUrl, max: 2 });
  call = apiClient(tg.url);
  for (const id of ['steady', 'flaky']) {
    await admin('POST', '/admin/models', { id, operations: ['chat'], max_output_tokens: 16 });
    await admin('POST', '/admin/prices', { model: id, operation: 'chat', input_usd_per_million: '1', output_usd_per_million: '1' });
  }
}, 120_000);

afterAll(async () => {
  await pool?.end();
  await tg?.stop();
  await new Promise((resolve) => upstream?.close(resolve));
});

/** Waits until the probe has recorded at least `n` observations of `model` in the clock's current minute. */
async function probesInMinute(model: string, n = 5): Promise<void> {
  await until(
    async () => {
      const { rows } = await pool.query("SELECT total FROM status_observations WHERE model = $1 AND endpoint = 'probe' AND minute = $2", [
        model,
        new Date(Math.floor(now.getTime() / MINUTE) * MINUTE),
      ]);
      return rows[0] && rows[0].total >= n ? true : undefined;
    },
    { what: `${n} probes of ${model} in the minute` },
  );
}

test('uptime from a scripted series of upstream failures matches the hand calculation', async () => {
  // Announced two days ahead: minute 5 is a maintenance window.
  const window = await admin('POST', '/admin/notices', {
    kind: 'maintenance',
    subject: 'Upgrade of the GPU hosts',
    body: 'Requests may fail for a minute.',
    effective_at: new Date(T0 + 5 * MINUTE).toISOString(),
    ends_at: new Date(T0 + 6 * MINUTE).toISOString(),
  });
  expect(window.status).toBe(201);

  // Minute by minute: the upstream is down in minutes 1, 2 and 5 (5 is in the window).
  const downMinutes = new Set([1, 2, 5]);
  for (let minute = 0; minute < 8; minute++) {
    now = new Date(T0 + minute * MINUTE + 1_000);
    up = !downMinutes.has(minute);
    // The first probe of a minute may have started before the switch: enough probes that a stale one cannot tip the minute.
    await probesInMinute('steady', 6);
  }
  up = true;
  now = new Date(T0 + 8 * MINUTE + 1_000);
  await probesInMinute('steady', 1);

  const status = await call('GET', '/status.json', null);
  expect(status.status).toBe(200);
  const steady = status.body.models.find((m: { id: string }) => m.id === 'steady');
  // By hand: 30 days of minutes less the 1 maintenance minute, 2 of them down.
  const round = (x: number) => Math.round(x * 1e6) / 1e6;
  expect(steady).toMatchObject({
    state: 'operational',
    down_minutes_30d: 2,
    uptime_30d: round(1 - 2 / (30 * 1440 - 1)),
    uptime_90d: round(1 - 2 / (90 * 1440 - 1)),
    meets_target_30d: true,
  });
  expect(status.body.target).toBe(0.995);
  expect(status.body.maintenance).toEqual([expect.objectContaining({ id: window.body.id, subject: 'Upgrade of the GPU hosts', in_progress: false })]);
}, 180_000);

test('an upstream 5xx counts against the endpoint, a client error does not', async () => {
  const account = await admin('POST', '/admin/accounts', {
    display_name: 'S',
    email: 's@example.org',
    promo_credit_usd: '5',
    promo_expires_at: '2099-01-01T00:00:00Z',
  });
  const key = (await admin('POST', `/admin/accounts/${account.body.account_id}/keys`, { name: 'k' })).body.key;
  const ask = () => call('POST', '/v1/chat/completions', key, { model: 'flaky', messages: [{ role: 'user', content: 'x' }], max_tokens: 4 });
  chatStatus = 200;
  expect((await ask()).status).toBe(200);
  chatStatus = 500;
  expect((await ask()).status).toBeGreaterThanOrEqual(500);
  chatStatus = 400;
  expect((await ask()).status).toBe(400);
  chatStatus = 200;
  const flaky = await until(
    async () => {
      const body = (await call('GET', '/status.json', null)).body;
      const m = body.models.find((x: { id: string }) => x.id === 'flaky');
      const chat = m?.endpoints.find((e: { endpoint: string }) => e.endpoint === 'chat');
      return chat?.requests_30d === 3 ? chat : undefined;
    },
    { what: 'three chat requests counted' },
  );
  expect(flaky).toEqual({ endpoint: 'chat', requests_30d: 3, failed_30d: 1, availability_30d: Math.round((2 / 3) * 1e6) / 1e6 });
});

test('an operator posts an incident and updates; each is a notice, the status page shows them', async () => {
  const incident = await admin('POST', '/admin/notices', { kind: 'incident', subject: 'Errors on flaky', body: 'Investigating elevated errors.' });
  expect(incident.status).toBe(201);
  const update = await admin('POST', `/admin/incidents/${incident.body.id}/updates`, { body: 'Fixed the upstream; watching.', resolved: true });
  expect(update.status).toBe(201);
  expect((await admin('POST', '/admin/incidents/incident-nope/updates', { body: 'x' })).status).toBe(404);
  const shown = await until(
    async () => {
      const body = (await call('GET', '/status.json', null)).body;
      const i = body.incidents.find((x: { id: string }) => x.id === incident.body.id);
      return i?.updates.length === 2 ? i : undefined;
    },
    { what: 'the incident with its update' },
  );
  expect(shown).toMatchObject({ subject: 'Errors on flaky', resolved_at: expect.any(String) });
  expect(shown.updates.map((u: { body: string }) => u.body)).toEqual(['Investigating elevated errors.', 'Fixed the upstream; watching.']);
  const adminView = await admin('GET', '/admin/status');
  expect(adminView.body.incidents[0].id).toBe(incident.body.id);
  const notices = await admin('GET', '/admin/notices');
  expect(notices.body.data.map((n: { id: string }) => n.id)).toEqual(expect.arrayContaining([incident.body.id, update.body.id]));
});
