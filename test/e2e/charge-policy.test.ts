import OpenAI from 'openai';
import { countTextTokens } from '../../adapters/inference';
import { requestCost, usd } from '../../domain/money';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, freePort, slowStreamMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { chatChunk, sleep, startScriptedUpstream, startSse, type ScriptedUpstream } from '../integration/inference/scripted-upstream';
import { startGatedProxy, type GatedProxy } from '../support/gated-proxy';
import { within } from '../support/wait';
import {
  accountEvents,
  accountState,
  addModel,
  eventsOfType,
  issueKey,
  openAccount,
  openAiClient,
  rejectionOf,
  requestEvents,
  requestLogEntry,
} from '../support/e2e-setup';

/**
 * Every row of DESIGN.md "What is charged", end to end: the openai client, the real gateway,
 * real upstream processes (mock-llm; a scripted server for a cut stream), the stored ledger.
 */

const price = { input: '2.000001', output: '8.000003' };
const priceMicro = { inputPerMillion: usd(price.input), outputPerMillion: usd(price.output) };
const longPrompt = 'The quick brown fox jumps over the lazy dog again and again. '.repeat(4);

let upstream: MockLlm;
let slowUpstream: MockLlm;
let slowGate: GatedProxy;
let scripted: ScriptedUpstream;
let gw: TestGateway;

beforeAll(async () => {
  const deadPort = await freePort();
  [upstream, slowUpstream, scripted] = await Promise.all([
    startMockLlm(defaultMockLlmConfig()),
    // 4 characters a chunk, so an answer is many events (reached through a gate, below).
    startMockLlm(slowStreamMockLlmConfig(50)),
    startScriptedUpstream(async (request, res) => {
      startSse(res);
      // 'cut': three chunks, then a crash; 'stall': an answer that never ends on its own.
      const cut = request.body.model === 'cut';
      for (let i = 0; !cut || i < 3; i++) {
        res.write(chatChunk(`part ${i} of the answer `));
        await sleep(cut ? 20 : 100);
        if (res.destroyed) return;
      }
      // A crash mid-answer: the connection drops with no finish_reason and no [DONE].
      res.socket?.destroy();
    }),
  ]);
  // The slow upstream's stream stops at this gate after 4 events and stays held.
  slowGate = await startGatedProxy(slowUpstream.baseUrl, 4);
  const model = (id: string, baseUrl: string) => ({ id, upstreams: [{ baseUrl, capacity: 4 }], maxOutputTokens: 256, operations: ['chat' as const] });
  gw = await startTestGateway({
    models: [
      model('llama', upstream.baseUrl),
      model('failing', upstream.baseUrl),
      model('moderated', upstream.baseUrl),
      model('slow', slowGate.baseUrl),
      model('cut', scripted.baseUrl),
      model('stall', scripted.baseUrl),
      model('dead', `http://127.0.0.1:${deadPort}/v1`),
    ],
  });
  for (const id of ['llama', 'failing', 'moderated', 'slow', 'cut', 'stall', 'dead']) await addModel(gw.gateway.ledger, id, { chat: price }, 256);
});

afterAll(async () => {
  await gw?.stop();
  await slowGate?.close();
  await Promise.all([upstream?.stop(), slowUpstream?.stop(), scripted?.close()]);
});

async function customer() {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  return { accountId, secret, client: openAiClient(gw.url, secret) };
}

/** What the requests wrote on the account, after every settlement of this process ended. */
async function afterRequests(accountId: string) {
  await gw.gateway.settlements.settled(accountId);
  const events = requestEvents(await accountEvents(gw.gateway.ledger, accountId));
  const state = await accountState(gw.gateway.ledger, accountId);
  return { events, state };
}

