import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { accountStreamId } from '../../domain/account';
import { RETENTION_STREAM_ID } from '../../domain/retention';
import { adminMetadata } from '../../src/command-metadata';
import { verifyAuditChain } from '../../src/compliance/audit-log';
import { verifyFinance } from '../../src/finance/verify';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, addModel, dumpDatabase, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { compiledEntryPoint } from '../support/processes';
import { until } from '../support/wait';

/**
 * The retention schedule runs itself (issue 16 §2): inside the gateway, as one of its background
 * workers, at start-up when no run is recorded for a day, then daily, by an injected wall clock.
 * The privacy policy's promises, each on schedule: request logs 90 days, audit logs 90 days,
 * personal data within 30 days of an account's closure, wallet records forever (verify clean).
 */

const DAY_MS = 86_400_000;
const exec = promisify(execFile);
let upstream: MockLlm;
let gw: TestGateway;
let clock = new Date();

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
    // The schedule looks often; whether a run is due is decided by the injected clock alone.
    env: { TOLLGATE_RETENTION_CHECK_INTERVAL_S: '0.2' },
    retentionClock: () => clock,
  });
  await addModel(gw.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 64);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

async function runs() {
  const { events } = await gw.gateway.ledger.store.readStream(RETENTION_STREAM_ID);
  return events.map((e) => e.event).filter((e) => e.type === 'RetentionRunCompleted');
}

it('runs at start-up, not again the same day, then on schedule removes every category from every table and stream', async () => {
  const { ledger, store, settlements, database } = gw.gateway;
  // At start-up: no run was ever recorded, so one runs at once.
  await until(async () => ((await runs()).length >= 1 ? true : undefined), { what: 'the start-up retention run' });

  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  await openAiClient(gw.url, secret).chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hello' }] });
  await settlements.settled(accountId);
  const leaving = await openAccount(ledger, { topUpUsd: '10' });
  expect(
    (await ledger.accounts.handle(accountStreamId(leaving), { type: 'CloseAccount', data: { reason: 'customer_request' }, metadata: adminMetadata('ada') })).ok,
  ).toBe(true);
  const upstreamUrl = upstream.baseUrl.replace(/\/$/, '');
  const walletBefore = await accountEvents(ledger, accountId);
  await until(async () => ((await dumpDatabase(gw.databaseUrl)).rows.some((r) => r.includes(upstreamUrl)) ? true : undefined), {
    what: 'the request log entry',
  });

  // `tollgate retention plan` shows the request log's entries with their expiry (90 days on) and the last run.
  const [startUp] = await runs();
  const { stdout } = await exec(process.execPath, [compiledEntryPoint('src/cli/compliance/main.ts'), 'retention', 'plan'], {
    env: { ...process.env, DATABASE_URL: gw.databaseUrl, LOG_LEVEL: 'warn' },
    timeout: 60_000,
  });
  const today = new Date().toISOString().slice(0, 10);
  const ninetyDaysOn = new Date(Date.now() + 90 * DAY_MS).toISOString().slice(0, 10);
  expect(stdout).toMatch(new RegExp(`request_metadata\\s+request log ${today}\\s+1\\s+${ninetyDaysOn}T\\S+\\s+no\\s+purge`));
  expect(stdout).toContain(`last retention run: ${startUp!.type === 'RetentionRunCompleted' ? startUp!.data.runId : '?'} as of`);

  // The same day: the schedule keeps looking, and runs nothing more.
  clock = new Date(Date.now() + DAY_MS / 2);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  expect(await runs()).toHaveLength(1);

  // 91 days on: the next check runs retention, and records what it deleted by category.
  clock = new Date(Date.now() + 91 * DAY_MS);
  const run = await until(async () => (await runs())[1], { what: 'the scheduled retention run' });
  expect(run.type).toBe('RetentionRunCompleted');
  if (run.type !== 'RetentionRunCompleted') return;
  expect(run.data.asOf).toBe(clock.toISOString());
  expect(run.data.requestMetadataPurged).toBeGreaterThanOrEqual(1n);
  expect(run.data.auditEntriesPurged).toBeGreaterThan(0n);
  expect(run.data.personalDataErased).toContain(leaving);

  // In the audit log, with counts and categories only.
  const audited = await until(
    async () => {
      const { rows } = await database.pool.query<{ details: Record<string, unknown> }>(
        "SELECT details FROM audit_log WHERE action = 'retention.run' AND target_id = $1",
        [run.data.runId],
      );
      return rows[0];
    },
    { what: 'the run in the audit log' },
  );
  expect(audited.details).toEqual({
    auditEntriesPurged: run.data.auditEntriesPurged.toString(),
    requestMetadataPurged: run.data.requestMetadataPurged.toString(),
    personalDataErased: [leaving],
  });

  // Request metadata: in no table and no stream. The audit chain verifies from its new anchor.
  expect((await dumpDatabase(gw.databaseUrl)).rows.filter((r) => r.includes(upstreamUrl))).toEqual([]);
  expect((await verifyAuditChain(database.pool)).ok).toBe(true);

  // Wallet events untouched, and verify finds every cent.
  expect(await accountEvents(ledger, accountId)).toEqual(walletBefore);
  const report = await until(
    async () => {
      const r = await verifyFinance(database.pool, store, { now: clock });
      return r.ok ? r : undefined;
    },
    { what: 'verify to pass' },
  );
  expect(report.differences).toEqual([]);
}, 120_000);
