import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { Client, Pool } from 'pg';
import { startEmbeddedPostgres } from '../../adapters/postgres/embedded';
import { createPostgresEventStore } from '../../adapters/eventstore/postgres';
import { domainEventCodec, type DomainEvent } from '../../domain/events';
import { ApiKeys } from '../../src/api-keys';
import { loadConfig } from '../../src/config';
import { accountPolicyFrom } from '../../src/gateway';
import { createLedger } from '../../src/ledger';
import {
  embeddedDatabaseUrl,
  readyOrExit,
  spawnEmbeddedGateway,
  stopEmbeddedGateway,
  writeModelsFile,
  type EmbeddedGatewayProcess,
} from '../support/e2e-processes';
import { addModel, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { freePort, slowStreamMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { repoRoot, runToCompletion } from '../support/processes';
import { until } from '../support/wait';

/**
 * The default install (`npm start` with no DATABASE_URL: embedded PostgreSQL in
 * TOLLGATE_DATA_DIR), run as users run it: the real entry point and the real CLI as child
 * processes, each test with its own data dir and ports.
 */

jest.setTimeout(300_000);

interface Place {
  dataDir: string;
  pgPort: number;
  port: number;
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function freshPlace(): Promise<Place> {
  const root = mkdtempSync(join(tmpdir(), 'tollgate-embedded-'));
  // The server runs as the `postgres` user when we are root: it must reach the directory.
  chmodSync(root, 0o755);
  dirs.push(root);
  return { dataDir: join(root, 'state'), pgPort: await freePort(), port: await freePort() };
}

/** `tollgate <args>`, the real CLI, on the embedded default of `place`. */
function cli(place: Place, args: string[]) {
  return runToCompletion(
    resolve(repoRoot, 'bin/tollgate'),
    args,
    { DATABASE_URL: undefined, TOLLGATE_DATA_DIR: place.dataDir, TOLLGATE_EMBEDDED_PG_PORT: String(place.pgPort), LOG_LEVEL: 'warn' },
    120_000,
  );
}

async function sql<T extends object>(dataDir: string, text: string): Promise<T[]> {
  const client = new Client({ connectionString: embeddedDatabaseUrl(dataDir) });
  await client.connect();
  try {
    return (await client.query<T>(text)).rows;
  } finally {
    await client.end();
  }
}

/** Lines of the gateway's output that pino logged at level error or fatal. */
function errorLines(output: string): string[] {
  return output.split('\n').filter((line) => {
    try {
      return (JSON.parse(line) as { level?: number }).level! >= 50;
    } catch {
      return false;
    }
  });
}

/** A model priced on the gateway's own database, and an account with credit and a key, written from this process. */
async function seed(dataDir: string): Promise<{ accountId: string; secret: string }> {
  const pool = new Pool({ connectionString: embeddedDatabaseUrl(dataDir), max: 2 });
  const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);
  try {
    const ledger = createLedger(store, accountPolicyFrom(loadConfig({})));
    await addModel(ledger, 'llama', { chat: { input: '1', output: '2' } }, 256);
    const accountId = await openAccount(ledger, { topUpUsd: '100' });
    const { secret } = await issueKey(new ApiKeys(ledger), accountId);
    return { accountId, secret };
  } finally {
    await store.close();
    await pool.end();
  }
}

/** A gateway serving the slow-streaming upstream, seeded, and answering the seeded key. */
async function startSeededGateway(place: Place, upstream: MockLlm): Promise<{ gateway: EmbeddedGatewayProcess; client: OpenAI; accountId: string }> {
  const modelsFile = writeModelsFile([{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat'] }]);
  const gateway = spawnEmbeddedGateway({ ...place, env: { TOLLGATE_MODELS_FILE: modelsFile, LOG_LEVEL: 'info' } });
  await readyOrExit(gateway);
  const { accountId, secret } = await seed(place.dataDir);
  const client = openAiClient(gateway.url, secret);
  // The price book reaches the running gateway through its live log: wait until it serves.
  await until(
    () =>
      client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'warm' }] }).then(
        () => true,
        () => undefined,
      ),
    { what: 'the seeded model to be served', timeoutMs: 30_000, intervalMs: 200 },
  );
  return { gateway, client, accountId };
}

/** A stream whose first chunk has arrived (so the request is in flight); `rest` reads it to the end. */
async function openStream(client: OpenAI, prompt: string): Promise<{ rest: () => Promise<string> }> {
  const stream = await client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: prompt }], stream: true });
  const chunks = stream[Symbol.asyncIterator]();
  const first = await chunks.next();
  let text = first.done ? '' : (first.value.choices[0]?.delta.content ?? '');
  return {
    rest: async () => {
      for (let next = await chunks.next(); !next.done; next = await chunks.next()) text += next.value.choices[0]?.delta.content ?? '';
      return text;
    },
  };
}

