import pino from 'pino';
import { accountStreamId } from '../../domain/account';
import { adminMetadata } from '../../src/command-metadata';
import { lastRetentionRun, RetentionSchedule } from '../../src/compliance/retention-schedule';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { addModel, openAccount } from '../support/e2e-setup';
import { until } from '../support/wait';

/**
 * The privacy policy promises removal "within 30 days" of an account's deletion, not within 30
 * days and a check interval: an erasure that comes due before the schedule's next check gets a
 * wake of its own. Its own file and database, since the retention stream's last run (which other
 * tests move far ahead with their clocks) decides whether a run is due.
 */

const DAY_MS = 86_400_000;
let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 64, operations: ['chat'] }],
    env: { TOLLGATE_RETENTION_CHECK_INTERVAL_S: '86400' },
  });
  await addModel(gw.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 64);
}, 120_000); // a safety net: starting a gateway on a busy machine

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

it('wakes by itself for an erasure due before its next check: no one calls it, the data goes at its date', async () => {
  const { ledger, database, vault } = gw.gateway;
  const pool = database.pool;
  const leaving = await openAccount(ledger, { topUpUsd: '10' });
  expect(
    (await ledger.accounts.handle(accountStreamId(leaving), { type: 'CloseAccount', data: { reason: 'customer_request' }, metadata: adminMetadata('ada') })).ok,
  ).toBe(true);
  const eraseDueAt = await until(
    async () =>
      (await pool.query<{ erase_due_at: Date | null }>('SELECT erase_due_at FROM personal_data_retention WHERE account_id = $1', [leaving])).rows[0]
        ?.erase_due_at ?? undefined,
    { what: 'the erasure date in the retention projection' },
  );
  // A clock running 30 days ahead, less two seconds: the erasure comes due two seconds from now,
  // and the schedule's next check is a day away. Only its own wake can erase in time.
  const aheadMs = eraseDueAt.getTime() - Date.now() - 2_000;
  const schedule = new RetentionSchedule(
    { pool, ledger, vault, log: pino({ level: 'silent' }) },
    { clock: () => new Date(Date.now() + aheadMs), checkIntervalMs: DAY_MS },
  );
  schedule.start();
  try {
    const erasedAt = await until(
      async () =>
        (await pool.query<{ erased_at: Date | null }>('SELECT erased_at FROM personal_data_retention WHERE account_id = $1', [leaving])).rows[0]?.erased_at ??
        undefined,
      { what: 'the erasure, by the wake alone', timeoutMs: 60_000 },
    );
    expect(erasedAt).toBeInstanceOf(Date);
    const run = await lastRetentionRun(ledger);
    expect(run?.personalDataErased).toEqual([leaving]);
    // Not before its date: the run that erased it measured from the due instant or after.
    expect(new Date(run!.asOf).getTime()).toBeGreaterThanOrEqual(eraseDueAt.getTime());
  } finally {
    await schedule.stop();
  }
}, 120_000);
