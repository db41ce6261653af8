import OpenAI from 'openai';
import { systemMetadata } from '../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { addModel, issueKey, openAccount, openAiClient, rejectionOf, sleep } from '../support/e2e-setup';

/**
 * Two gateway processes (`src/main.ts`, as `npm start` runs it) on one database. Each verifies
 * the key once and caches it; the key is revoked by a third party (the seeding ledger in this
 * test process); both processes refuse it within one second.
 */

let upstream: MockLlm;
let seeder: TestGateway;
let processes: GatewayProcess[] = [];

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  const databaseUrl = await createTestDatabase('e2e_rev');
  const models = [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat' as const] }];
  // Migrates the database and gives this test a ledger over it.
  seeder = await startTestGateway({ models, databaseUrl });
  await addModel(seeder.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 256);
  const modelsFile = writeModelsFile(models);
  processes = await Promise.all([0, 1].map(() => startGatewayProcess({ databaseUrl, modelsFile })));
}, 120_000);

afterAll(async () => {
  await Promise.all(processes.map((p) => p.stop()));
  await seeder?.stop();
  await upstream?.stop();
});

it('a key revoked anywhere is refused by both processes within one second', async () => {
  const accountId = await openAccount(seeder.gateway.ledger, { topUpUsd: '10' });
  const { keyId, secret } = await issueKey(seeder.gateway.keys, accountId);
  const clients = processes.map((p) => openAiClient(p.url, secret));
  const ask = (client: OpenAI) => client.chat.completions.create({ model: 'llama', messages: [{ role: 'user', content: 'hi' }] });

  // Each process verifies the key (bcrypt once) and caches it; a second call is served from the cache.
  for (const client of clients) {
    expect((await ask(client)).choices[0]!.message.content).toBe('hi');
    expect((await ask(client)).choices[0]!.message.content).toBe('hi');
  }

  const revoked = await seeder.gateway.keys.revoke(keyId, 'leaked', systemMetadata('test'));
  expect(revoked.ok).toBe(true);
  const revokedAt = performance.now();

  const refusedAfter = await Promise.all(
    processes.map(async (p) => {
      for (;;) {
        const response = await fetch(`${p.url}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
        if (response.status === 401) return performance.now() - revokedAt;
        expect(response.status).toBe(200);
        if (performance.now() - revokedAt > 5_000) return Infinity;
        await sleep(50);
      }
    }),
  );
  for (const ms of refusedAfter) expect(ms).toBeLessThan(1_000);

  // And through the SDK, on inference, on both.
  for (const client of clients) {
    const error = await rejectionOf(ask(client));
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: 'invalid_api_key' });
  }
});
