import { runRetention } from '../../src/compliance/retention';
import { verifyFinance } from '../../src/finance/verify';
import type { DomainEvent } from '../../domain/events';
import { requestLogStreamId } from '../../domain/request-log';
import { START, type RecordedEvent } from '../../src/ports/event-store';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, addModel, dumpDatabase, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { until } from '../support/wait';

/**
 * The privacy policy: "API request logs are retained for 90 days" and "Wallet transaction records
 * are retained indefinitely". A real request through the gateway leaves its metadata (upstream,
 * HTTP status, timings) in the request log only; its money in the wallet. After 90 days (a
 * scavenge run with a clock 91 days on) the upstream is in no row of any table, the only rows
 * naming the request are its two wallet events, the whole global log (every stream) holds no
 * request-log entry and names the request only in those wallet events, whose fields are money
 * facts and nothing else, /v1/account/requests shows no metadata for it, and the wallet still
 * holds its amounts, with `verify` clean.
 */

const DAY_MS = 86_400_000;
let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
  });
  await addModel(gw.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 64);
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

it('90 days after a request its metadata is in no table and no stream; its amounts stay in the wallet', async () => {
  const { ledger, store, settlements } = gw.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId, ['inference', 'account_read']);
  const client = openAiClient(gw.url, secret);
  await client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hello' }] });
  await settlements.settled(accountId);

  const settled = (await accountEvents(ledger, accountId)).find((e) => e.type === 'ReservationSettled');
  if (settled?.type !== 'ReservationSettled') throw new Error('the request was not settled');
  const requestId = settled.data.requestId;
  const logStream = requestLogStreamId(accountId, new Date(settled.metadata.occurredAt).toISOString().slice(0, 10));
  const upstreamUrl = upstream.baseUrl.replace(/\/$/, '');

  // Today: the wallet event carries money only; the request log has the metadata, with a 90-day maximum age.
  expect(settled.data).not.toHaveProperty('request');
  expect(JSON.stringify(settled, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))).not.toContain(upstreamUrl);
  const logged = (await store.readStream(logStream)).events.map((e) => e.event);
  expect(logged).toEqual([
    expect.objectContaining({
      type: 'RequestLogged',
      data: expect.objectContaining({ requestId, upstream: expect.stringContaining(upstreamUrl), httpStatus: 200 }),
    }),
  ]);
  expect(await store.streamMaxAge(logStream)).toBe(90 * 86_400);
  const listed = async () => {
    const res = await fetch(`${gw.url}/v1/account/requests`, { headers: { authorization: `Bearer ${secret}` } });
    expect(res.status).toBe(200);
    return ((await res.json()) as { data: { request_id: string; upstream: string | null; http_status: number | null; cost_usd: string }[] }).data;
  };
  expect(await listed()).toEqual([expect.objectContaining({ request_id: requestId, upstream: expect.stringContaining(upstreamUrl), http_status: 200 })]);
  expect((await dumpDatabase(gw.databaseUrl)).rows.filter((row) => row.includes(upstreamUrl)).length).toBeGreaterThan(0);

  // 89 days on, nothing is due yet.
  expect(store.scavenge).toBeDefined();
  expect(await store.scavenge!(new Date(Date.now() + 89 * DAY_MS))).toEqual({ deletedEvents: 0, streams: 0 });
  expect((await store.readStream(logStream)).events).toHaveLength(1);

  // 91 days on, the request log entry is gone from the stream and from every table.
  const scavenged = await store.scavenge!(new Date(Date.now() + 91 * DAY_MS));
  expect(scavenged.deletedEvents).toBeGreaterThanOrEqual(1);
  expect((await store.readStream(logStream)).events).toEqual([]);
  const { rows } = await dumpDatabase(gw.databaseUrl);
  expect(rows.filter((row) => row.includes(upstreamUrl))).toEqual([]);
  expect(rows.filter((row) => row.includes('RequestLogged') && row.includes(requestId))).toEqual([]);

  // Every table: the only rows naming the request are its two wallet events (the read models keep
  // money per day, not per request), and none holds its metadata.
  const holding = rows.filter((row) => row.includes(requestId));
  expect(holding.map((row) => /^events: \([^,]+,([^,]+),\d+,\d+,\d+,(\w+),/.exec(row)?.slice(1))).toEqual([
    [`account-${accountId}`, 'ReservationPlaced'],
    [`account-${accountId}`, 'ReservationSettled'],
  ]);
  for (const row of holding) expect(row).not.toMatch(/RequestLogged|upstream|latency|timeToFirstToken|httpStatus/i);
  // Every stream, read from the start of the global log: no request-log entry is left for it, and
  // the events that name it are its wallet events, holding money facts and nothing else.
  const all: RecordedEvent<DomainEvent>[] = [];
  for (let from = START; ; ) {
    const batch = await store.readAll(from, { maxCount: 1_000 });
    all.push(...batch);
    if (batch.length < 1_000) break;
    from = batch[batch.length - 1]!.position;
  }
  expect(all.length).toBeGreaterThan(5);
  expect(all.filter((e) => e.type === 'RequestLogged')).toEqual([]);
  const naming = all.filter((e) => JSON.stringify(e.event, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)).includes(requestId));
  expect(naming.map((e) => [e.streamId, e.type])).toEqual([
    [`account-${accountId}`, 'ReservationPlaced'],
    [`account-${accountId}`, 'ReservationSettled'],
  ]);
  expect(Object.keys(naming[0]!.event.data).sort()).toEqual(['amount', 'expiresAt', 'instanceId', 'keyId', 'model', 'operation', 'priceVersion', 'requestId']);
  expect(Object.keys(naming[1]!.event.data).sort()).toEqual([
    'actualCost',
    'fromPromo',
    'fromPurchased',
    'keyId',
    'model',
    'operation',
    'outcome',
    'priceVersion',
    'requestId',
    'reservedAmount',
    'usage',
  ]);
  expect(Object.keys((naming[1]!.event.data as { usage: object }).usage).sort()).toEqual(['estimated', 'inputTokens', 'outputTokens']);

  // The wallet keeps the amounts, unchanged; the request list still shows the cost, with no metadata.
  const walletNow = (await accountEvents(ledger, accountId)).find((e) => e.type === 'ReservationSettled');
  expect(walletNow).toEqual(settled);
  expect(await listed()).toEqual([expect.objectContaining({ request_id: requestId, upstream: null, http_status: null, latency_ms: null })]);
  const report = await until(
    async () => {
      const r = await verifyFinance(gw.gateway.database.pool, store);
      return r.ok ? r : undefined;
    },
    { what: 'verify to find every cent' },
  );
  expect(report.differences).toEqual([]);
});

