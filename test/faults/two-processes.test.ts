import { startTestGateway, type TestGateway } from '../support/gateway';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { accountEvents, addModel, eventsOfType, issueKey, openAccount } from '../support/e2e-setup';
import { moneyOf, projectedBalance, reservationEndings, runVerify, usdText, waitFor } from '../support/ledger-checks';

/**
 * Two gateway processes on one database, both serving one hot account with 64 concurrent
 * requests each until its credit runs out. Each process decides reservations against its own
 * cached state and appends at the expected version; the other's writes show up as version
 * conflicts. No overspend beyond the documented settlement shortfall (here zero: every estimate
 * covers the upstream's reported usage), no lost update, `verify` passes.
 */

const MODEL = 'llama';
const PER_PROCESS = 64;

let upstream: MockLlm;
let seeder: TestGateway;
let databaseUrl: string;
let processes: GatewayProcess[] = [];

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  databaseUrl = await createTestDatabase('fault_two');
  const models = [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 256 }], maxOutputTokens: 256, operations: ['chat' as const] }];
  seeder = await startTestGateway({ models, databaseUrl, env: { LOG_LEVEL: 'warn' } });
  // Expensive tokens, so USD 10 runs out after a few hundred requests: USD 1,000 per million.
  await addModel(seeder.gateway.ledger, MODEL, { chat: { input: '1000', output: '1000' } }, 256);
  const modelsFile = writeModelsFile(models);
  processes = await Promise.all([0, 1].map(() => startGatewayProcess({ databaseUrl, modelsFile })));
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await seeder?.stop();
  await upstream?.stop();
});

it(`two processes, ${PER_PROCESS} concurrent requests each, one hot account: no overspend, no lost update, verify passes`, async () => {
  const accountId = await openAccount(seeder.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(seeder.gateway.keys, accountId);

  const answers: { process: number; status: number; code: string | null }[] = [];
  const worker = async (process: number, w: number) => {
    let declinedInARow = 0;
    for (let i = 0; i < 60 && declinedInARow < 3; i++) {
      const response = await fetch(`${processes[process]!.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, max_tokens: 20, messages: [{ role: 'user', content: `p${process} w${w} r${i}` }] }),
      });
      const body = (await response.json()) as { error?: { code?: string } };
      answers.push({ process, status: response.status, code: body.error?.code ?? null });
      declinedInARow = response.status === 429 && body.error?.code === 'insufficient_quota' ? declinedInARow + 1 : 0;
    }
  };
  const started = performance.now();
  await Promise.all([0, 1].flatMap((p) => Array.from({ length: PER_PROCESS }, (_, w) => worker(p, w))));
  const seconds = (performance.now() - started) / 1_000;

  const served = answers.filter((a) => a.status === 200);
  const declined = answers.filter((a) => a.status === 429 && a.code === 'insufficient_quota');
  const other = answers.filter((a) => a.status !== 200 && !(a.status === 429 && a.code === 'insufficient_quota'));
  // Before the group-commit fix, hundreds of these were 500s (VersionConflictError after 5 retries).
  expect(other).toEqual([]);
  // Both processes served the account, and both ran it dry.
  for (const p of [0, 1]) {
    expect(served.filter((a) => a.process === p).length).toBeGreaterThan(20);
    expect(declined.filter((a) => a.process === p).length).toBeGreaterThan(0);
  }

  const events = await waitFor(
    'every reservation to end',
    async () => {
      const all = await accountEvents(seeder.gateway.ledger, accountId);
      return reservationEndings(all).open.length === 0 ? all : undefined;
    },
    15_000,
  );
  const endings = reservationEndings(events);
  expect(endings.wrong).toEqual([]);
  // No lost update: every request answered 200 was charged exactly once, and nothing else was.
  const settled = eventsOfType(events, 'ReservationSettled');
  expect(settled.filter((e) => e.data.outcome === 'completed')).toHaveLength(served.length);
  expect(endings.placed).toBe(served.length + endings.released + endings.expired);

  // No overspend: charges never exceed the credit (every estimate covered its usage, so the
  // documented shortfall, actual minus reserved, is zero here), and the balance is exact.
  const money = moneyOf(events);
  for (const e of settled) expect(e.data.actualCost).toBeLessThanOrEqual(e.data.reservedAmount);
  expect(money.charged).toBeLessThanOrEqual(money.toppedUp);
  expect(money.balance).toBeGreaterThanOrEqual(0n);
  // Ran dry: what is left is less than one more request's reservation.
  const lastReservation = eventsOfType(events, 'ReservationPlaced').at(-1)!.data.amount;
  expect(money.balance).toBeLessThan(lastReservation);

  await waitFor(
    'the balances projection to catch up',
    async () => {
      const row = await projectedBalance(databaseUrl, accountId);
      return row && row.purchased === money.balance && row.reserved === 0n ? row : undefined;
    },
    10_000,
  );
  const verified = await runVerify(databaseUrl);
  expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
  process.stdout.write(
    `two processes: ${answers.length} requests in ${seconds.toFixed(1)} s, ${served.length} served ` +
      `(${served.filter((a) => a.process === 0).length} + ${served.filter((a) => a.process === 1).length}), ${declined.length} declined insufficient_quota; ` +
      `charged ${usdText(money.charged)} of ${usdText(money.toppedUp)}, left ${usdText(money.balance)}; ${verified.stdout.trim()}\n`,
  );
}, 240_000); // a safety net: the load runs until the credit is spent, however slow the machine
