import { createTestDatabase } from '../support/database';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { startFaultUpstream, TRICKLE_USAGE, type FaultUpstream } from '../support/fault-upstream';
import { accountEvents, addModel, issueKey, openAccount, openAiClient } from '../support/e2e-setup';
import { reservationEndings, waitFor } from '../support/ledger-checks';

/**
 * A prompt of millions of characters without a space (a Chinese text, one word repeated) is one
 * piece of cl100k's pre-tokenizer. Given to the encoder whole, its count took time quadratic in its
 * length: 80,000 Chinese characters blocked the gateway for 55 s, and the default body limit
 * (8 MiB) lets a single request send millions, which would have held every other request for
 * hours. Such prompts are counted in parts now (adapters/inference/tokens.ts): each is answered,
 * reserved and settled, and a small request sent beside them is served. The gateway is the real
 * entry point in its own process (`dist/src/main.js`, default body limit), so a count that blocks
 * it fails this test at its deadline instead of stopping the test's own clock.
 */

// The fault upstream's model that reads any body and streams a short answer with its usage
// (@dwmkerr/mock-llm refuses bodies over 100 KB).
const MODEL = 'trickle';
let upstream: FaultUpstream;
/** In this process, on the same database: sets up the account and reads the ledger. */
let seeder: TestGateway;
let gateway: GatewayProcess;

beforeAll(async () => {
  upstream = await startFaultUpstream();
  const models = [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 64, operations: ['chat' as const] }];
  const databaseUrl = await createTestDatabase('unbroken');
  seeder = await startTestGateway({ models, databaseUrl, env: { LOG_LEVEL: 'warn' } });
  await addModel(seeder.gateway.ledger, MODEL, { chat: { input: '0.01', output: '0.01' } }, 64);
  gateway = await startGatewayProcess({ databaseUrl, modelsFile: writeModelsFile(models) });
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await seeder?.stop();
  await upstream?.stop();
});

it('prompts of 4 million letters and 1.5 million Chinese characters, no space in either, are counted, answered and settled; a small request beside them is served', async () => {
  const { ledger, keys } = seeder.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '100' });
  const { secret } = await issueKey(keys, accountId);
  const client = openAiClient(gateway.url, secret, { maxRetries: 0 });
  const ask = async (content: string) => {
    const stream = await client.chat.completions.create({ model: MODEL, max_tokens: 16, stream: true, messages: [{ role: 'user', content }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    return text;
  };
  const answers = await Promise.all([ask('a'.repeat(4_000_000)), ask('我'.repeat(1_500_000)), ask('hello')]);
  expect(answers).toEqual(Array(3).fill('w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 '));
  expect(upstream.received[MODEL]).toBe(3);

  const ended = await waitFor(
    'the three reservations to settle',
    async () => {
      const endings = reservationEndings(await accountEvents(ledger, accountId));
      return endings.settled === 3 ? endings : undefined;
    },
    30_000,
  );
  expect(ended).toMatchObject({ placed: 3, settled: 3, released: 0, expired: 0, open: [], wrong: [] });
  // Each reserved from its own count: 4,000,000 letters are 500,000 tokens (8 to a token) and
  // 1,500,000 Chinese characters 1,500,000, so the two large holds stand 3 to 1 (prompt plus the
  // same max_tokens at the same price, rounded up once each).
  const holds = (await accountEvents(ledger, accountId))
    .flatMap((e) => (e.type === 'ReservationPlaced' ? [e.data.amount] : []))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  expect(holds).toHaveLength(3);
  const [, letters, chinese] = holds as [bigint, bigint, bigint];
  expect(chinese * 1_000n >= letters * 2_990n && chinese * 1_000n <= letters * 3_010n).toBe(true);
  // Settled at the usage the upstream reported, as any stream is.
  const settled = (await accountEvents(ledger, accountId)).flatMap((e) => (e.type === 'ReservationSettled' ? [e.data.usage] : []));
  expect(settled).toEqual(
    Array(3).fill({ inputTokens: BigInt(TRICKLE_USAGE.prompt_tokens), outputTokens: BigInt(TRICKLE_USAGE.completion_tokens), estimated: false }),
  );
}, 120_000);
