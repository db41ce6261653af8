import { accountStreamId } from '../../../domain/account';
import { requestLogStreamId } from '../../../domain/request-log';
import type { RecordedEvent } from '../../../src/ports/event-store';
import type { DomainEvent } from '../../../domain/events';
import { addModel, issueKey, openAccount, openAiClient } from '../../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../../support/mock-llm';

/**
 * One connection, requests one after another through the real gateway: each request's events
 * (its reservation, its settlement, its request-log entry) cost about ONE commit per request.
 * A settlement rides with the next reservation's commit; the request-log entry, written once its
 * settlement has committed, rides with the reservation after that, although the request log has
 * a group-commit handler of its own (the ledger's handlers are one commit group).
 *
 * The commits are counted by what they left: every event records the id of the transaction that
 * wrote it. The deferrals are made ten minutes long (a seam), so that the count does not depend
 * on how fast this machine is; the last settlement and log entry are committed when the test
 * waits for them (a reader's wait ends the deferral), which is proved by the wait returning.
 */

const MODEL = 'llama';
const REQUESTS = 12;
let upstream: MockLlm;
let tg: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig({ chunkIntervalMs: 1 }));
  tg = await startTestGateway({
    models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 64, operations: ['chat'] }],
    env: { LOG_LEVEL: 'warn' },
    deferrals: { deferMs: 600_000, requestLogDeferMs: 600_000 },
  });
  await addModel(tg.gateway.ledger, MODEL, { chat: { input: '1', output: '2' } }, 64);
});

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

test('sequential requests at one connection: the request-log entries ride in the reservations commits, about one commit per request', async () => {
  const g = tg.gateway;
  const accountId = await openAccount(g.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(g.keys, accountId);
  const client = openAiClient(tg.url, secret);
  for (let i = 0; i < REQUESTS; i++) {
    // Both shapes: a streamed answer's settlement and log entry come by the same way.
    if (i % 2 === 0) {
      const answer = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hello ${i}` }] });
      expect(answer.choices[0]!.message.content).toBe(`hello ${i}`);
    } else {
      const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: `hello ${i}` }], stream: true });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).toBe(`hello ${i}`);
    }
  }
  // Waiting ends the ten-minute deferrals: the last settlement and its log entry commit now.
  await g.settlements.settled(accountId);

  const wallet = (await g.ledger.store.readStream(accountStreamId(accountId))).events;
  const days = new Set(wallet.map((e) => e.recordedAt.toISOString().slice(0, 10)));
  const logged: RecordedEvent<DomainEvent>[] = [];
  for (const day of days) logged.push(...(await g.ledger.store.readStream(requestLogStreamId(accountId, day))).events);
  const placed = wallet.filter((e) => e.event.type === 'ReservationPlaced');
  const settled = wallet.filter((e) => e.event.type === 'ReservationSettled');
  expect(placed).toHaveLength(REQUESTS);
  expect(settled).toHaveLength(REQUESTS);
  expect(logged.filter((e) => e.event.type === 'RequestLogged')).toHaveLength(REQUESTS);

  // The transactions that wrote them, and what each wrote.
  const byTx = new Map<bigint, string[]>();
  for (const e of [...placed, ...settled, ...logged]) byTx.set(e.position.tx, [...(byTx.get(e.position.tx) ?? []), e.event.type]);
  const placedTx = new Set(placed.map((e) => e.position.tx));
  // Every log entry shares its commit with a later request's reservation (before: each was
  // committed by the request log's own flush, in a transaction of its own), but the last two,
  // which have no later reservation: the wait above committed them...
  const loggedAlone = logged.filter((e) => !placedTx.has(e.position.tx));
  expect(loggedAlone.length).toBeLessThanOrEqual(2);
  // ...and so does every settlement but the last: one commit per request, and a few at the end.
  const settledAlone = settled.filter((e) => !placedTx.has(e.position.tx));
  expect(settledAlone.length).toBeLessThanOrEqual(1);
  expect(byTx.size).toBeLessThanOrEqual(REQUESTS + 3);
  // A commit that carries all three: an entry, a settlement and the reservation they rode with.
  expect([...byTx.values()].some((types) => new Set(types).size === 3)).toBe(true);
});
