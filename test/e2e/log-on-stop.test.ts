import { createTestDatabase } from '../support/database';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { slowStreamMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../support/e2e-processes';
import { addModel, issueKey, openAccount } from '../support/e2e-setup';

/**
 * The gateway logs through an asynchronous destination (src/logger.ts): a line is buffered and
 * written later. A clean stop must still write every line: the real gateway process (src/main.ts)
 * serves a burst of requests, gets SIGTERM while one stream is still open, drains it, and exits;
 * the request lines of the burst and of the drained stream, the shutdown line and the last line
 * ("stopped", written just before process.exit) must all be in its stdout.
 */

let upstream: MockLlm;
let seeder: TestGateway;
let gateway: GatewayProcess | undefined;

beforeAll(async () => {
  // Streams slow enough that one is still open when the signal comes.
  upstream = await startMockLlm(slowStreamMockLlmConfig(100));
}, 60_000);

afterAll(async () => {
  await gateway?.stop();
  await seeder?.stop();
  await upstream?.stop();
});

it('a clean stop (SIGTERM) loses no log line: every request line, the shutdown line and the last line are written', async () => {
  const databaseUrl = await createTestDatabase('e2e_logstop');
  const models = [{ id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 64 }], maxOutputTokens: 256, operations: ['chat' as const] }];
  seeder = await startTestGateway({ models, databaseUrl });
  await addModel(seeder.gateway.ledger, 'llama', { chat: { input: '1', output: '2' } }, 256);
  const accountId = await openAccount(seeder.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(seeder.gateway.keys, accountId);

  let stdout = '';
  gateway = await startGatewayProcess({
    databaseUrl,
    modelsFile: writeModelsFile(models),
    env: { LOG_LEVEL: 'info', TOLLGATE_DRAIN_TIMEOUT_S: '30' },
    onStdout: (chunk) => (stdout += chunk.toString()),
  });
  const ask = (requestId: string, stream: boolean, content = 'a short line') =>
    fetch(`${gateway!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json', 'x-request-id': requestId },
      body: JSON.stringify({ model: 'llama', messages: [{ role: 'user', content }], max_tokens: 256, stream }),
    });

  // The stream is open (its first chunk arrived) when the burst starts; the burst's lines are
  // the last written before the signal, and the stream's line is written during the drain.
  const streamId = 'logstop-stream-00000001';
  // 480 characters echoed in chunks of 4 every 100 ms: about 12 s, far longer than the burst.
  const streaming = await ask(streamId, true, 'stream me back '.repeat(32));
  expect(streaming.status).toBe(200);
  const reader = streaming.body!.getReader();
  await reader.read();
  let streamEnded = false;
  const rest = (async () => {
    let text = '';
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
    streamEnded = true;
    return text;
  })();
  const burst = Array.from({ length: 20 }, (_, i) => `logstop-burst-${String(i).padStart(8, '0')}`);
  const answers = await Promise.all(burst.map((id) => ask(id, false)));
  await Promise.all(answers.map((answer) => answer.text()));
  expect(answers.map((answer) => answer.status)).toEqual(burst.map(() => 200));

  expect(streamEnded).toBe(false); // still open when the signal comes
  process.kill(gateway.pid, 'SIGTERM');
  expect(await rest).toContain('data: [DONE]'); // drained to its end, not cut
  await gateway.closed; // exited, and its stdout read to the end
  expect(gateway.exitCode()).toBe(0);

  const lines = stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { msg?: string; requestId?: string; status?: number });
  const requestLines = (id: string) => lines.filter((line) => line.msg === 'request' && line.requestId === id);
  for (const id of [...burst, streamId]) expect(requestLines(id)).toEqual([expect.objectContaining({ requestId: id, status: 200 })]);
  const shutdown = lines.findIndex((line) => line.msg === 'shutting down: draining open requests');
  expect(shutdown).toBeGreaterThan(-1);
  // The stream's line comes during the drain, after the shutdown line; "stopped" is the very last.
  expect(lines.findIndex((line) => line.msg === 'request' && line.requestId === streamId)).toBeGreaterThan(shutdown);
  expect(lines.at(-1)?.msg).toBe('stopped');
}, 180_000);
