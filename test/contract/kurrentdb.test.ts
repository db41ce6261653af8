/**
 * The event store contract against a real KurrentDB / EventStoreDB, when EVENTSTORE_URL names one
 * (esdb://, esdb+discover://, kurrentdb:// or kurrentdb+discover://). KurrentDB has a single log,
 * so every create() gets a fresh stream prefix; the store under test reads and follows only
 * streams with that prefix, which is what makes the log look empty to each subject.
 */
import { randomUUID } from 'node:crypto';
import { ANY, EventStoreDBClient, jsonEvent } from '@eventstore/db-client';
import { createKurrentEventStore } from '../../adapters/eventstore/kurrentdb/store';
import { toClientConnectionString, toStreamName } from '../../adapters/eventstore/kurrentdb/mapping';
import { describeEventStoreContract, type ContractFactory } from './event-store.contract';

const SKIP_REASON = 'KurrentDB contract tests skipped: EVENTSTORE_URL is not set (no KurrentDB server can run on this machine)';
const url = process.env['EVENTSTORE_URL']?.trim() ?? '';

function kurrentFactory(connectionString: string): ContractFactory {
  if (!/^(esdb|kurrentdb)(\+discover)?:\/\//i.test(connectionString)) {
    throw new Error(`EVENTSTORE_URL must start with esdb:// or kurrentdb:// (optionally +discover), got ${connectionString.split('://')[0]}://...`);
  }
  return {
    async create(codec) {
      const client = EventStoreDBClient.connectionString(toClientConnectionString(connectionString));
      const prefix = `contract-${randomUUID()}-`;
      const store = createKurrentEventStore(client, codec, { streamPrefix: prefix });
      return {
        store,
        async writeUndecodable(streamId) {
          // Bypasses the codec: a type no codec knows, with data of no known shape.
          const drifted = jsonEvent({ type: 'SchemaDriftedEvent', data: { legacyAmount: 12.5, unit: 'dollars' } });
          await client.appendToStream(toStreamName(prefix, streamId), drifted, { expectedRevision: ANY });
        },
        // beginSlowAppend stays undefined: KurrentDB assigns positions at commit, so a slow writer
        // cannot hold a lower position open while a faster one commits a higher one.
        async dispose() {
          await store.close();
          await client.dispose();
        },
      };
    },
  };
}

if (url === '') {
  // Straight to stderr: jest does not show console output of a file whose tests are all skipped.
  process.stderr.write(`\n${SKIP_REASON}\n`);
  describe.skip(SKIP_REASON, () => {
    if (typeof describeEventStoreContract === 'function') {
      // Registers the whole contract as skipped, so the report lists each test it did not run.
      describeEventStoreContract('kurrentdb', {
        create: () => Promise.reject(new Error(SKIP_REASON)),
      });
    } else {
      test.skip('kurrentdb event store contract', () => {
        throw new Error(SKIP_REASON);
      });
    }
  });
} else {
  describeEventStoreContract('kurrentdb', kurrentFactory(url));
}
