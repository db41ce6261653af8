import { formatUsd, usd } from '../../domain/money';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { startMockLlm, slowStreamMockLlmConfig, type MockLlm } from '../support/mock-llm';
import { addModel, issueKey, openAccount, openAiClient } from '../support/e2e-setup';

/**
 * Issue 12, part 5: reading an account never waits for its requests. While a long stream of the
 * account is open, every customer read answers (before the stream ends) and shows the stream's
 * reservation as held; once the stream is over, a read shows it charged.
 */

let upstream: MockLlm;
let gw: TestGateway;

beforeAll(async () => {
  // 4 characters every 250 ms: the 120-character answer below streams for about 7.5 s.
  upstream = await startMockLlm(slowStreamMockLlmConfig(250));
  gw = await startTestGateway({
    models: [{ id: 'slow', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 1_000, operations: ['chat'] }],
  });
  await addModel(gw.gateway.ledger, 'slow', { chat: { input: '1', output: '2' } }, 1_000);
});

afterAll(async () => {
  await gw?.stop();
  await upstream?.stop();
});

const READS = ['/v1/account', '/v1/account/keys', '/v1/usage', '/v1/account/transactions', '/v1/account/requests'] as const;

it('answers every account read while a stream of the account is open, showing its hold', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId, ['inference', 'account_read']);
  const client = openAiClient(gw.url, secret);
  const events: string[] = [];

  const stream = await client.chat.completions.create({
    model: 'slow',
    max_tokens: 100,
    stream: true,
    messages: [{ role: 'user', content: 'x'.repeat(120) }],
  });
  const chunks = stream[Symbol.asyncIterator]();
  // The first chunk: the reservation is committed (nothing is relayed before) and the stream is open.
  expect((await chunks.next()).done).toBe(false);
  const streamed = (async () => {
    for (let next = await chunks.next(); !next.done; next = await chunks.next());
    events.push('stream ended');
  })();

  const get = async (path: string) => {
    // The safety net is generous; the verdict is the order of events below.
    const response = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${secret}` }, signal: AbortSignal.timeout(30_000) });
    expect(response.status).toBe(200);
    return response.json() as Promise<Record<string, unknown>>;
  };

  const during = (await get('/v1/account')) as { open_reservations: { model: string; amount_usd: string }[]; reserved_usd: string; available_usd: string };
  events.push('account read answered');
  for (const path of READS.slice(1)) {
    await get(path);
    events.push(`${path} answered`);
  }
  await streamed;

  expect(events).toEqual(['account read answered', ...READS.slice(1).map((path) => `${path} answered`), 'stream ended']);
  // The open stream is shown as held: one open reservation, its amount reserved and not available.
  expect(during.open_reservations).toHaveLength(1);
  expect(during.open_reservations[0]!.model).toBe('slow');
  expect(during.reserved_usd).toBe(during.open_reservations[0]!.amount_usd);
  expect(during.reserved_usd).not.toBe(formatUsd(0n));
  expect(during.available_usd).toBe(formatUsd(usd('10') - usd(during.reserved_usd)));

  // After the stream, a read shows it charged (read-your-writes), nothing held.
  const after = (await get('/v1/account')) as { open_reservations: unknown[]; reserved_usd: string; totals: { usage_cost_usd: string } };
  expect(after.open_reservations).toHaveLength(0);
  expect(after.reserved_usd).toBe(formatUsd(0n));
  expect(after.totals.usage_cost_usd).not.toBe(formatUsd(0n));
}, 90_000);
