import { Pool as PgPool } from 'pg';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, freePort, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { TEST_ADMIN_KEY } from '../support/gateway';
import { startHaproxy, type LoadBalancer } from '../support/haproxy';
import { runVerify, waitFor } from '../support/ledger-checks';
import { clusterAdmissionBound } from '../../adapters/http/admission/share';

/**
 * Three gateway processes on one PostgreSQL behind a real HAProxy (health checks on /readyz),
 * under steady mixed load (streaming and not, several accounts, top-ups, key rotations), as an
 * operator runs them:
 * - the per-account limit holds across the three within the stated tolerance (share.ts), and is
 *   reachable through the balancer;
 * - a key revoked through one instance is refused through the balancer, and by every instance;
 * - SIGKILL of one instance: only requests it was serving fail, HAProxy routes around it, its
 *   holds return within the lease time, it restarts on its port and serves again;
 * - SIGTERM of another: no request fails (it drains; HAProxy retries the refused connections);
 * - at the end every reservation ended exactly once and `tollgate verify` passes.
 */

const MODEL = 'llama';
const LEASE_S = 3;
const ACCOUNT_RPM = 30;
const LOAD_ACCOUNTS = 6; // 20 requests per minute each, two thirds of the account limit
const LOAD_INTERVAL_MS = 500; // 2 requests per second in all, 30 per minute per account: within its limit

interface Outcome {
  readonly started: number;
  readonly ended: number;
  readonly stream: boolean;
  readonly servedBy: string | null;
  /** 'ok', 'revoked_key (induced)', or what went wrong */
  readonly kind: string;
}

let upstream: MockLlm;
let databaseUrl: string;
let db: PgPool;
let lb: LoadBalancer;
const ports: number[] = [];
const gateways: (GatewayProcess | undefined)[] = [];
let modelsFile: string;
const env = {
  TOLLGATE_INSTANCE_LEASE_S: String(LEASE_S),
  TOLLGATE_EXPIRY_INTERVAL_S: '1',
  TOLLGATE_DRAIN_TIMEOUT_S: '30',
  TOLLGATE_ACCOUNT_RATE_LIMIT_RPM: String(ACCOUNT_RPM),
  TOLLGATE_TRUSTED_PROXIES: '127.0.0.1',
};
const start = (i: number) => startGatewayProcess({ databaseUrl, modelsFile, env, port: ports[i]!, readyTimeoutMs: 120_000 });

beforeAll(async () => {
  // 8 characters every 40 ms: a stream of the load's prompts lasts about a second.
  upstream = await startMockLlm(defaultMockLlmConfig({ chunkSize: 8, chunkIntervalMs: 40 }), 60_000);
  databaseUrl = await createTestDatabase('fault_lb');
  db = new PgPool({ connectionString: databaseUrl, max: 2 });
  modelsFile = writeModelsFile([{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 512 }], maxOutputTokens: 256, operations: ['chat' as const] }]);
  for (let i = 0; i < 3; i++) ports.push(await freePort());
  // The first creates the schema alone; the other two join it.
  gateways[0] = await start(0);
  gateways.push(...(await Promise.all([1, 2].map(start))));
  lb = await startHaproxy({ backends: ports.map((port, i) => ({ name: `g${i}`, port })), checkIntervalMs: 500 });
  for (const name of ['g0', 'g1', 'g2']) await lb.waitFor(name, 'UP');
  await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 });
  await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '0.50', output_usd_per_million: '1.50' });
}, 240_000);

afterAll(async () => {
  await lb?.stop();
  await Promise.all(gateways.map((g) => g?.stop()));
  await db?.end();
  await upstream?.stop();
});

async function admin(method: string, path: string, body?: unknown, base = lb.url): Promise<Record<string, unknown>> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${method} ${path}: HTTP ${response.status} from ${response.headers.get('x-served-by')}: ${text.slice(0, 300)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

interface Customer {
  readonly accountId: string;
  key: string;
  keyId: string;
}

async function customer(name: string): Promise<Customer> {
  const account = await admin('POST', '/admin/accounts', { display_name: name, email: `${name}@example.org` });
  const accountId = String(account.account_id);
  const key = await admin('POST', `/admin/accounts/${accountId}/keys`, { name });
  await admin('POST', `/admin/accounts/${accountId}/top-ups`, { amount_usd: '100', reference: `${name}-first`, reason: 'test' });
  return { accountId, key: String(key.key), keyId: String(key.key_id) };
}

async function chat(
  base: string,
  key: string,
  stream: boolean,
  content: string,
): Promise<{ status: number; servedBy: string | null; code: string | null; cut: boolean }> {
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream, max_tokens: 32, messages: [{ role: 'user', content }] }),
  });
  const servedBy = response.headers.get('x-served-by');
  try {
    const text = await response.text();
    if (response.status !== 200)
      return { status: response.status, servedBy, code: (JSON.parse(text) as { error?: { code?: string } }).error?.code ?? null, cut: false };
    return { status: 200, servedBy, code: null, cut: stream && !text.includes('data: [DONE]') };
  } catch {
    return { status: response.status, servedBy, code: null, cut: true };
  }
}

