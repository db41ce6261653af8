import pg from 'pg';
import { accountStreamId } from '../../domain/account';
import { startScriptedUpstream, type ScriptedUpstream } from '../integration/inference/scripted-upstream';
import { accountEvents, addModel, eventsOfType, issueKey, openAccount } from '../support/e2e-setup';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { moneyOf } from '../support/ledger-checks';

/**
 * The reservation's commit fails (its database session is ended while it waits for the account's
 * row): the client is answered 503, retryable, in OpenAI's shape; nothing is relayed, nothing is
 * held or charged. The request is dispatched to the upstream while the reservation commits
 * (issue 17), so the upstream was asked: its request is cancelled when the commit fails, and
 * what it would have answered never reaches the client. (test/faults/commit-fails-after-dispatch
 * covers the stream and the conflict.)
 */

const MODEL = 'llama';

let upstream: ScriptedUpstream;
let gw: TestGateway;
let admin: pg.Client;

beforeAll(async () => {
  upstream = await startScriptedUpstream((request, res) => {
    // The request whose commit fails is held unanswered: the test sees whether the gateway cancels it.
    if (JSON.stringify(request.body).includes('second')) return;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1_700_000_000,
        model: MODEL,
        choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      }),
    );
  });
  gw = await startTestGateway({ models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 64, operations: ['chat'] }] });
  await addModel(gw.gateway.ledger, MODEL, { chat: { input: '1', output: '1' } }, 64);
  admin = new pg.Client({ connectionString: gw.databaseUrl });
  await admin.connect();
}, 60_000);

afterAll(async () => {
  await admin?.end();
  await gw?.stop();
  await upstream?.close();
});

it('a reservation whose commit fails is answered 503 retryable: the upstream request is cancelled, nothing is relayed, held or charged', async () => {
  const accountId = await openAccount(gw.gateway.ledger, { topUpUsd: '10' });
  const { secret } = await issueKey(gw.gateway.keys, accountId);
  const chat = (content: string) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content }] }),
    });
  // One request served: the path works, the key is verified and the account cached.
  expect((await chat('first')).status).toBe(200);
  await gw.gateway.settlements.settled(accountId);
  expect(upstream.seen).toHaveLength(1);
  const before = moneyOf(await accountEvents(gw.gateway.ledger, accountId));

  const blocker = new pg.Client({ connectionString: gw.databaseUrl, application_name: 'commit-fails-blocker' });
  await blocker.connect();
  let answer: Response;
  try {
    // Another session holds the account's stream row: the next reservation's commit waits for it.
    await blocker.query('BEGIN');
    await blocker.query('SELECT revision FROM streams WHERE stream_id = $1 FOR UPDATE', [accountStreamId(accountId)]);
    const pending = chat('second');
    // Dispatched while the reservation commits: the upstream has the request before the commit fails.
    await waitFor(async () => (upstream.seen.length === 2 ? true : undefined));
    const waiting = await waitFor(async () => {
      const { rows } = await admin.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name <> 'commit-fails-blocker'",
      );
      return rows[0]?.pid;
    });
    // The commit fails: its session is ended while it waits.
    await admin.query('SELECT pg_terminate_backend($1)', [waiting]);
    answer = await pending;
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    await blocker.end();
  }

  expect(answer.status).toBe(503);
  expect(answer.headers.get('retry-after')).toBe('1');
  const body = (await answer.json()) as { error: { type: string; code: string; message: string; param: unknown } };
  expect(body.error).toMatchObject({ type: 'server_error', code: 'service_unavailable', param: null });
  expect(body.error.message).toContain('nothing was charged');
  expect(body).not.toHaveProperty('choices');
  // The upstream was asked speculatively, and its request cancelled: the connection closed before an answer.
  expect(upstream.seen).toHaveLength(2);
  expect(await upstream.seen[1]!.closedEarly).toBe(true);

  // Nothing held or charged: the stream has only the first request's reservation, settled, and
  // the balance is what it was (the gateway's release of the failed placement, once the row is
  // free, finds no such reservation and writes nothing).
  await gw.gateway.settlements.settled(accountId);
  const events = await accountEvents(gw.gateway.ledger, accountId);
  expect(eventsOfType(events, 'ReservationPlaced')).toHaveLength(1);
  expect(eventsOfType(events, 'ReservationSettled')).toHaveLength(1);
  expect(moneyOf(events)).toEqual(before);
  // And the account serves again at once.
  expect((await chat('third')).status).toBe(200);
  expect(upstream.seen).toHaveLength(3);
}, 60_000);

async function waitFor<T>(check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000; // a safety net only
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
