import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { appendThroughFunction } from '../../adapters/eventstore/postgres/append';
import { accountDecider, accountStreamId, availableOf, type AccountPolicy, type AccountState } from '../../domain/account';
import { domainEventCodec } from '../../domain/events';
import { systemMetadata } from '../../src/command-metadata';
import { startFaultUpstream, type FaultUpstream } from '../support/fault-upstream';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { accountEvents, accountState, addModel, issueKey, openAccount } from '../support/e2e-setup';
import { until, within } from '../support/wait';

/**
 * The request is dispatched to the upstream while its reservation commits (issue 17), and nothing
 * reaches the client until that commit is durable. Here the commit fails after the dispatch: the
 * account's stream row is held by another transaction, so the gateway's append waits on it while
 * the upstream already receives the request and streams its first events; then that append fails
 * (its database connection is terminated, or another writer spends the credit first). The
 * upstream sees its request cancelled, the client gets the answer it got before (503, or 429
 * after the decision is made again), not one byte of the upstream's answer, and nothing is charged.
 * No timing decides anything: the blocking transaction holds the commit for as long as the test
 * needs.
 */

// streams 3 chunks at once, then stays silent with the connection open
const MODEL = 'stall-mid-stream';

let upstream: FaultUpstream;
let tg: TestGateway;

beforeAll(async () => {
  upstream = await startFaultUpstream();
  tg = await startTestGateway({
    models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 8 }], maxOutputTokens: 64, operations: ['chat'] }],
  });
  await addModel(tg.gateway.ledger, MODEL, { chat: { input: '1', output: '2' } }, 64);
}, 60_000);

afterAll(async () => {
  await tg?.stop();
  await upstream?.stop();
});

/** A transaction that holds the account's stream row (as another gateway's append would), so the gateway's own append waits. */
async function holdStreamRow(accountId: string): Promise<Client> {
  const client = new Client({ connectionString: tg.databaseUrl, application_name: 'speculation-blocker' });
  await client.connect();
  await client.query('BEGIN');
  const { rows } = await client.query('SELECT revision FROM streams WHERE stream_id = $1 FOR UPDATE', [accountStreamId(accountId)]);
  expect(rows).toHaveLength(1);
  return client;
}

/** The gateway's append, waiting on the held row: its server process id. */
async function blockedAppend(observer: Client): Promise<number> {
  return until(
    async () => {
      const { rows } = await observer.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND application_name <> 'speculation-blocker'",
      );
      return rows[0]?.pid;
    },
    { what: "the gateway's append waiting on the held stream row" },
  );
}

/**
 * Another gateway reserves `amount` on the account and commits first, through the transaction that
 * holds the stream row: the gateway's own append, waiting on that row, then conflicts.
 */
async function otherWriterReservesFirst(
  blocker: Client,
  accountId: string,
  known: { state: AccountState; revision: bigint | null },
  policy: AccountPolicy,
  amount: bigint,
): Promise<void> {
  const decision = accountDecider(policy).decide(
    {
      type: 'PlaceReservation',
      data: { requestId: `req_${randomUUID()}`, keyId: 'other-gateway', model: MODEL, operation: 'chat', amount, priceVersion: 1 },
      metadata: systemMetadata('test'),
    },
    known.state,
  );
  if (!decision.ok) throw new Error(`the other writer's reservation was refused: ${decision.error.error}`);
  await appendThroughFunction(
    blocker,
    [
      {
        streamId: accountStreamId(accountId),
        expectedVersion: known.revision!,
        events: decision.events.map((event) => ({ id: randomUUID(), encoded: domainEventCodec.encode(event) })),
      },
    ],
    { notify: false },
  );
  await blocker.query('COMMIT');
}

/**
 * What each test starts from: an account with USD 20 and a key, its state cached in the gateway
 * (as after serving it once), its stream row held by `blocker` so the gateway's append waits, an
 * `observer` connection, and waits on the upstream's counters as they were before the request.
 */
async function arrange() {
  const { ledger, keys } = tg.gateway;
  const accountId = await openAccount(ledger, { topUpUsd: '20' });
  const { keyId, secret } = await issueKey(keys, accountId);
  const known = await ledger.accounts.load(accountStreamId(accountId));
  const receivedBefore = upstream.received[MODEL] ?? 0;
  const cancelledBefore = upstream.cancelled[MODEL] ?? 0;
  const blocker = await holdStreamRow(accountId);
  const observer = new Client({ connectionString: tg.databaseUrl });
  await observer.connect();
  return {
    accountId,
    keyId,
    secret,
    known,
    blocker,
    observer,
    receivedBefore,
    /** The reservation was decided in memory and its commit is held: the upstream has the request already. */
    dispatched: () =>
      until(() => ((upstream.received[MODEL] ?? 0) > receivedBefore ? true : undefined), { what: 'the speculative dispatch to reach the upstream' }),
    cancelled: (what = 'the upstream to see its request cancelled') =>
      until(() => ((upstream.cancelled[MODEL] ?? 0) > cancelledBefore ? true : undefined), { what }),
    async release() {
      await blocker.query('ROLLBACK').catch(() => undefined); // committed already where another writer went first
      await blocker.end();
      await observer.end();
    },
  };
}