it('three gateways behind HAProxy: shared account limit, revocation, SIGKILL and SIGTERM under load; every reservation ends once; verify passes', async () => {
  const customers = await Promise.all(Array.from({ length: LOAD_ACCOUNTS }, (_, i) => customer(`load${i}`)));
  const revokedKeys = new Set<string>();
  const outcomes: Outcome[] = [];
  const inFlight = new Set<Promise<void>>();
  const t0 = performance.now();
  const now = () => performance.now() - t0;

  // Steady open-loop load through the balancer: every third request streams.
  let n = 0;
  const send = () => {
    const c = customers[n % customers.length]!;
    const stream = n % 3 === 0;
    const key = c.key;
    const started = now();
    const i = n++;
    const done = chat(lb.url, key, stream, `load request ${i} `.repeat(4))
      .then(
        (answer) => {
          let kind = answer.status === 200 && !answer.cut ? 'ok' : answer.cut ? 'stream cut' : `${answer.status} ${answer.code}`;
          if (answer.status === 401 && revokedKeys.has(key)) kind = 'revoked_key (induced)';
          return { kind, servedBy: answer.servedBy };
        },
        (error: Error) => ({ kind: `connection ${error.message}`, servedBy: null }),
      )
      .then(({ kind, servedBy }) => void outcomes.push({ started, ended: now(), stream, servedBy, kind }));
    inFlight.add(done);
    void done.finally(() => inFlight.delete(done));
  };
  const load = setInterval(send, LOAD_INTERVAL_MS);
  // Top-ups and key rotations on their own clocks, through the balancer.
  let topUps = 0;
  const topUpTimer = setInterval(() => {
    const c = customers[topUps % customers.length]!;
    void admin('POST', `/admin/accounts/${c.accountId}/top-ups`, { amount_usd: '10', reference: `lb-${++topUps}`, reason: 'test' }).catch(() => {});
  }, 2_000);
  let rotations = 0;
  const rotate = async () => {
    const c = customers[rotations++ % customers.length]!;
    const issued = await admin('POST', `/admin/accounts/${c.accountId}/keys`, { name: `rotated ${rotations}` });
    const old = c.key;
    const oldId = c.keyId;
    c.key = String(issued.key);
    c.keyId = String(issued.key_id);
    revokedKeys.add(old);
    await admin('DELETE', `/admin/keys/${oldId}`, { reason: 'rotation' });
  };
  const rotateTimer = setInterval(() => void rotate().catch(() => {}), 3_000);
  // Phases end on what the load did, not after a fixed time: `count` load requests started at or
  // after `from` (ms since t0) and answered in full. A safety net of a minute for a loaded machine.
  const loadServed = (count: number, from: number, what: string) =>
    waitFor(
      `${count} load requests ${what}`,
      async () => (outcomes.filter((o) => o.kind === 'ok' && o.started >= from).length >= count ? true : undefined),
      60_000,
      50,
    );
  const stopLoad = async () => {
    clearInterval(load);
    clearInterval(topUpTimer);
    clearInterval(rotateTimer);
    while (inFlight.size > 0) await Promise.all([...inFlight]);
  };

  try {
    // 1. The per-account limit holds across the three, and is reachable through the balancer.
    const limited = await customer('limited');
    const burstStarted = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 10 }, async (_, w) => {
        const statuses: number[] = [];
        for (let i = 0; i < (3 * ACCOUNT_RPM) / 10; i++) {
          const answer = await chat(lb.url, limited.key, false, `burst ${w} ${i}`);
          // A 502 upstream_error was admitted (the stand-in upstream on a loaded machine reset it; released, nothing charged).
          const admittedHere = answer.status === 200 || (answer.status === 502 && answer.code === 'upstream_error');
          if (!admittedHere && answer.status !== 429) throw new Error(`burst: HTTP ${answer.status} ${answer.code} from ${answer.servedBy}`);
          statuses.push(admittedHere ? 200 : 429);
        }
        return statuses;
      }),
    );
    const burstMs = performance.now() - burstStarted;
    const admitted = answers.flat().filter((s) => s === 200).length;
    const refused = answers.flat().filter((s) => s === 429).length;
    expect(admitted + refused).toBe(3 * ACCOUNT_RPM);
    // Three per-process limits would admit about 3 * 60; the shared one at most the bound.
    const bound = Math.floor(clusterAdmissionBound(ACCOUNT_RPM, burstMs, 3));
    console.log(
      `account limit ${ACCOUNT_RPM} RPM over 3 instances: ${admitted} admitted of ${3 * ACCOUNT_RPM} in ${(burstMs / 1_000).toFixed(1)} s (bound ${bound})`,
    );
    expect(admitted).toBeLessThanOrEqual(bound);
    // Round robin spreads it, so nearly the whole limit is reachable (each instance's share is a third).
    expect(admitted).toBeGreaterThanOrEqual(ACCOUNT_RPM * 0.8);

    // 2. A key revoked through one instance is refused through the balancer, and by every instance.
    const victim = await customer('victim');
    expect((await chat(lb.url, victim.key, false, 'before')).status).toBe(200);
    await admin('DELETE', `/admin/keys/${victim.keyId}`, { reason: 'test' }, gateways[0]!.url);
    const afterRevocation: number[] = [];
    await waitFor(
      'the revoked key to be refused through the balancer six times running',
      async () => {
        afterRevocation.push((await chat(lb.url, victim.key, false, 'after')).status);
        return afterRevocation.slice(-6).length === 6 && afterRevocation.slice(-6).every((s) => s === 401) ? true : undefined;
      },
      30_000, // a safety net for a loaded machine; the announcement reaches every instance within milliseconds
      20,
    );
    // Once refused, never accepted again.
    const firstRefusal = afterRevocation.indexOf(401);
    expect(afterRevocation.slice(firstRefusal).every((s) => s === 401)).toBe(true);
    for (const g of gateways) expect((await chat(g!.url, victim.key, false, 'direct')).status).toBe(401);

    // 3. SIGKILL g1 while streams are in flight, once the load is flowing (about 3 s of it).
    await loadServed(6, now(), 'served before the kill');
    const killed = gateways[1]!;
    const { rows: killedLease } = await db.query<{ instance_id: string }>('SELECT instance_id FROM instance_leases WHERE pid = $1', [killed.pid]);
    expect(killedLease).toHaveLength(1);
    const killedInstance = killedLease[0]!.instance_id;
    // Long streams in flight on it at the kill (straight to it, so they surely are on it).
    const streamer = customers[0]!;
    const cutStreams = Array.from({ length: 3 }, async (_, i) => {
      const response = await fetch(`${killed.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${streamer.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, stream: true, max_tokens: 32, messages: [{ role: 'user', content: `long stream ${i} `.repeat(100) }] }),
      });
      const reader = response.body!.getReader();
      await reader.read(); // the first chunk: the reservation is durable, the stream is under way
      return reader;
    });
    const readers = await Promise.all(cutStreams);
    const killAt = now();
    process.kill(killed.pid, 'SIGKILL');
    const cut = await Promise.all(
      readers.map(async (reader) => {
        try {
          for (;;) if ((await reader.read()).done) return false;
        } catch {
          return true;
        }
      }),
    );
    expect(cut).toEqual([true, true, true]);
    await killed.exited;
    gateways[1] = undefined;
    await lb.waitFor('g1', 'DOWN');
    // Its holds return within the lease time (plus an expiry pass): a safety net, the order is what counts.
    const openOfKilled = `SELECT count(*)::int AS open FROM events p WHERE p.type = 'ReservationPlaced' AND p.data->>'instanceId' = $1 AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.stream_id = p.stream_id AND e.type IN ('ReservationSettled', 'ReservationReleased', 'ReservationExpired')
          AND e.data->>'requestId' = p.data->>'requestId')`;
    await waitFor(
      "the killed instance's holds to return",
      async () => ((await db.query<{ open: number }>(openOfKilled, [killedInstance])).rows[0]!.open === 0 ? true : undefined),
      60_000, // a safety net: the lease (3 s) plus an expiry pass is what it takes on a quiet machine
    );
    const afterKill = now();
    // ...the streams cut by the kill among them: expired, so nothing charged for them.
    const { rows: expiredOfKilled } = await db.query<{ expired: number }>(
      `SELECT count(*)::int AS expired FROM events p JOIN events e ON e.stream_id = p.stream_id AND e.type = 'ReservationExpired' AND e.data->>'requestId' = p.data->>'requestId'
        WHERE p.type = 'ReservationPlaced' AND p.data->>'instanceId' = $1`,
      [killedInstance],
    );
    expect(expiredOfKilled[0]!.expired).toBeGreaterThanOrEqual(3);
    // Requests started after the kill was seen are all served by the others.
    await loadServed(4, afterKill, 'served by the others after the kill');
    // It restarts on its port and rejoins.
    gateways[1] = await start(1);
    await lb.waitFor('g1', 'UP');
    await waitFor(
      'a request served by the restarted g1',
      async () => ((await chat(lb.url, customers[0]!.key, false, 'rejoined')).servedBy === 'g1' ? true : undefined),
      10_000,
      10,
    );

    // 4. SIGTERM g2: it drains, nothing fails.
    await loadServed(4, now(), 'served with g1 back');
    const termAt = now();
    const drained = gateways[2]!;
    process.kill(drained.pid, 'SIGTERM');
    await drained.exited;
    gateways[2] = undefined;
    await lb.waitFor('g2', 'DOWN');
    await loadServed(4, now(), 'served after g2 left');
    const termEnd = now();
    await stopLoad();

    // Every failure was a request in flight on the killed instance at the kill. The stand-in
    // upstream on this shared, loaded machine now and then resets a connection (502
    // upstream_error, answered by a live gateway, nothing charged): counted and shown, not the
    // balancer's doing.
    const upstreamErrors = outcomes.filter((o) => o.kind === '502 upstream_error' && o.servedBy !== null && o.servedBy !== '<NOSRV>');
    expect(upstreamErrors.length).toBeLessThanOrEqual(Math.ceil(outcomes.length / 100));
    const failures = outcomes.filter((o) => o.kind !== 'ok' && o.kind !== 'revoked_key (induced)' && !upstreamErrors.includes(o));
    const unexplained = failures.filter((o) => !(o.servedBy === 'g1' && o.started <= killAt && o.ended >= killAt));
    const summary = (list: readonly Outcome[]) => list.map((o) => `${o.kind} by ${o.servedBy} ${o.started.toFixed(0)}-${o.ended.toFixed(0)} ms`);
    console.log(
      `${outcomes.length} load requests, ${failures.length} failed (all in flight on the killed g1), ${upstreamErrors.length} upstream errors, ${outcomes.filter((o) => o.kind === 'revoked_key (induced)').length} on rotated keys, ${topUps} top-ups, ${rotations} rotations; kill at ${killAt.toFixed(0)} ms, holds back by ${afterKill.toFixed(0)} ms`,
    );
    expect(summary(unexplained)).toEqual([]);
    // Load kept flowing around the dead instance and through the drain.
    expect(outcomes.filter((o) => o.kind === 'ok' && o.started > killAt && o.started < afterKill).length).toBeGreaterThan(0);
    expect(summary(failures.filter((o) => o.ended >= termAt && o.started <= termEnd))).toEqual([]);
    expect(new Set(outcomes.filter((o) => o.kind === 'ok').map((o) => o.servedBy))).toEqual(new Set(['g0', 'g1', 'g2']));
  } finally {
    await stopLoad();
  }

  // Every reservation ended exactly once; verify (the real CLI) passes.
  const endingsSql = `
    SELECT
      (SELECT count(*) FROM events WHERE type = 'ReservationPlaced')::int AS placed,
      (SELECT count(*) FROM events p WHERE p.type = 'ReservationPlaced' AND NOT EXISTS (
         SELECT 1 FROM events e WHERE e.stream_id = p.stream_id AND e.type IN ('ReservationSettled', 'ReservationReleased', 'ReservationExpired')
           AND e.data->>'requestId' = p.data->>'requestId'))::int AS open,
      (SELECT count(*) FROM (SELECT 1 FROM events WHERE type IN ('ReservationSettled', 'ReservationReleased', 'ReservationExpired')
         GROUP BY stream_id, data->>'requestId' HAVING count(*) > 1) twice)::int AS doubled`;
  const endings = await waitFor(
    'every reservation to end',
    async () => {
      const row = (await db.query<{ placed: number; open: number; doubled: number }>(endingsSql)).rows[0]!;
      return row.open === 0 ? row : undefined;
    },
    30_000,
  );
  // Every answered load request (and each request the burst admitted) placed a reservation: how much
  // load there was depends on the machine's speed, so the count is checked against what was answered.
  expect(endings.placed).toBeGreaterThanOrEqual(outcomes.filter((o) => o.kind === 'ok').length);
  expect(endings.doubled).toBe(0);
  const verified = await runVerify(databaseUrl, 120_000);
  expect({ code: verified.code, output: verified.code === 0 ? '' : verified.stdout + verified.stderr }).toEqual({ code: 0, output: '' });
}, 300_000);