/** One reservation, released with `reason`; nothing charged. */
async function expectReleased(accountId: string, reason: string) {
  const { events, state } = await afterRequests(accountId);
  expect(events.map((e) => e.type)).toEqual(['ReservationPlaced', 'ReservationReleased']);
  const [released] = eventsOfType(events, 'ReservationReleased');
  expect(released!.data.reason).toBe(reason);
  expect(released!.data.requestId).toBe(eventsOfType(events, 'ReservationPlaced')[0]!.data.requestId);
  expect(state.purchased).toBe(usd('10'));
  expect(state.openReservations.size).toBe(0);
  expect(state.totalUsage.cost).toBe(0n);
  return released!;
}

/** One reservation, settled with `outcome` at exactly requestCost(usage, price). */
async function expectSettled(accountId: string, outcome: string) {
  const { events, state } = await afterRequests(accountId);
  expect(events.map((e) => e.type)).toEqual(['ReservationPlaced', 'ReservationSettled']);
  const [settled] = eventsOfType(events, 'ReservationSettled');
  expect(settled!.data.outcome).toBe(outcome);
  expect(settled!.data.actualCost).toBe(requestCost(settled!.data.usage, priceMicro));
  expect(state.purchased).toBe(usd('10') - settled!.data.actualCost);
  expect(state.openReservations.size).toBe(0);
  return settled!;
}

it('malformed body: 400 BadRequestError, and no event at all, not even a reservation', async () => {
  const { accountId, client, secret } = await customer();
  const error = await rejectionOf(client.chat.completions.create({ model: 'llama', messages: [{ role: 'wizard', content: 'hi' } as never] }));
  expect(error).toBeInstanceOf(OpenAI.BadRequestError);
  expect(error).toMatchObject({ status: 400, type: 'invalid_request_error', param: 'messages[0].role' });

  const raw = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: '{"model": "llama", "messages": [',
  });
  expect(raw.status).toBe(400);
  expect(await raw.json()).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_json' } });

  const { events } = await afterRequests(accountId);
  expect(events).toEqual([]);
});

it('unknown model: 404 NotFoundError model_not_found, and no event', async () => {
  const { accountId, client } = await customer();
  const error = await rejectionOf(client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }));
  expect(error).toBeInstanceOf(OpenAI.NotFoundError);
  expect(error).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
  expect((await afterRequests(accountId)).events).toEqual([]);
});

it('upstream refusing connections: 503, reservation released (upstream_error_no_tokens), not charged', async () => {
  const { accountId, client } = await customer();
  const error = await rejectionOf(client.chat.completions.create({ model: 'dead', messages: [{ role: 'user', content: 'hi' }] }));
  expect(error).toBeInstanceOf(OpenAI.InternalServerError);
  expect(error).toMatchObject({ status: 503, code: 'upstream_unavailable' });
  const released = await expectReleased(accountId, 'upstream_error_no_tokens');
  expect(released.data).not.toHaveProperty('request');
  expect(await requestLogEntry(gw.gateway.ledger, accountId, released.data.requestId, released.metadata.occurredAt)).toMatchObject({
    upstream: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+\/v1$/),
    httpStatus: null,
    ended: 'released',
    outcome: 'upstream_error_no_tokens',
  });
});

it('upstream 500: an error without the upstream body (which echoes the prompt), released, not charged', async () => {
  const { accountId, client } = await customer();
  const prompt = 'please do not repeat this sentence-4711';
  const error = await rejectionOf(client.chat.completions.create({ model: 'failing', messages: [{ role: 'user', content: prompt }] }));
  expect(error).toBeInstanceOf(OpenAI.InternalServerError);
  const e = error as InstanceType<typeof OpenAI.InternalServerError>;
  expect(e.status).toBe(502);
  expect(e.code).toBe('upstream_error');
  expect(e.message).not.toContain('sentence-4711');
  expect(e.message).not.toContain('internal failure while processing');
  expect(JSON.stringify(e.error)).not.toContain('sentence-4711');
  const released = await expectReleased(accountId, 'upstream_error_no_tokens');
  expect(await requestLogEntry(gw.gateway.ledger, accountId, released.data.requestId, released.metadata.occurredAt)).toMatchObject({ httpStatus: 500 });
});

