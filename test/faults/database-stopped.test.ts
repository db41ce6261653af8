import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPostgresEventStore } from '../../adapters/eventstore/postgres';
import { createPool } from '../../adapters/postgres/pool';
import { DEFAULT_ACCOUNT_POLICY } from '../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../domain/events';
import { ApiKeys } from '../../src/api-keys';
import { systemMetadata } from '../../src/command-metadata';
import { createLedger } from '../../src/ledger';
import { startStoppablePostgres, type StoppablePostgres } from '../support/embedded-postgres-process';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, freePort, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, addModel, issueKey, openAccount, sleep } from '../support/e2e-setup';
import { moneyOf, projectedBalance, reservationEndings, runVerify, waitFor } from '../support/ledger-checks';

/**
 * The database is stopped for 10 seconds under load, then started again (its own embedded
 * PostgreSQL, not the suite's shared one). While it is down, requests fail fast with 503 in
 * OpenAI's shape: no 500, no stack trace, no hang (every client keeps getting answers while the
 * database is still down). Once it is back the gateway serves again on its own, and every request
 * after the first success succeeds; no event is lost or duplicated; projections catch up; and the
 * global-log subscription resumes (a key revoked elsewhere after the outage is refused here).
 * The verdicts are order and effect, not elapsed time, so a slow machine does not change them.
 */

const MODEL = 'llama';
const OUTAGE_MS = 10_000;
const WORKERS = 8;

let dataDir: string;
let port: number;
let pg: StoppablePostgres;
let upstream: MockLlm;
let tg: TestGateway;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'tollgate-fault-pg-'));
  port = await freePort();
  pg = await startStoppablePostgres(dataDir, port);
  upstream = await startMockLlm(defaultMockLlmConfig({ chunkSize: 16, chunkIntervalMs: 20 }));
  tg = await startTestGateway({
    models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat'] }],
    databaseUrl: pg.connectionString,
    // The 10 s outage outlasts nothing that matters: this instance never expires its own holds,
    // settlements retry until the database is back, and a placement of unknown outcome is released.
    env: { TOLLGATE_EXPIRY_INTERVAL_S: '1', TOLLGATE_DB_CONNECT_TIMEOUT_S: '2' },
  });
  await addModel(tg.gateway.ledger, MODEL, { chat: { input: '1', output: '2' } }, 256);
}, 60_000);

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
  await pg?.stop();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

interface Sent {
  readonly worker: number;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly status: number;
  readonly text: string;
  readonly stream: boolean;
}

function isOpenAiError(text: string): boolean {
  try {
    const { error } = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } };
    return typeof error?.message === 'string' && typeof error.type === 'string' && 'param' in error && 'code' in error;
  } catch {
    return false;
  }
}

