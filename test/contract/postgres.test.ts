import { randomUUID } from 'node:crypto';
import { appendThroughFunction, createPostgresEventStore, eventStoreMigrations } from '../../adapters/eventstore/postgres';
import { migrate } from '../../adapters/postgres/migrate';
import { createPool } from '../../adapters/postgres/pool';
import { createTestDatabase } from '../support/database';
import { until } from '../support/wait';
import { describeEventStoreContract, testEventCodec, type ContractSubject } from './event-store.contract';
import { START } from '../../src/ports/event-store';

describeEventStoreContract('PostgreSQL', {
  async create(codec): Promise<ContractSubject> {
    // Enough connections that fifty appends really run at once.
    const pool = createPool({ connectionString: await createTestDatabase('es'), max: 55 });
    await migrate(pool, eventStoreMigrations);
    const store = createPostgresEventStore(pool, codec, { pollIntervalMs: 50 });
    return {
      store,
      async writeUndecodable(streamId) {
        // Schema drift: a Deposited whose amount is no longer a decimal string.
        const encoded = { type: 'Deposited', data: { amount: 'twelve', note: 'drifted' }, metadata: {} };
        await appendThroughFunction(pool, [{ streamId, expectedVersion: 'no_stream', events: [{ id: randomUUID(), encoded }] }], { notify: true });
      },
      async beginSlowAppend(streamId, events) {
        const client = await pool.connect();
        await client.query('BEGIN');
        // The insert takes the transaction id now, so this writer holds the lower position.
        await appendThroughFunction(
          client,
          [{ streamId, expectedVersion: 'no_stream', events: events.map((e) => ({ id: e.id, encoded: codec.encode(e.event) })) }],
          { notify: true },
        );
        return {
          async commit() {
            try {
              await client.query('COMMIT');
            } finally {
              client.release();
            }
          },
        };
      },
      async dispose() {
        await store.close();
        await pool.end();
      },
    };
  },
});

describe('PostgreSQL event store: decoding', () => {
  test('events this store appended are not decoded again when its readers read them back; others are decoded once', async () => {
    const pool = createPool({ connectionString: await createTestDatabase('es'), max: 4 });
    await migrate(pool, eventStoreMigrations);
    let decoded = 0;
    const counting = {
      encode: testEventCodec.encode,
      decode: (stored: Parameters<typeof testEventCodec.decode>[0]) => (decoded++, testEventCodec.decode(stored)),
    };
    const store = createPostgresEventStore(pool, counting, { pollIntervalMs: 50 });
    try {
      const own = `own-${randomUUID()}`;
      await store.appendToStream(own, [{ id: randomUUID(), event: { type: 'Deposited', data: { amount: 5n, note: 'mine' } } }], {
        expectedVersion: 'no_stream',
      });
      const read = await store.readStream(own);
      expect(read.events.map((e) => e.event)).toEqual([{ type: 'Deposited', data: { amount: 5n, note: 'mine' } }]);
      // readAll shows what is below every open transaction's id, and ids are the cluster's: a
      // transaction another test file holds open in its own database hides this append for a
      // moment (a CI run read 0 here). Waited for, then read: still not decoded.
      const all = await until(
        async () => {
          const events = await store.readAll(START);
          return events.length > 0 ? events : undefined;
        },
        { what: 'the append below the horizon' },
      );
      expect(all.map((e) => e.event)).toEqual([{ type: 'Deposited', data: { amount: 5n, note: 'mine' } }]);
      expect(decoded).toBe(0);
      // Written by another process (straight into the table): decoded on the first read, not the second.
      const other = `other-${randomUUID()}`;
      const encoded = testEventCodec.encode({ type: 'Withdrawn', data: { amount: 2n } });
      await appendThroughFunction(pool, [{ streamId: other, expectedVersion: 'no_stream', events: [{ id: randomUUID(), encoded }] }], { notify: false });
      expect((await store.readStream(other)).events.map((e) => e.event)).toEqual([{ type: 'Withdrawn', data: { amount: 2n } }]);
      await store.readStream(other);
      expect(decoded).toBe(1);
    } finally {
      await store.close();
      await pool.end();
    }
  });
});