it("the usage read model's latency of a day goes with the request log's period; its requests, tokens and cost stay", async () => {
  const { ledger, settlements, database, vault } = gw.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  await openAiClient(gw.url, secret).chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hello' }] });
  await settlements.settled(accountId);
  type Row = { day: string; requests: string; input_tokens: string; output_tokens: string; cost: string; latency_ms_sum: string; latency_count: string };
  const usage = async () =>
    (
      await database.pool.query<Row>(
        `SELECT to_char(day, 'YYYY-MM-DD') AS day, requests::text, input_tokens::text, output_tokens::text, cost::text,
                latency_ms_sum::text, latency_count::text FROM usage_daily WHERE account_id = $1`,
        [accountId],
      )
    ).rows;
  // The request log's entry reaches the usage projection (its latency) after the settlement.
  const [today] = await until(
    async () => {
      const rows = await usage();
      return rows.length === 1 && rows[0]!.latency_count === '1' ? rows : undefined;
    },
    { what: 'the request latency in usage_daily' },
  );
  expect(today).toMatchObject({ requests: '1', latency_count: '1' });
  expect(BigInt(today!.cost)).toBeGreaterThan(0n);
  const day = Date.parse(`${today!.day}T00:00:00Z`);

  // Until the day's first moment has passed the 90 days, the latency stays.
  const early = await runRetention({ pool: database.pool, ledger, vault }, { now: new Date(day + 90 * DAY_MS - 1).toISOString() });
  expect(early.usageLatencyCleared).toBe(0);
  expect(await usage()).toEqual([today]);
  // Then it goes, and only it: the money facts are the wallet's, kept forever.
  const due = await runRetention({ pool: database.pool, ledger, vault }, { now: new Date(day + 90 * DAY_MS + 1).toISOString() });
  expect(due.usageLatencyCleared).toBeGreaterThanOrEqual(1);
  expect(await usage()).toEqual([{ ...today, latency_ms_sum: '0', latency_count: '0' }]);
});