async function streamingRequest(secret: string): Promise<{ status: number; contentType: string | null; text: string }> {
  const response = await fetch(`${tg.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream: true, max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
  });
  return { status: response.status, contentType: response.headers.get('content-type'), text: await response.text() };
}

function openAiError(text: string): { code?: unknown; type?: unknown } {
  const parsed = JSON.parse(text) as { error: { message: unknown; type: unknown; param: unknown; code: unknown } };
  expect(Object.keys(parsed.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  return parsed.error;
}

test('the database connection is lost mid-commit: the upstream is cancelled, the client gets 503, nothing relayed or charged', async () => {
  const { ledger } = tg.gateway;
  const held = await arrange();
  const { accountId, observer } = held;
  const before = await accountEvents(ledger, accountId);
  try {
    const answer = streamingRequest(held.secret);
    await held.dispatched();
    const pid = await blockedAppend(observer);
    await observer.query('SELECT pg_terminate_backend($1)', [pid]);

    const { status, contentType, text } = await within(answer, 'the answer');
    expect(status).toBe(503);
    expect(contentType).toMatch(/^application\/json/);
    expect(openAiError(text).code).toBe('service_unavailable');
    expect(text).not.toContain('data:');
    await held.cancelled();
  } finally {
    await held.release();
  }

  // Nothing was written for the request, and the credit is whole (the release of a placement of
  // unknown outcome finds nothing to release).
  await tg.gateway.settlements.settled(accountId);
  expect(await accountEvents(ledger, accountId)).toEqual(before);
  const state = await accountState(ledger, accountId);
  expect(state.openReservations.size).toBe(0);
  expect(availableOf(state)).toBe(20_000_000n);
});

test('another writer spends the credit first: the upstream is cancelled, the request is decided again and refused (429), nothing relayed or charged', async () => {
  const { ledger, policy } = tg.gateway;
  const held = await arrange();
  const { accountId, known } = held;
  try {
    const answer = streamingRequest(held.secret);
    await held.dispatched();
    await blockedAppend(held.observer);
    // Another gateway reserves the whole available credit and commits first.
    await otherWriterReservesFirst(held.blocker, accountId, known, policy, availableOf(known.state));

    const { status, contentType, text } = await within(answer, 'the answer');
    expect(status).toBe(429);
    expect(contentType).toMatch(/^application\/json/);
    expect(openAiError(text).code).toBe('insufficient_quota');
    expect(text).not.toContain('data:');
    await held.cancelled();
  } finally {
    await held.release();
  }

  // Only the other writer's reservation is on the stream.
  const placed = (await accountEvents(ledger, accountId)).filter((e) => e.type === 'ReservationPlaced');
  expect(placed.map((e) => e.type === 'ReservationPlaced' && e.data.keyId)).toEqual(['other-gateway']);
});

test('another writer moves the account but leaves credit: the speculative request is cancelled, and dispatched afresh once the reservation is decided again and durable', async () => {
  const { ledger, policy } = tg.gateway;
  const held = await arrange();
  const { accountId, keyId, secret, known } = held;
  const client = new AbortController();
  let firstBytes: string;
  try {
    const answer = fetch(`${tg.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, stream: true, max_tokens: 16, messages: [{ role: 'user', content: 'hello' }] }),
      signal: client.signal,
    });
    await held.dispatched();
    await blockedAppend(held.observer);
    // Another gateway reserves one dollar and commits first: the gateway's append conflicts.
    await otherWriterReservesFirst(held.blocker, accountId, known, policy, 1_000_000n);

    // Decided again on the moved stream, committed, then dispatched afresh: the client gets the stream.
    const response = await within(answer, 'the answer');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = response.body!.getReader();
    const { value } = await within(reader.read(), 'the first bytes of the stream');
    firstBytes = new TextDecoder().decode(value);
    // The speculative request was cancelled, and a second one sent after the commit.
    expect(upstream.received[MODEL]).toBe(held.receivedBefore + 2);
    await held.cancelled('the speculative request to be cancelled');
    client.abort();
  } finally {
    await held.release();
  }
  expect(firstBytes).toContain('data:');
  expect(firstBytes).toContain('word0');

  // One reservation of ours, placed once and ended (the client left mid-stream); nothing left open but the other writer's.
  await until(
    async () => {
      const s = await accountState(ledger, accountId);
      return s.openReservations.size === 1 ? true : undefined;
    },
    { what: "the gateway's reservation to be ended" },
  );
  const placed = (await accountEvents(ledger, accountId)).filter((e) => e.type === 'ReservationPlaced');
  expect(placed.map((e) => e.type === 'ReservationPlaced' && e.data.keyId).sort()).toEqual([keyId, 'other-gateway'].sort());
});
