import { randomBytes } from 'node:crypto';
import OpenAI from 'openai';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { chatChunk, sleep, startScriptedUpstream, startSse, type ScriptedUpstream } from '../integration/inference/scripted-upstream';
import { accountEvents, addModel, dumpDatabase, issueKey, openAccount, openAiClient, rejectionOf } from '../support/e2e-setup';
import { until } from '../support/wait';

/**
 * Zero content retention (DESIGN.md "Privacy"): prompts carrying a unique marker go through
 * every path (streaming and not, success, upstream failure whose body echoes the prompt, a cut
 * stream, a client that leaves, a malformed body); afterwards the marker is in no row of any
 * table of the database, in no log line and in no metric.
 */

const MARKER = `ZEBRA-${randomBytes(8).toString('hex')}`;
const prompt = `Please repeat ${MARKER} back to me`;
const price = { input: '1', output: '2' };

let upstream: MockLlm;
let scripted: ScriptedUpstream;
let gw: TestGateway;
let accountId: string;
let secret: string;
let client: OpenAI;

beforeAll(async () => {
  [upstream, scripted] = await Promise.all([
    startMockLlm(defaultMockLlmConfig()),
    startScriptedUpstream(async (request, res) => {
      // Echoes the prompt back, then the connection drops mid-answer.
      const messages = request.body.messages as { content: string }[];
      startSse(res);
      res.write(chatChunk(messages[messages.length - 1]!.content));
      await sleep(20);
      res.socket?.destroy();
    }),
  ]);
  const chatAndCompletion = ['chat', 'completion'] as const;
  gw = await startTestGateway({
    models: [
      { id: 'llama', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: [...chatAndCompletion] },
      { id: 'failing', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: [...chatAndCompletion] },
      { id: 'moderated', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] },
      { id: 'embedder', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 1, operations: ['embedding'] },
      { id: 'cut', upstreams: [{ baseUrl: scripted.baseUrl, capacity: 8 }], maxOutputTokens: 256, operations: ['chat'] },
    ],
  });
  const { ledger, keys } = gw.gateway;
  for (const id of ['llama', 'failing']) await addModel(ledger, id, { chat: price, completion: price }, 256);
  await addModel(ledger, 'moderated', { chat: price }, 256);
  await addModel(ledger, 'cut', { chat: price }, 256);
  await addModel(ledger, 'embedder', { embedding: price }, 1);
  accountId = await openAccount(ledger, { topUpUsd: '10' });
  secret = (await issueKey(keys, accountId)).secret;
  client = openAiClient(gw.url, secret);
});

afterAll(async () => {
  await gw?.stop();
  await Promise.all([upstream?.stop(), scripted?.close()]);
});

async function drain(stream: AsyncIterable<{ choices: { delta?: { content?: string | null } }[] }>): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  return text;
}

it('a marked prompt leaves no trace in the database, the logs or the metrics, on any path', async () => {
  const messages = [{ role: 'user' as const, content: prompt }];

  // Successes (mock-llm echoes the prompt, so the completions carry the marker too).
  const chat = await client.chat.completions.create({ model: 'llama', messages });
  expect(chat.choices[0]!.message.content).toContain(MARKER); // it really went through
  expect(await drain(await client.chat.completions.create({ model: 'llama', messages, stream: true, stream_options: { include_usage: true } }))).toContain(
    MARKER,
  );
  expect((await client.completions.create({ model: 'llama', prompt })).choices[0]!.text).toContain(MARKER);
  await drain((await client.completions.create({ model: 'llama', prompt, stream: true })) as never);
  await client.embeddings.create({ model: 'embedder', input: prompt });
  await client.chat.completions.create({ model: 'moderated', messages });

  // Failures whose upstream body echoes the prompt.
  for (const stream of [false, true]) {
    const error = await rejectionOf(client.chat.completions.create({ model: 'failing', messages, stream }));
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(JSON.stringify(error)).not.toContain(MARKER);
  }
  const completionError = await rejectionOf(client.completions.create({ model: 'failing', prompt }));
  expect(JSON.stringify(completionError)).not.toContain(MARKER);

  // A stream cut by the upstream, and a client that leaves mid-stream.
  await rejectionOf(drain(await client.chat.completions.create({ model: 'cut', messages, stream: true })));
  const controller = new AbortController();
  const leaving = await client.chat.completions.create({ model: 'llama', messages, stream: true }, { signal: controller.signal });
  for await (const _chunk of leaving) {
    controller.abort();
    break;
  }

  // Malformed: a bad role (validated by zod) and JSON that does not parse, both carrying the marker.
  const malformed = await rejectionOf(client.chat.completions.create({ model: 'llama', messages: [{ role: 'wizard', content: prompt } as never] }));
  expect(malformed).toBeInstanceOf(OpenAI.BadRequestError);
  expect(JSON.stringify(malformed)).not.toContain(MARKER);
  const badJson = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: `{"model":"llama","messages":[{"role":"user","content":"${MARKER}"}`,
  });
  expect(badJson.status).toBe(400);
  expect(await badJson.text()).not.toContain(MARKER);

  await gw.gateway.settlements.settled(accountId);
  // Every request above that reached the ledger has ended.
  const events = await accountEvents(gw.gateway.ledger, accountId);
  const placed = events.filter((e) => e.type === 'ReservationPlaced').length;
  const ended = events.filter((e) => e.type === 'ReservationSettled' || e.type === 'ReservationReleased').length;
  expect(placed).toBe(11);
  expect(ended).toBe(placed);

  const { tables, rows } = await dumpDatabase(gw.databaseUrl);
  // The search is not vacuous: the events and their metadata are there.
  expect(rows.length).toBeGreaterThan(20);
  expect(rows.some((row) => row.includes('ReservationSettled') && row.includes(accountId))).toBe(true);
  const leaking = rows.filter((row) => row.includes(MARKER));
  expect({ tables: tables.length, leaking }).toEqual({ tables: tables.length, leaking: [] });

  const metrics = await (await fetch(`${gw.url}/metrics`)).text();
  expect(metrics).toContain('llama');
  expect(metrics).not.toContain(MARKER);

  // One line per request: 12 routed, and the unparseable body that never reached a route. The
  // last lines are written once settlement ends, a moment after it: wait for them to come out.
  const routed = () => gw.logLines.filter((line) => line.includes('"route":"/v1/')).length;
  await until(() => (routed() >= 12 ? true : undefined), { what: 'a request log line for each of the 12 routed requests' });
  expect(routed()).toBe(12);
  expect(gw.logLines.filter((line) => line.includes('"route":"unmatched","status":400')).length).toBe(1);
  expect(gw.logLines.filter((line) => line.includes(MARKER))).toEqual([]);
});