it('upstream cut mid-stream: the client stream errors; the relayed tokens are charged, estimated', async () => {
  const { accountId, client } = await customer();
  const stream = await client.chat.completions.create({ model: 'cut', messages: [{ role: 'user', content: 'go' }], stream: true });
  let text = '';
  const failure = await rejectionOf(
    (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    })(),
  );
  expect(failure).toBeInstanceOf(OpenAI.APIError);
  expect((failure as Error).message).toMatch(/ended before the answer was complete/);
  expect(text).toBe('part 0 of the answer part 1 of the answer part 2 of the answer ');

  const settled = await expectSettled(accountId, 'upstream_error');
  expect(settled.data.usage.estimated).toBe(true);
  expect(settled.data.usage.outputTokens).toBe(BigInt(countTextTokens(text)));
  expect(settled.data.actualCost).toBeGreaterThan(0n);
});

it('client aborting mid-stream (mock-llm): the upstream is cancelled and the tokens so far are charged', async () => {
  const { accountId, client } = await customer();
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'slow', messages: [{ role: 'user', content: longPrompt }], stream: true, max_tokens: 200 },
    { signal: controller.signal },
  );
  let text = '';
  let aborted = false;
  // The SDK ends the iteration quietly on its own abort. The client hangs up mid-answer, once
  // the gate holds the rest (at the latest when the last event let through arrives).
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? '';
    if (slowGate.holding()) {
      aborted = true;
      controller.abort();
      break;
    }
  }
  expect(aborted).toBe(true);
  expect(text.length).toBeLessThan(longPrompt.length);

  // The rest of the answer is held at the gate for good, so the gateway can settle only by
  // giving up on it at the abort; and it closes the upstream connection while the rest is held.
  const settled = await within(expectSettled(accountId, 'client_disconnected'), 'the settlement after the abort');
  await within(slowGate.hungUpWhileHeld, 'the upstream connection to close while the rest of the answer was held');
  expect(slowGate.holding()).toBe(true);
  expect(gw.gateway.inference.inFlight('slow')).toEqual([0]);
  const produced = Number(settled.data.usage.outputTokens);
  expect(produced).toBeGreaterThanOrEqual(countTextTokens(text));
  expect(produced).toBeLessThan(countTextTokens(longPrompt) / 2);
  expect(settled.data.actualCost).toBeGreaterThan(0n);
});

it('client aborting mid-stream: the upstream sees its connection closed before its answer ends', async () => {
  const { accountId, client } = await customer();
  const seenBefore = scripted.seen.length;
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'stall', messages: [{ role: 'user', content: 'go' }], stream: true },
    { signal: controller.signal },
  );
  let chunks = 0;
  for await (const _chunk of stream) {
    if (++chunks === 2) {
      controller.abort();
      break;
    }
  }
  expect(chunks).toBe(2);
  const upstreamRequest = scripted.seen[seenBefore]!;
  // The 'stall' answer never ends on its own: the connection closes only because the gateway cancelled it.
  expect(await within(upstreamRequest.closedEarly, 'the upstream connection to close')).toBe(true);
  const settled = await expectSettled(accountId, 'client_disconnected');
  expect(settled.data.usage.outputTokens).toBeGreaterThan(0n);
});

it('moderation refusal: charged only the tokens the upstream reports', async () => {
  const { accountId, client } = await customer();
  const answer = await client.chat.completions.create({ model: 'moderated', messages: [{ role: 'user', content: 'something refused' }] });
  expect(answer.choices[0]!.finish_reason).toBe('content_filter');
  const settled = await expectSettled(accountId, 'moderation_refusal');
  expect(settled.data.usage).toEqual({ inputTokens: 9n, outputTokens: 0n, estimated: false });
  expect(settled.data.actualCost).toBe(requestCost({ inputTokens: 9n, outputTokens: 0n }, priceMicro));
});