it(`database stopped for ${OUTAGE_MS / 1_000} s under load: 503s without waiting for it, serving again on its own, nothing lost or doubled`, async () => {
  const { ledger, keys } = tg.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '50' });
  const { secret } = await issueKey(keys, accountId);
  const victim = await issueKey(keys, accountId); // revoked by another process after the outage

  const sent: Sent[] = [];
  let loading = true;
  const worker = async (w: number) => {
    for (let i = 0; loading; i++) {
      const stream = w % 4 === 0;
      const startedAt = performance.now();
      let status = 0;
      let text = '';
      try {
        const response = await fetch(`${tg.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: MODEL, stream, max_tokens: 32, messages: [{ role: 'user', content: `worker ${w} request ${i}` }] }),
          signal: AbortSignal.timeout(15_000),
        });
        status = response.status;
        text = await response.text();
      } catch (error) {
        text = `client error: ${(error as Error).name}`;
      }
      sent.push({ worker: w, startedAt, endedAt: performance.now(), status, text, stream });
      if (status !== 200) await sleep(50);
    }
  };
  const load = Promise.all(Array.from({ length: WORKERS }, (_, w) => worker(w)));

  // The database stops while requests are flowing (counted, not timed).
  await waitFor('requests served before the outage', async () => (sent.filter((s) => s.status === 200).length >= 20 ? true : undefined), 30_000, 50);
  const stoppingAt = performance.now();
  await pg.stop();
  const downAt = performance.now();
  // It stays down for the outage, and at least until every client has had three answers to
  // requests it sent while the database was down: a gateway that made requests wait for the
  // database (a hang) would leave them unanswered, and this wait would fail at its deadline.
  const answeredWhileDown = (w: number) => sent.filter((s) => s.worker === w && s.startedAt > downAt).length;
  await Promise.all([
    sleep(OUTAGE_MS),
    waitFor(
      'every client to get answers while the database is down',
      async () => (Array.from({ length: WORKERS }, (_, w) => answeredWhileDown(w)).every((n) => n >= 3) ? true : undefined),
      60_000,
      100,
    ),
  ]);
  const readyDuringOutage = await fetch(`${tg.url}/readyz`).then((r) => r.status);
  const restartingAt = performance.now();
  pg = await startStoppablePostgres(dataDir, port);
  const upAt = performance.now();
  // The gateway serves again on its own (no restart of it); load continues until 20 more were served.
  const firstSuccessAfter = await waitFor(
    'a request admitted after the database returned',
    async () => sent.find((s) => s.startedAt > upAt && s.status === 200),
    30_000,
    100,
  );
  await waitFor(
    'twenty requests served after the first success',
    async () => (sent.filter((s) => s.startedAt > firstSuccessAfter.endedAt).length > 20 ? true : undefined),
    30_000,
    100,
  );
  loading = false;
  await load;

  // While down: only 503s in OpenAI's shape, answered while the database was still down; no
  // 500, no hang, no stack.
  const during = sent.filter((s) => s.startedAt > downAt && s.endedAt < restartingAt);
  expect(during.length).toBeGreaterThanOrEqual(3 * WORKERS);
  const statuses = (list: Sent[]) =>
    Object.fromEntries([...new Set(list.map((s) => s.status))].map((status) => [status, list.filter((s) => s.status === status).length]));
  expect(statuses(during)).toEqual({ 503: during.length });
  for (const s of during) expect(isOpenAiError(s.text)).toBe(true);
  expect(sent.some((s) => s.status === 500 || s.status === 0 || /\bat .+\.ts:\d+/.test(s.text))).toBe(false);
  expect(readyDuringOutage).toBe(503);

  // Serving steadily once back: every request sent after the first success succeeded.
  const recoveryMs = firstSuccessAfter.endedAt - upAt;
  const settled = sent.filter((s) => s.startedAt > firstSuccessAfter.endedAt);
  expect(settled.length).toBeGreaterThan(20);
  expect(statuses(settled)).toEqual({ 200: settled.length });
  expect((await fetch(`${tg.url}/readyz`)).status).toBe(200);

  // Nothing lost or doubled: every reservation ends exactly once (what was in flight when the
  // database went away settles late, or expires if its transaction's fate was unknown)...
  const ended = await waitFor(
    'every reservation to end',
    async () => {
      const endings = reservationEndings(await accountEvents(ledger, accountId));
      return endings.open.length === 0 ? endings : undefined;
    },
    45_000,
    500,
  );
  expect(ended.wrong).toEqual([]);
  const served = sent.filter((s) => s.status === 200).length;
  expect(ended.settled).toBeGreaterThanOrEqual(served);
  // ...event ids are unique...
  const client = createPool({ connectionString: pg.connectionString, max: 2 });
  try {
    const duplicates = await client.query('SELECT event_id FROM events GROUP BY event_id HAVING count(*) > 1');
    expect(duplicates.rows).toEqual([]);

    // ...and the projections have caught up with the log.
    const events = await accountEvents(ledger, accountId);
    const money = moneyOf(events);
    await waitFor(
      'the balances projection to catch up',
      async () => {
        const row = await projectedBalance(pg.connectionString, accountId);
        return row && row.purchased === money.balance && row.reserved === 0n ? row : undefined;
      },
      10_000,
    );
    const verified = await runVerify(pg.connectionString);
    expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });

    // The global-log subscription came back too: a key revoked by another process is refused here.
    const otherProcess = createLedger(createPostgresEventStore<DomainEvent>(client, domainEventCodec), DEFAULT_ACCOUNT_POLICY);
    expect((await fetch(`${tg.url}/v1/models`, { headers: { authorization: `Bearer ${victim.secret}` } })).status).toBe(200);
    expect((await new ApiKeys(otherProcess).revoke(victim.keyId, 'leaked', systemMetadata('test'))).ok).toBe(true);
    await waitFor(
      'the revocation to reach the gateway',
      async () => ((await fetch(`${tg.url}/v1/models`, { headers: { authorization: `Bearer ${victim.secret}` } })).status === 401 ? true : undefined),
      15_000,
      50,
    );

    const byStatus = statuses(sent);
    process.stdout.write(
      `database stopped: ${sent.length} requests (${JSON.stringify(byStatus)}); stop took ${Math.round(downAt - stoppingAt)} ms; ` +
        `${during.length} answered 503 during the ${OUTAGE_MS / 1_000} s outage, slowest in ${Math.round(Math.max(...during.map((s) => s.endedAt - s.startedAt)))} ms; ` +
        `first success ${Math.round(recoveryMs)} ms after the database returned; ${ended.placed} reservations: ${ended.settled} settled, ${ended.released} released, ${ended.expired} expired; ${verified.stdout.trim()}\n`,
    );
  } finally {
    await client.end();
  }
}, 120_000);
