import { Pool } from 'pg';
import { DEFAULT_ACCOUNT_POLICY } from '../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../domain/events';
import { requestCost, usd } from '../../domain/money';
import { createPostgresEventStore } from '../../adapters/eventstore/postgres';
import { migrate } from '../../adapters/postgres/migrate';
import { migrations } from '../../adapters/postgres/migrations';
import { ApiKeys } from '../../src/api-keys';
import { createLedger, type Ledger } from '../../src/ledger';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { accountEvents, addModel, eventsOfType, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { reservationEndings, runVerify, waitFor } from '../support/ledger-checks';

/**
 * Gateway instances hold leases; reservations record their instance (src/instances/lease.ts).
 * Real gateway processes (`dist/src/main.js`, as `npm start` runs it) on one real PostgreSQL database; no in-process gateway
 * takes part, so the only instances are the processes started here.
 *
 * - A 30 s stream under a 5 s lease is settled once at its real cost: its instance lives, so the
 *   expiry process (running every 0.5 s) never touches it.
 * - A request longer than the maximum request duration is ended by the gateway and settled for
 *   what was produced, never expired.
 * - The background workers run on one instance; SIGKILL it and the other takes them over, and
 *   expires the dead one's holds.
 */

const MODEL = 'llama';
const LEASE_S = 5;
// 8 characters every 500 ms: a 480-character answer streams for about 30 s.
const LONG_PROMPT = 'thirty s '.repeat(53).slice(0, 480);
const env = {
  TOLLGATE_INSTANCE_LEASE_S: String(LEASE_S),
  TOLLGATE_EXPIRY_INTERVAL_S: '0.5',
  TOLLGATE_MAX_REQUEST_DURATION_S: '120',
  TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: '60',
  TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '30',
};

let upstream: MockLlm;
let databaseUrl: string;
let modelsFile: string;
let pool: Pool;
let ledger: Ledger;
let keys: ApiKeys;
const processes: GatewayProcess[] = [];

interface LeaseRow {
  instance_id: string;
  pid: number;
  live: boolean;
}

async function leases(): Promise<LeaseRow[]> {
  const { rows } = await pool.query<LeaseRow>('SELECT instance_id, pid, lapses_at > now() AS live FROM instance_leases ORDER BY started_at');
  return rows;
}

async function workersHolder(): Promise<string | undefined> {
  const { rows } = await pool.query<{ instance_id: string }>(`SELECT instance_id FROM instance_roles WHERE role = 'workers'`);
  return rows[0]?.instance_id;
}

async function instanceOf(gateway: GatewayProcess): Promise<string> {
  const row = (await leases()).filter((l) => l.pid === gateway.pid).at(-1);
  if (!row) throw new Error(`no lease for pid ${gateway.pid}`);
  return row.instance_id;
}

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig({ chunkSize: 8, chunkIntervalMs: 500 }));
  databaseUrl = await createTestDatabase('fault_leases');
  pool = new Pool({ connectionString: databaseUrl, max: 4 });
  await migrate(pool, migrations);
  ledger = createLedger(createPostgresEventStore<DomainEvent>(pool, domainEventCodec), DEFAULT_ACCOUNT_POLICY);
  keys = new ApiKeys(ledger);
  await addModel(ledger, MODEL, { chat: { input: '1', output: '2' } }, 256);
  const models = [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 256 }], maxOutputTokens: 256, operations: ['chat' as const] }];
  modelsFile = writeModelsFile(models);
  // Started one after the other, so the first holds the workers role.
  processes.push(await startGatewayProcess({ databaseUrl, modelsFile, env }));
  processes.push(await startGatewayProcess({ databaseUrl, modelsFile, env }));
}, 180_000); // a safety net: three child processes on a loaded machine

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await pool?.end();
  await upstream?.stop();
});

it(`a 30 s stream under a ${LEASE_S} s lease is settled once at its real cost, never expired`, async () => {
  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(keys, accountId);
  // The stream goes to the instance that does NOT run the expiry process, so the expiry comes
  // from elsewhere, as it would after a crash.
  const [a, b] = processes as [GatewayProcess, GatewayProcess];
  const holder = await workersHolder();
  const serving = holder === (await instanceOf(a)) ? b : a;
  const servingInstance = await instanceOf(serving);

  const started = performance.now();
  const stream = await openAiClient(serving.url, secret).chat.completions.create({
    model: MODEL,
    stream: true,
    messages: [{ role: 'user', content: LONG_PROMPT }],
  });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  const seconds = (performance.now() - started) / 1_000;
  expect(text).toBe(LONG_PROMPT);
  // It outlived the lease several times over (renewed all along).
  expect(seconds).toBeGreaterThan(3 * LEASE_S);

  const events = await waitFor(
    'the stream to settle',
    async () => {
      const all = await accountEvents(ledger, accountId);
      return reservationEndings(all).open.length === 0 ? all : undefined;
    },
    15_000,
  );
  const endings = reservationEndings(events);
  expect(endings).toEqual({ placed: 1, settled: 1, released: 0, expired: 0, open: [], wrong: [] });
  const [placed] = eventsOfType(events, 'ReservationPlaced');
  expect(placed!.data.instanceId).toBe(servingInstance);
  const [settled] = eventsOfType(events, 'ReservationSettled');
  expect(settled!.data.outcome).toBe('completed');
  expect(settled!.data.usage.outputTokens).toBeGreaterThan(0n);
  expect(settled!.data.actualCost).toBe(requestCost(settled!.data.usage, { inputPerMillion: usd('1'), outputPerMillion: usd('2') }));
  process.stdout.write(
    `long stream: ${seconds.toFixed(1)} s under a ${LEASE_S} s lease, settled once at ${settled!.data.actualCost} micro-USD, never expired\n`,
  );
}, 90_000);

