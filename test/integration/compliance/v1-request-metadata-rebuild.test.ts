import { randomBytes, randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { createPostgresEventStore } from '../../../adapters/eventstore/postgres';
import { migrate } from '../../../adapters/postgres/migrate';
import { migrations } from '../../../adapters/postgres/migrations';
import { accountStreamId } from '../../../domain/account';
import { domainEventCodec, type DomainEvent } from '../../../domain/events';
import type { EncodedEvent, EventCodec } from '../../../src/ports/event-store';
import { replayProjections } from '../../../src/finance/replay';
import { projections } from '../../../src/read-models/registry';
import { createTestDatabase } from '../../support/database';
import { dumpDatabase } from '../../support/e2e-setup';
import { ev } from '../../unit/domain/account/fixtures';

/**
 * Request metadata already written inside wallet events (issue 16): settlements and releases
 * stored at version 1 carry `request` (upstream, HTTP status, latency, time to first token).
 * Events are immutable, so the stored rows keep it; a rebuild of every read model from such a log
 * keeps none of it: the upcasters drop it on read. The money of those events is all there.
 */

const MARKER = `gpu-${randomBytes(6).toString('hex')}`;
const request = { upstream: `http://${MARKER}:8000/v1`, httpStatus: 200, stream: true, latencyMs: 812, timeToFirstTokenMs: 95 };

/** Writes what it is given, as stored: events of an older version, exactly as they were written then. */
const asStored: EventCodec<EncodedEvent> = { encode: (e) => e, decode: (e) => e };

function storedV1(event: DomainEvent, extra: Record<string, unknown>): EncodedEvent {
  const stored = domainEventCodec.encode(event);
  return {
    type: stored.type,
    data: { ...(stored.data as Record<string, unknown>), ...extra } as never,
    metadata: { ...(stored.metadata as Record<string, unknown>), schemaVersion: 1 } as never,
  };
}

let pool: Pool;
let databaseUrl: string;

beforeAll(async () => {
  databaseUrl = await createTestDatabase('v1meta');
  pool = new Pool({ connectionString: databaseUrl, max: 4 });
  await migrate(pool, migrations);
});
afterAll(() => pool?.end());

test('a rebuild of every read model from version-1 settlements and releases keeps their money and none of their request metadata', async () => {
  const accountId = `acct_${randomUUID().slice(0, 8)}`;
  const now = new Date().toISOString();
  const placed = (requestId: string) =>
    ev(
      'ReservationPlaced',
      { requestId, keyId: 'key-1', model: 'llama', operation: 'chat', amount: 100n, priceVersion: 1, expiresAt: now, instanceId: null },
      now,
    );
  const events: EncodedEvent[] = [
    domainEventCodec.encode(ev('AccountOpened', { accountId, displayNameCiphertext: 'enc:name', emailCiphertext: 'enc:email' }, now)),
    domainEventCodec.encode(ev('TopUpCompleted', { paymentReference: 'pay-1', amount: 10_000_000n, autoTopUpAttemptId: null }, now)),
    domainEventCodec.encode(placed('req-1')),
    storedV1(
      ev(
        'ReservationSettled',
        {
          requestId: 'req-1',
          keyId: 'key-1',
          model: 'llama',
          operation: 'chat',
          reservedAmount: 100n,
          actualCost: 42n,
          fromPromo: [],
          fromPurchased: 42n,
          usage: { inputTokens: 10n, outputTokens: 16n, estimated: false },
          priceVersion: 1,
          outcome: 'completed',
        },
        now,
      ),
      { request },
    ),
    domainEventCodec.encode(placed('req-2')),
    storedV1(ev('ReservationReleased', { requestId: 'req-2', amount: 100n, reason: 'upstream_error_no_tokens' }, now), {
      request: { ...request, httpStatus: 503 },
    }),
  ];
  await createPostgresEventStore(pool, asStored).appendToStream(
    accountStreamId(accountId),
    events.map((event) => ({ id: randomUUID(), event })),
    { expectedVersion: 'no_stream' },
  );
  const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec);

  // The stored events hold the metadata (immutable); read, they are at version 2 without it.
  const before = await dumpDatabase(databaseUrl);
  expect(before.rows.filter((row) => row.includes(MARKER)).map((row) => row.split(':')[0])).toEqual(['events', 'events']);
  const read = (await store.readStream(accountStreamId(accountId))).events.map((e) => e.event);
  expect(read.find((e) => e.type === 'ReservationSettled')?.data).not.toHaveProperty('request');

  const result = await replayProjections(pool, store, projections);
  expect(result.events).toBe(events.length);

  // Rebuilt: the marker is in the stored events and nowhere else; the money is in the read models.
  const after = await dumpDatabase(databaseUrl);
  expect(after.rows.filter((row) => row.includes(MARKER) && !row.startsWith('events: '))).toEqual([]);
  const { rows: balance } = await pool.query<{ purchased: string }>('SELECT purchased::text AS purchased FROM balances WHERE account_id = $1', [accountId]);
  expect(balance).toEqual([{ purchased: (10_000_000n - 42n).toString() }]);
  const { rows: usage } = await pool.query<{ cost: string; input: string; output: string; latency: string }>(
    `SELECT sum(cost)::text AS cost, sum(input_tokens)::text AS input, sum(output_tokens)::text AS output,
            sum(latency_ms_sum + latency_count)::text AS latency FROM usage_daily WHERE account_id = $1`,
    [accountId],
  );
  // The old events' latencies are not counted again: the usage latency comes from the request log only.
  expect(usage).toEqual([{ cost: '42', input: '10', output: '16', latency: '0' }]);
});