/** Reservation events per request, from the event log. */
async function reservationEndings(dataDir: string): Promise<Map<string, string[]>> {
  const rows = await sql<{ request_id: string; types: string[] }>(
    dataDir,
    `SELECT data->>'requestId' AS request_id, array_agg(type ORDER BY global_seq) AS types FROM events
      WHERE type IN ('ReservationPlaced', 'ReservationSettled', 'ReservationReleased', 'ReservationExpired') GROUP BY 1`,
  );
  return new Map(rows.map((row) => [row.request_id, row.types]));
}

const prompt = (n: number) => `stream ${String(n).padStart(2, '0')} `.repeat(8); // 96 characters: 24 chunks of 4, 100 ms apart

describe('the CLI on the embedded default', () => {
  test('exits 1 on a difference, on a broken audit chain and on a missing account: beside a running gateway, and alone', async () => {
    const place = await freshPlace();
    const gateway = spawnEmbeddedGateway(place);
    try {
      await readyOrExit(gateway);

      // Beside the running gateway: the CLI uses the gateway's server.
      const clean = await cli(place, ['verify']);
      expect(clean).toMatchObject({ code: 0 });
      expect(clean.stdout).toMatch(/^ok: 1 accounts/);

      await sql(place.dataDir, `UPDATE balances SET purchased = purchased + 1 WHERE account_id = 'demo'`);
      const corrupted = await cli(place, ['verify']);
      expect(corrupted.stderr).toMatch(/tollgate: 1 difference\(s\) found/);
      expect(corrupted.code).toBe(1);

      const missing = await cli(place, ['balance', '--account', 'no-such-account']);
      expect(missing.stderr).toContain('tollgate: no account no-such-account');
      expect(missing.code).toBe(1);

      expect(await cli(place, ['audit', 'verify-chain'])).toMatchObject({ code: 0 });
      await sql(place.dataDir, `UPDATE audit_log SET reason = 'altered' WHERE entry_no = (SELECT max(entry_no) FROM audit_log)`);
      const broken = await cli(place, ['audit', 'verify-chain']);
      expect(broken.stderr).toMatch(/^tollgate: /);
      expect(broken.code).toBe(1);

      // The commands left the gateway and its database running.
      expect((await fetch(`${gateway.url}/readyz`)).status).toBe(200);
    } finally {
      expect(await stopEmbeddedGateway(gateway)).toEqual({ code: 0, signal: null });
    }
    expect(errorLines(gateway.output())).toEqual([]);

    // Alone: each command starts the server, and stops it after.
    expect(await cli(place, ['verify'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/1 difference\(s\) found/) });
    expect(await cli(place, ['audit', 'verify-chain'])).toMatchObject({ code: 1 });
    expect(await cli(place, ['balance', '--account', 'no-such-account'])).toMatchObject({ code: 1 });
    // Two at once: the second waits for the first's server to be released, then starts its own.
    const [verify, chain] = await Promise.all([cli(place, ['verify']), cli(place, ['audit', 'verify-chain'])]);
    expect([verify.code, chain.code]).toEqual([1, 1]);
    expect(verify.stderr).toMatch(/1 difference\(s\) found/);
    expect(existsSync(join(place.dataDir, 'pgdata', 'postmaster.pid'))).toBe(false);
    expect(existsSync(join(place.dataDir, 'tollgate-owner.json'))).toBe(false);
  });
});

