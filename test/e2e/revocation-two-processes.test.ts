import OpenAI from 'openai';
import { systemMetadata } from '../../src/command-metadata';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { createTestDatabase } from '../support/database';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { addModel, issueKey, openAccount, openAiClient, rejectionOf } from '../support/e2e-setup';
import { until } from '../support/wait';

/**
 * Two gateway processes (`dist/src/main.js`, as `npm start` runs it) on one database. Each verifies
 * the key once and caches it; the key is revoked by a third party (the seeding ledger in this
 * test process); both processes refuse it from then on (the cache never forgets a key by itself, so only the
 * revocation reaching each process through the log can make it refuse).
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

it('a key revoked anywhere is refused by both processes, and stays refused', async () => {
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

  // Neither process ever forgets a verified key by itself (no expiry in the cache): a refusal can
  // only come from the revocation reaching it through the shared log. So the verdict is the
  // effect — each process turns from serving the key to refusing it, and never serves it again —
  // and the deadline is only a safety net for a revocation that never arrives. The time it took
  // is printed (typically well under a second), not judged: a loaded machine only lengthens it.
  const refusedAfterMs = await Promise.all(
    processes.map((p, i) =>
      until(
        async () => {
          const response = await fetch(`${p.url}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
          if (response.status === 401) return performance.now() - revokedAt;
          expect(response.status).toBe(200);
          return undefined;
        },
        { what: `process ${i} to refuse the revoked key`, timeoutMs: 30_000, intervalMs: 50 },
      ),
    ),
  );
  process.stdout.write(`revocation refused by both processes after ${refusedAfterMs.map((ms) => `${Math.round(ms)} ms`).join(' and ')}\n`);
  // Once refused, refused for good: ten more tries on each process, none served.
  for (const p of processes) {
    for (let i = 0; i < 10; i++) {
      const response = await fetch(`${p.url}/v1/models`, { headers: { authorization: `Bearer ${secret}` } });
      expect(response.status).toBe(401);
    }
  }

  // And through the SDK, on inference, on both.
  for (const client of clients) {
    const error = await rejectionOf(ask(client));
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: 'invalid_api_key' });
  }
});
