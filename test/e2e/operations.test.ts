import { startMockLlm, type MockLlm } from '../support/mock-llm';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { addModel, issueKey, openAccount } from '../support/e2e-setup';

describe('operations: health, readiness, metrics and the request log', () => {
  let llm: MockLlm;
  let gw: TestGateway;
  let down: TestGateway;

  beforeAll(async () => {
    llm = await startMockLlm();
    gw = await startTestGateway({ models: [{ id: 'm', upstreams: [{ baseUrl: llm.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }] });
    await addModel(gw.gateway.ledger, 'm', { chat: { input: '1', output: '2' } });
    // A gateway whose only upstream refuses connections: alive, not ready.
    down = await startTestGateway({
      models: [{ id: 'm', upstreams: [{ baseUrl: 'http://127.0.0.1:9/v1', capacity: 1 }], maxOutputTokens: 64, operations: ['chat'] }],
    });
  });
  afterAll(async () => {
    await gw?.stop();
    await down?.stop();
    await llm?.stop();
  });

  test('healthz answers while alive; readyz needs the database and an upstream', async () => {
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    expect(await (await fetch(`${gw.url}/readyz`)).json()).toEqual({ status: 'ready', database: 'ok', upstreams: 'ok', global_log: 'ok' });
    expect((await fetch(`${down.url}/healthz`)).status).toBe(200);
    const notReady = await fetch(`${down.url}/readyz`);
    expect(notReady.status).toBe(503);
    expect(await notReady.json()).toEqual({ status: 'not ready', database: 'ok', upstreams: 'none reachable', global_log: 'ok' });
  });

  test('one JSON log line per request with metadata only, and Prometheus metrics for requests, tokens, reservations and latencies', async () => {
    const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
    const key = await issueKey(gw.gateway.keys, accountId);
    const response = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json', 'x-request-id': 'ops-test-request-1' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'metrics please' }] }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('ops-test-request-1');
    await gw.gateway.settlements.settled(accountId);

    const line = gw.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.requestId === 'ops-test-request-1');
    expect(line).toMatchObject({ route: '/v1/chat/completions', status: 200, accountId, model: 'm', inputTokens: 11, outputTokens: 7 });
    expect(typeof line!.latencyMs).toBe('number');
    expect(key.secret.startsWith(String(line!.keyPrefix))).toBe(true);
    expect(String(line!.keyPrefix).length).toBeLessThanOrEqual(12);
    expect(JSON.stringify(line)).not.toContain('metrics please');

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/tollgate_http_requests_total\{route="\/v1\/chat\/completions",status="200",model="m"\} 1/);
    expect(metrics).toMatch(/tollgate_tokens_total\{model="m",direction="input"\} 11/);
    expect(metrics).toMatch(/tollgate_tokens_total\{model="m",direction="output"\} 7/);
    expect(metrics).toMatch(/tollgate_reservations_open 0/);
    expect(metrics).toMatch(/tollgate_upstream_latency_seconds_count\{model="m"\} 1/);
    const appends = /tollgate_eventstore_append_seconds_count (\d+)/.exec(metrics);
    expect(Number(appends?.[1])).toBeGreaterThanOrEqual(2); // the reservation and its settlement, at least
  });
});