it('a request past the maximum request duration is ended by the gateway and settled for what it produced, never expired', async () => {
  const short = await startGatewayProcess({
    databaseUrl,
    modelsFile,
    env: { ...env, TOLLGATE_MAX_REQUEST_DURATION_S: '6', TOLLGATE_UPSTREAM_HEADERS_TIMEOUT_S: '5', TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '5' },
  });
  try {
    const accountId = await openAccount(ledger, { topUpUsd: '10' });
    const { secret } = await issueKey(keys, accountId);
    const stream = await openAiClient(short.url, secret).chat.completions.create({
      model: MODEL,
      stream: true,
      messages: [{ role: 'user', content: LONG_PROMPT }],
    });
    let text = '';
    let ended: 'end' | 'error' = 'end';
    try {
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    } catch {
      ended = 'error';
    }
    // The client got part of the answer, then the stream ended (not all 480 characters).
    expect(text.length).toBeGreaterThan(0);
    expect(text.length).toBeLessThan(LONG_PROMPT.length);
    expect(LONG_PROMPT.startsWith(text)).toBe(true);

    const events = await waitFor(
      'the cut request to settle',
      async () => {
        const all = await accountEvents(ledger, accountId);
        return reservationEndings(all).open.length === 0 ? all : undefined;
      },
      15_000,
    );
    expect(reservationEndings(events)).toEqual({ placed: 1, settled: 1, released: 0, expired: 0, open: [], wrong: [] });
    const [settled] = eventsOfType(events, 'ReservationSettled');
    // Charged for what was produced, by the charge policy, and recorded as the gateway's doing.
    expect(settled!.data.outcome).toBe('max_duration_reached');
    expect(settled!.data.usage.outputTokens).toBeGreaterThan(0n);
    expect(settled!.data.actualCost).toBeGreaterThan(0n);
    expect(short.output()).toContain('request ended at the maximum request duration');
    process.stdout.write(
      `maximum request duration 6 s: the stream ${ended === 'end' ? 'ended' : 'errored'} after ${text.length} of ${LONG_PROMPT.length} characters; settled ${settled!.data.actualCost} micro-USD (${settled!.data.outcome})\n`,
    );
  } finally {
    await short.stop();
  }
}, 90_000);

it('the workers run on one instance; SIGKILL it and the other takes over and expires its holds', async () => {
  const [a, b] = processes as [GatewayProcess, GatewayProcess];
  const ids = new Map([
    [await instanceOf(a), a],
    [await instanceOf(b), b],
  ]);
  const holderId = (await workersHolder())!;
  const holder = ids.get(holderId);
  expect(holder).toBeDefined();
  const other = holder === a ? b : a;
  const otherId = await instanceOf(other);
  // One holder, on a live lease.
  expect((await pool.query(`SELECT count(*)::int AS n FROM instance_roles WHERE role = 'workers'`)).rows[0].n).toBe(1);

  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(keys, accountId);
  const IN_FLIGHT = 10;
  let streaming = 0;
  let allStreaming!: () => void;
  const everyStreamStarted = new Promise<void>((resolve) => (allStreaming = resolve));
  const client = openAiClient(holder!.url, secret, { maxRetries: 0 });
  const requests = Array.from({ length: IN_FLIGHT }, async () => {
    try {
      const stream = await client.chat.completions.create({ model: MODEL, stream: true, messages: [{ role: 'user', content: LONG_PROMPT }] });
      let first = true;
      for await (const _chunk of stream) {
        if (first && ++streaming === IN_FLIGHT) allStreaming();
        first = false;
      }
    } catch {
      // cut by the kill
    }
  });
  await everyStreamStarted;
  process.kill(holder!.pid, 'SIGKILL');
  const killedAt = performance.now();
  await Promise.all(requests);

  // The role moves to the survivor once the dead holder's lease lapses...
  await waitFor('the survivor to take the workers over', async () => ((await workersHolder()) === otherId ? true : undefined), (LEASE_S + 20) * 1_000, 100);
  const takeoverS = (performance.now() - killedAt) / 1_000;
  // ...and the survivor, the only live instance, expires what the dead one left open.
  const events = await waitFor(
    'the dead instance holds to return',
    async () => {
      const all = await accountEvents(ledger, accountId);
      return reservationEndings(all).open.length === 0 ? all : undefined;
    },
    (LEASE_S + 20) * 1_000,
    100,
  );
  const returnedS = (performance.now() - killedAt) / 1_000;
  const endings = reservationEndings(events);
  expect(endings).toMatchObject({ placed: IN_FLIGHT, settled: 0, released: 0, expired: IN_FLIGHT, wrong: [] });
  for (const placed of eventsOfType(events, 'ReservationPlaced')) expect(placed.data.instanceId).toBe(holderId);
  expect((await leases()).filter((l) => l.live).map((l) => l.instance_id)).toEqual([otherId]);
  processes.splice(processes.indexOf(holder!), 1);

  const verified = await runVerify(databaseUrl);
  expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
  process.stdout.write(
    `workers takeover: SIGKILL of the holder; survivor took the workers ${takeoverS.toFixed(1)} s later; its ${IN_FLIGHT} holds returned ${returnedS.toFixed(1)} s after the kill (lease ${LEASE_S} s)\n`,
  );
}, 120_000);
