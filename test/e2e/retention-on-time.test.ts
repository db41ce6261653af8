import pino from 'pino';
import { accountStreamId } from '../../domain/account';
import { requestLogStreamId } from '../../domain/request-log';
import { adminMetadata } from '../../src/command-metadata';
import { lastRetentionRun, RetentionSchedule } from '../../src/compliance/retention-schedule';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, addModel, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { until } from '../support/wait';

/**
 * Retention on time, not up to a day late (issue 16 §2). The privacy policy: "Upon account
 * deletion, personal data is removed within 30 days" and "API request logs are retained for 90
 * days". The schedule runs daily, and also as soon as something held becomes due after its last
 * run: an account's erasure date, a request-log entry's maximum age. Here a schedule over the
 * gateway's own database, ledger and vault is asked, with an injected clock, whether to run: a
 * second before the due instant nothing is done, at it the data goes, though a run was recorded
 * two hours earlier (a daily-only schedule would wait 22 hours more).
 */

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
    // The gateway's own schedule makes its start-up run and then no other within this test.
    env: { TOLLGATE_RETENTION_CHECK_INTERVAL_S: '86400' },
  });
  await addModel(gw.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 64);
}, 120_000); // a safety net: starting a gateway on a busy machine

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

it('erases personal data at its erasure date and deletes a request-log entry at its maximum age, a run two hours earlier notwithstanding', async () => {
  const { ledger, store, settlements, database, vault } = gw.gateway;
  const pool = database.pool;
  await until(async () => (await lastRetentionRun(ledger)) ?? undefined, { what: 'the start-up retention run' });
  let clock = new Date();
  const schedule = new RetentionSchedule({ pool, ledger, vault, log: pino({ level: 'silent' }) }, { clock: () => clock, checkIntervalMs: DAY_MS });
  const at = async (instant: Date) => {
    clock = instant;
    return schedule.runIfDue();
  };

  // An account closed on the customer's request: its personal data is due 30 days on.
  const leaving = await openAccount(ledger, { topUpUsd: '10' });
  const closed = await ledger.accounts.handle(accountStreamId(leaving), {
    type: 'CloseAccount',
    data: { reason: 'customer_request' },
    metadata: adminMetadata('ada'),
  });
  expect(closed.ok).toBe(true);
  const eraseDueAt = await until(
    async () => {
      const { rows } = await pool.query<{ erase_due_at: Date | null }>('SELECT erase_due_at FROM personal_data_retention WHERE account_id = $1', [leaving]);
      return rows[0]?.erase_due_at ?? undefined;
    },
    { what: 'the erasure date in the retention projection' },
  );
  const closedEvent = (await accountEvents(ledger, leaving)).find((e) => e.type === 'AccountClosed');
  expect(eraseDueAt.getTime()).toBe(new Date(closedEvent!.metadata.occurredAt).getTime() + 30 * DAY_MS);

  // A request: its request-log entry is due 90 days after it was recorded.
  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  await openAiClient(gw.url, secret).chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hello' }] });
  await settlements.settled(accountId);
  const logStream = requestLogStreamId(accountId, new Date().toISOString().slice(0, 10));
  const logged = await until(async () => (await store.readStream(logStream)).events[0], { what: 'the request-log entry' });
  const logDueAt = new Date(logged.recordedAt.getTime() + 90 * DAY_MS);
  const erasedAt = async () =>
    (await pool.query<{ erased_at: Date | null }>('SELECT erased_at FROM personal_data_retention WHERE account_id = $1', [leaving])).rows[0]?.erased_at ?? null;

  // Two hours before the erasure date: the daily run (the last was at start-up, 30 days back). Nothing is erased.
  const daily = await at(new Date(eraseDueAt.getTime() - 2 * HOUR_MS));
  expect(daily).toMatchObject({ personalDataErased: [], recorded: true });
  // A second before it: nothing is due, no run.
  expect(await at(new Date(eraseDueAt.getTime() - 1_000))).toBeNull();
  expect(await erasedAt()).toBeNull();
  // At it: a run, and the account's data is erased by it.
  const erasing = await at(eraseDueAt);
  expect(erasing).toMatchObject({ personalDataErased: [leaving], recorded: true });
  expect((await lastRetentionRun(ledger))?.personalDataErased).toEqual([leaving]);
  await until(async () => ((await erasedAt()) !== null ? true : undefined), { what: 'the erasure in the retention projection' });
  // Done is done: the same instant runs nothing again.
  expect(await at(new Date(eraseDueAt.getTime() + 1_000))).toBeNull();

  // The request log: a daily run two hours before the entry's maximum age leaves it.
  expect(await at(new Date(logDueAt.getTime() - 2 * HOUR_MS))).toMatchObject({ requestMetadataPurged: 0 });
  // Just before it the entry is still there (a run may come for older audit entries, never for it).
  const before = await at(new Date(logDueAt.getTime() - 1_000));
  expect(before?.requestMetadataPurged ?? 0).toBe(0);
  expect((await store.readStream(logStream)).events).toHaveLength(1);
  // The audit projection applies the purge a run recorded; let it, so each run plans from a settled chain.
  await gw.gateway.projections.get('audit')!.reached(await store.latestPosition());
  // Past it: a run, which deletes the entry from its stream.
  const purging = await at(new Date(logDueAt.getTime() + 60_000));
  expect(purging?.requestMetadataPurged).toBeGreaterThanOrEqual(1);
  expect((await store.readStream(logStream)).events).toEqual([]);
  expect((await lastRetentionRun(ledger))?.runId).toBe(purging?.runId);
}, 120_000);