describe('the gateway on the embedded default', () => {
  let upstream: MockLlm;
  beforeAll(async () => {
    upstream = await startMockLlm(slowStreamMockLlmConfig(100));
  });
  afterAll(async () => {
    await upstream?.stop();
  });

  test('SIGKILLed while it serves streams, it starts again on the same data dir; a second live gateway there is refused naming the first', async () => {
    const place = await freshPlace();
    const { gateway: first, client } = await startSeededGateway(place, upstream);
    const streams = await Promise.all(Array.from({ length: 10 }, (_, n) => openStream(client, prompt(n))));

    // A second gateway on the same data dir (its own HTTP port): one line naming the first, non-zero exit.
    const second = spawnEmbeddedGateway({ ...place, port: await freePort() });
    const refused = await second.exited;
    expect(refused.code).not.toBe(0);
    expect(refused.code).not.toBeNull();
    const lines = second
      .output()
      .trim()
      .split('\n')
      .filter((line) => line.startsWith('tollgate: '));
    expect(lines).toEqual([expect.stringContaining(`another Tollgate gateway (pid ${first.pid}, listening on port ${place.port})`)]);
    expect((await fetch(`${first.url}/readyz`)).status).toBe(200);

    // SIGKILL: the postmaster it started lives on, an orphan.
    const orphan = Number(readFileSync(join(place.dataDir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
    first.child.kill('SIGKILL');
    const killedAt = performance.now();
    await first.exited;
    await Promise.all(streams.map((s) => s.rest().catch(() => 'cut')));
    expect(() => process.kill(orphan, 0)).not.toThrow();

    const restarted = spawnEmbeddedGateway({
      ...place,
      env: {
        TOLLGATE_MODELS_FILE: writeModelsFile([
          { id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat'] },
        ]),
      },
    });
    try {
      await readyOrExit(restarted);
      const servingAfterMs = performance.now() - killedAt;
      process.stdout.write(`SIGKILL to serving again (real entry point, embedded default): ${Math.round(servingAfterMs)} ms\n`);
      const again = await openStream(client, prompt(99));
      expect(await again.rest()).toBe(prompt(99));
      expect(() => process.kill(orphan, 0)).toThrow(); // the orphan was stopped, not left beside the new server
    } finally {
      expect(await stopEmbeddedGateway(restarted)).toEqual({ code: 0, signal: null });
    }
    expect(errorLines(restarted.output())).toEqual([]);
  });

  test('SIGTERM drains: 20 open streams from the openai client complete, every reservation is settled, exit 0, no error logged', async () => {
    const place = await freshPlace();
    const { gateway, client } = await startSeededGateway(place, upstream);
    const streams = await Promise.all(Array.from({ length: 20 }, (_, n) => openStream(client, prompt(n))));

    gateway.child.kill('SIGTERM');
    const texts = await Promise.all(streams.map((s) => s.rest()));
    expect(texts).toEqual(Array.from({ length: 20 }, (_, n) => prompt(n)));
    expect(await gateway.exited).toEqual({ code: 0, signal: null });
    expect(errorLines(gateway.output())).toEqual([]);
    expect(gateway.output()).toContain('"msg":"stopped"');

    // The event log, read with the gateway stopped: every reservation (the warm-up requests and
    // the 20 streams) placed once and settled once.
    const server = await startEmbeddedPostgres({ dataDir: place.dataDir, port: place.pgPort, role: 'cli' });
    try {
      const endings = await reservationEndings(place.dataDir);
      expect(endings.size).toBeGreaterThanOrEqual(21);
      for (const types of endings.values()) expect(types).toEqual(['ReservationPlaced', 'ReservationSettled']);
    } finally {
      await server.stop();
    }
    expect(await cli(place, ['verify'])).toMatchObject({ code: 0 });
  });

  test('a database that cannot start says why, and the gateway exits non-zero', async () => {
    const place = await freshPlace();
    // Something else holds the embedded server's port.
    const squatter: Server = createServer().listen(place.pgPort, '127.0.0.1');
    await new Promise((done) => squatter.once('listening', done));
    try {
      const gateway = spawnEmbeddedGateway(place);
      const ended = await gateway.exited;
      expect(ended.code).toBe(1);
      expect(gateway.output()).toMatch(
        new RegExp(`tollgate: embedded PostgreSQL did not start on port ${place.pgPort} .*(could not bind|Address already in use)`),
      );
      expect(gateway.output()).not.toContain('undefined');
    } finally {
      squatter.close();
    }
  });

  test('a SIGTERM during start-up stops the gateway once started, leaving no database running', async () => {
    const place = await freshPlace();
    const gateway = spawnEmbeddedGateway({ ...place, env: { LOG_LEVEL: 'info' } });
    await until(() => (gateway.output().includes('starting embedded PostgreSQL') ? true : undefined), { what: 'start-up to begin', timeoutMs: 60_000 });
    gateway.child.kill('SIGTERM');
    expect(await gateway.exited).toEqual({ code: 0, signal: null });
    expect(gateway.output()).toContain('"msg":"stopped"');
    expect(existsSync(join(place.dataDir, 'pgdata', 'postmaster.pid'))).toBe(false);
    expect(existsSync(join(place.dataDir, 'tollgate-owner.json'))).toBe(false);
  });
});
