/**
 * A bounded soak: mixed streaming and non-streaming chat at a steady rate through Tollgate to a
 * real upstream process on loopback, with periodic top-ups and key revocations, then
 * `tollgate verify`.
 *   npm run soak -- [--seconds 180] [--rate 40] [--accounts 20] [--stream-share 0.5]
 *                   [--top-up-every 5] [--revoke-every 10]
 *
 * Everything runs on this machine: a fresh embedded PostgreSQL with durable commits, one
 * @dwmkerr/mock-llm process (the upstream: usage on non-streaming answers, none in streams, so
 * Tollgate counts those tokens itself), and Tollgate as a child process (compiled,
 * `node dist/src/main.js` as `npm start` runs it, rebuilt first when a source is newer) whose resident memory is sampled every second. Requests are sent open-loop
 * (one every 1/rate s, whatever the answers do) over keep-alive connections, through the admin
 * API for setup, top-ups and revocations as an operator would.
 *
 * Prints requests served, errors by kind, p50/p99 latency, the gateway's peak RSS and its growth
 * after warm-up (the first quarter), and events written. Exits 1 on any verify difference, any
 * reservation not ended exactly once, any 5xx (the soak induces none; a 401 for a key just
 * revoked is the one expected error), or a revoked key that is not refused at once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool as PgPool } from 'pg';
import { Pool } from 'undici';
import { rssBytes, startGatewayProcess, writeModelsFile, type GatewayProcess } from '../test/support/e2e-processes';
import { TEST_ADMIN_KEY } from '../test/support/gateway';
import { runVerify } from '../test/support/ledger-checks';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../test/support/mock-llm';
import { flag, printTable, startBenchPostgres, type BenchPostgres } from './support/embedded-postgres';
import { buildIfStale } from './support/dist';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Soak: mixed streaming and non-streaming chat at a steady rate through Tollgate, then tollgate verify.

  npm run soak -- [--seconds 180] [--rate 40] [--accounts 20] [--stream-share 0.5]
                  [--top-up-every 5] [--revoke-every 10]

  --seconds N       how long to send (default 180)
  --rate N          requests per second, open loop (default 40)
  --accounts N      accounts, one key each (default 20)
  --stream-share F  share of streamed requests, 0 to 1 (default 0.5)
  --top-up-every N  a top-up every N seconds (default 5)
  --revoke-every N  a key revoked (and replaced) every N seconds (default 10)

Tollgate runs compiled (node dist/src/main.js, rebuilt first when a source is newer). Exits 1 on any
verify difference, reservation not ended exactly once, 5xx, or revoked key not refused at once.
`);
  process.exit(0);
}

const SECONDS = flag('--seconds', 180);
const RATE = flag('--rate', 40);
const ACCOUNTS = flag('--accounts', 20);
const STREAM_SHARE = Math.min(1, flag('--stream-share', 0.5));
const TOP_UP_EVERY_S = flag('--top-up-every', 5);
const REVOKE_EVERY_S = flag('--revoke-every', 10);
const MODEL = 'soak-model';
const MiB = 1024 * 1024;

interface Customer {
  accountId: string;
  key: string;
  keyId: string;
}

interface Outcome {
  readonly at: number;
  readonly latencyMs: number;
  readonly kind: string;
  readonly stream: boolean;
}

const percentile = (sorted: readonly number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
const median = (values: readonly number[]) =>
  percentile(
    [...values].sort((a, b) => a - b),
    50,
  );

async function main(): Promise<number> {
  buildIfStale();
  let pg: BenchPostgres | undefined;
  let upstream: MockLlm | undefined;
  let gateway: GatewayProcess | undefined;
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-soak-'));
  try {
    pg = await startBenchPostgres();
    upstream = await startMockLlm(defaultMockLlmConfig({ chunkSize: 12, chunkIntervalMs: 10 }));
    const models = [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 512 }], maxOutputTokens: 512, operations: ['chat' as const] }];
    gateway = await startGatewayProcess({
      databaseUrl: pg.url,
      modelsFile: writeModelsFile(models),
      env: { TOLLGATE_DATA_DIR: dataDir },
      readyTimeoutMs: 60_000,
    });
    const http = new Pool(gateway.url, { connections: 64, pipelining: 1 });

    const admin = async (method: string, path: string, body?: unknown) => {
      const response = await http.request({
        method: method as 'GET',
        path,
        headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await response.body.json()) as Record<string, unknown>;
      if (response.statusCode >= 300) throw new Error(`${method} ${path}: HTTP ${response.statusCode} ${JSON.stringify(json)}`);
      return json;
    };
    await admin('POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 512 });
    await admin('POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '0.50', output_usd_per_million: '1.50' });
    let topUps = 0;
    const topUp = async (customer: Customer) => {
      topUps += 1;
      await admin('POST', `/admin/accounts/${customer.accountId}/top-ups`, { amount_usd: '10', reference: `soak-${topUps}`, reason: 'soak top-up' });
    };
    const customers: Customer[] = [];
    for (let i = 0; i < ACCOUNTS; i++) {
      const account = await admin('POST', '/admin/accounts', { display_name: `Soak ${i}`, email: `soak${i}@example.org` });
      const key = await admin('POST', `/admin/accounts/${String(account.account_id)}/keys`, { name: 'soak' });
      const customer = { accountId: String(account.account_id), key: String(key.key), keyId: String(key.key_id) };
      customers.push(customer);
      await topUp(customer);
    }

    // Load, open-loop at RATE per second, with top-ups and revocations on their own clocks.
    const outcomes: Outcome[] = [];
    const rss: { at: number; bytes: number }[] = [];
    const revokedKeys = new Set<string>();
    let revocations = 0;
    let revokedRefused = 0;
    const inFlight = new Set<Promise<void>>();
    const started = performance.now();
    const send = (n: number) => {
      const customer = customers[n % customers.length]!;
      const stream = Math.random() < STREAM_SHARE;
      const key = customer.key;
      const t0 = performance.now();
      const done = (async () => {
        let kind: string;
        try {
          const response = await http.request({
            method: 'POST',
            path: '/v1/chat/completions',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({
              model: MODEL,
              stream,
              max_tokens: 64,
              messages: [{ role: 'user', content: `soak request ${n}: ${'lorem ipsum '.repeat(1 + (n % 8))}` }],
            }),
          });
          const text = await response.body.text();
          if (response.statusCode === 200) kind = stream && !text.includes('data: [DONE]') ? 'stream_incomplete' : 'ok';
          else {
            let code = 'unknown';
            try {
              code = String((JSON.parse(text) as { error?: { code?: unknown } }).error?.code ?? 'null');
            } catch {
              code = 'not_json';
            }
            kind = response.statusCode === 401 && revokedKeys.has(key) ? 'revoked_key (induced)' : `${response.statusCode} ${code}`;
          }
        } catch (error) {
          kind = `connection ${(error as { code?: string }).code ?? (error as Error).name}`;
        }
        outcomes.push({ at: t0 - started, latencyMs: performance.now() - t0, kind, stream });
      })();
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
    };
    const timers: NodeJS.Timeout[] = [];
    let sent = 0;
    timers.push(
      setInterval(() => {
        // Catch up to the schedule, so a slow event loop does not lower the rate.
        const due = Math.floor(((performance.now() - started) / 1_000) * RATE);
        while (sent < due) send(sent++);
      }, 5),
    );
    timers.push(setInterval(() => rss.push({ at: performance.now() - started, bytes: rssBytes(gateway!.pid) }), 1_000));
    timers.push(
      setInterval(
        () => void topUp(customers[Math.floor(Math.random() * customers.length)]!).catch((e: Error) => console.error(`top-up failed: ${e.message}`)),
        TOP_UP_EVERY_S * 1_000,
      ),
    );
    timers.push(
      setInterval(() => {
        const customer = customers[revocations++ % customers.length]!;
        const old = customer.key;
        void (async () => {
          // A new key first, then the old one revoked: requests already sent with it may get 401.
          const issued = await admin('POST', `/admin/accounts/${customer.accountId}/keys`, { name: 'soak rotated' });
          customer.key = String(issued.key);
          revokedKeys.add(old);
          await admin('DELETE', `/admin/keys/${customer.keyId}`, { reason: 'soak rotation' });
          customer.keyId = String(issued.key_id);
          // The revoked key must be refused at once, under load.
          const probe = await http.request({ method: 'GET', path: '/v1/models', headers: { authorization: `Bearer ${old}` } });
          await probe.body.dump();
          if (probe.statusCode === 401) revokedRefused += 1;
          else outcomes.push({ at: performance.now() - started, latencyMs: 0, kind: `revoked key answered ${probe.statusCode}`, stream: false });
        })().catch((e: Error) => console.error(`revocation failed: ${e.message}`));
      }, REVOKE_EVERY_S * 1_000),
    );
    const progress = setInterval(() => {
      const elapsed = (performance.now() - started) / 1_000;
      process.stderr.write(`\rsoak ${elapsed.toFixed(0)}/${SECONDS} s, ${outcomes.length} answered, RSS ${((rss.at(-1)?.bytes ?? 0) / MiB).toFixed(0)} MiB   `);
    }, 2_000);
    await new Promise((resolve) => setTimeout(resolve, SECONDS * 1_000));
    for (const timer of timers) clearInterval(timer);
    await Promise.all(inFlight);
    clearInterval(progress);
    process.stderr.write('\n');
    const elapsedS = (performance.now() - started) / 1_000;

    // Every reservation ends exactly once (settlements are written just after each answer).
    const db = new PgPool({ connectionString: pg.url, max: 2 });
    const endingsSql = `
      SELECT
        (SELECT count(*) FROM events WHERE type = 'ReservationPlaced')::int AS placed,
        (SELECT count(*) FROM events p WHERE p.type = 'ReservationPlaced' AND NOT EXISTS (
           SELECT 1 FROM events e WHERE e.stream_id = p.stream_id AND e.type IN ('ReservationSettled', 'ReservationReleased', 'ReservationExpired')
             AND e.data->>'requestId' = p.data->>'requestId'))::int AS open,
        (SELECT count(*) FROM (SELECT 1 FROM events WHERE type IN ('ReservationSettled', 'ReservationReleased', 'ReservationExpired')
           GROUP BY stream_id, data->>'requestId' HAVING count(*) > 1) twice)::int AS doubled,
        (SELECT count(*) FROM events)::int AS events`;
    let endings = (await db.query<{ placed: number; open: number; doubled: number; events: number }>(endingsSql)).rows[0]!;
    for (let i = 0; i < 50 && endings.open > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      endings = (await db.query<{ placed: number; open: number; doubled: number; events: number }>(endingsSql)).rows[0]!;
    }
    await db.end();
    const verified = await runVerify(pg.url, 300_000);

    // Figures.
    const ok = outcomes.filter((o) => o.kind === 'ok');
    const latencies = ok.map((o) => o.latencyMs).sort((a, b) => a - b);
    const latencyOf = (stream: boolean) =>
      ok
        .filter((o) => o.stream === stream)
        .map((o) => o.latencyMs)
        .sort((a, b) => a - b);
    const errors = new Map<string, number>();
    for (const o of outcomes) if (o.kind !== 'ok') errors.set(o.kind, (errors.get(o.kind) ?? 0) + 1);
    const warmupEnd = (SECONDS * 1_000) / 4;
    const afterWarmup = rss.filter((s) => s.at >= warmupEnd);
    const rssAtWarmup = median(afterWarmup.slice(0, 10).map((s) => s.bytes));
    const rssAtEnd = median(afterWarmup.slice(-10).map((s) => s.bytes));
    const peak = Math.max(...rss.map((s) => s.bytes));
    const fiveXx = outcomes.filter((o) => /^5\d\d /.test(o.kind) || o.kind.startsWith('connection')).length;

    console.log(
      `\nTollgate soak: ${SECONDS} s at ${RATE} req/s, ${ACCOUNTS} accounts, ${Math.round(STREAM_SHARE * 100)}% streaming, top-up every ${TOP_UP_EVERY_S} s, key revoked every ${REVOKE_EVERY_S} s\n`,
    );
    printTable([
      ['figure', 'value'],
      ['requests sent', String(outcomes.length)],
      ['requests served (200)', `${ok.length} (${(ok.length / elapsedS).toFixed(1)}/s)`],
      ['errors', errors.size === 0 ? 'none' : [...errors].map(([kind, n]) => `${kind}: ${n}`).join(', ')],
      ['5xx or connection errors', String(fiveXx)],
      ['latency p50 / p99, all', `${percentile(latencies, 50).toFixed(1)} / ${percentile(latencies, 99).toFixed(1)} ms`],
      [
        'latency p50 / p99 after warm-up',
        (() => {
          const steady = ok
            .filter((o) => o.at >= warmupEnd)
            .map((o) => o.latencyMs)
            .sort((a, b) => a - b);
          return `${percentile(steady, 50).toFixed(1)} / ${percentile(steady, 99).toFixed(1)} ms`;
        })(),
      ],
      ['latency p50 / p99, non-streaming', `${percentile(latencyOf(false), 50).toFixed(1)} / ${percentile(latencyOf(false), 99).toFixed(1)} ms`],
      ['latency p50 / p99, streaming (whole stream)', `${percentile(latencyOf(true), 50).toFixed(1)} / ${percentile(latencyOf(true), 99).toFixed(1)} ms`],
      ['gateway RSS peak', `${(peak / MiB).toFixed(0)} MiB`],
      [
        'gateway RSS after warm-up -> end',
        `${(rssAtWarmup / MiB).toFixed(0)} -> ${(rssAtEnd / MiB).toFixed(0)} MiB (${((rssAtEnd - rssAtWarmup) / MiB).toFixed(1)} MiB)`,
      ],
      ['top-ups / key revocations (revoked key refused at once)', `${topUps} / ${revocations} (${revokedRefused})`],
      ['events written', String(endings.events)],
      ['reservations placed / open / ended twice', `${endings.placed} / ${endings.open} / ${endings.doubled}`],
      ['tollgate verify', verified.code === 0 ? verified.stdout.trim() : `FAILED (exit ${verified.code})`],
    ]);
    if (verified.code !== 0) console.log(verified.stdout + verified.stderr);
    await http.close();
    const revokedAccepted = outcomes.filter((o) => o.kind.startsWith('revoked key answered')).length;
    const failed = verified.code !== 0 || endings.open > 0 || endings.doubled > 0 || fiveXx > 0 || revokedAccepted > 0;
    console.log(failed ? '\nsoak FAILED' : '\nsoak passed: zero verify differences, every reservation ended once, no 5xx, every revoked key refused');
    return failed ? 1 : 0;
  } finally {
    await gateway?.stop();
    await upstream?.stop();
    await pg?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`soak: ${error.stack ?? error.message}`);
    process.exit(2);
  },
);
