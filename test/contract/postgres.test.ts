import { randomUUID } from 'node:crypto';
import { appendThroughFunction, createPostgresEventStore, eventStoreMigrations } from '../../adapters/eventstore/postgres';
import { migrate } from '../../adapters/postgres/migrate';
import { createPool } from '../../adapters/postgres/pool';
import { createTestDatabase } from '../support/database';
import { describeEventStoreContract, type ContractSubject } from './event-store.contract';

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
