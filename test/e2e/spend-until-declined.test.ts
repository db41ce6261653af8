import OpenAI from 'openai';
import { formatUsd, requestCost, usd } from '../../domain/money';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { defaultMockLlmConfig, startMockLlm, type MockLlm } from '../support/mock-llm';
import { accountEvents, accountState, addModel, eventsOfType, issueKey, openAccount } from '../support/e2e-setup';

/**
 * A customer with USD 10 of credit spends it through the openai client until the gateway
 * declines: RateLimitError insufficient_quota, not retried by the SDK, and the ledger ends
 * with balance = top-up - settled costs, exactly, with no reservation left open.
 */

// 18 tokens per request (11 in, 7 out, as mock-llm reports) at USD 20,000 per million: USD 0.36
// charged; the estimate with max_tokens 100 is about USD 2.4, so roughly 20 requests fit.
const price = { input: '20000', output: '20000.000001' };

let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  gw = await startTestGateway({
    models: [{ id: 'pricey', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 1_000, operations: ['chat'] }],
  });
  await addModel(gw.gateway.ledger, 'pricey', { chat: price }, 1_000);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

it('runs requests until declined; the ledger balances to the micro-USD', async () => {
  const { ledger, keys, settlements } = gw.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(keys, accountId);
  let attempts = 0;
  const countingFetch: typeof fetch = (input, init) => {
    attempts++;
    return fetch(input, init);
  };
  // Default retries on: the decline itself must stop the SDK from retrying.
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: secret, maxRetries: 2, fetch: countingFetch });

  let succeeded = 0;
  let declined: unknown;
  for (let i = 0; i < 60 && declined === undefined; i++) {
    try {
      const answer = await client.chat.completions.create({ model: 'pricey', max_tokens: 100, messages: [{ role: 'user', content: `request ${i}` }] });
      expect(answer.choices[0]!.finish_reason).toBe('stop');
      succeeded++;
    } catch (error) {
      declined = error;
    }
  }
  expect(succeeded).toBeGreaterThanOrEqual(10);
  expect(succeeded).toBeLessThanOrEqual(30);
  expect(declined).toBeInstanceOf(OpenAI.RateLimitError);
  const error = declined as InstanceType<typeof OpenAI.RateLimitError>;
  expect(error.code).toBe('insufficient_quota');
  expect(error.status).toBe(429);
  expect(error.headers?.get('x-should-retry')).toBe('false');
  // One HTTP attempt per call: nothing was retried.
  expect(attempts).toBe(succeeded + 1);

  await settlements.settled(accountId);
  const events = await accountEvents(ledger, accountId);
  const placed = eventsOfType(events, 'ReservationPlaced');
  const settled = eventsOfType(events, 'ReservationSettled');
  expect(placed).toHaveLength(succeeded); // the declined request reserved nothing
  expect(settled).toHaveLength(succeeded);
  expect(eventsOfType(events, 'ReservationReleased')).toHaveLength(0);
  const priceMicro = { inputPerMillion: usd(price.input), outputPerMillion: usd(price.output) };
  for (const e of settled) expect(e.data.actualCost).toBe(requestCost(e.data.usage, priceMicro));
  const spent = settled.reduce((sum, e) => sum + e.data.actualCost, 0n);
  const toppedUp = eventsOfType(events, 'TopUpCompleted').reduce((sum, e) => sum + e.data.amount, 0n);
  expect(toppedUp).toBe(usd('10'));

  const state = await accountState(ledger, accountId);
  expect(state.purchased).toBe(toppedUp - spent);
  expect(state.openReservations.size).toBe(0);
  expect(state.reserved).toBe(0n);

  // The message states what was available and what the request needed, in USD.
  const available = formatUsd(state.purchased);
  expect(error.message).toContain(`available balance is USD ${available}`);
  const needed = /needs up to USD (\d+\.\d{6})/.exec(error.message)?.[1];
  expect(needed).toBeDefined();
  expect(usd(needed!)).toBeGreaterThan(state.purchased);
});
