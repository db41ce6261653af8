/**
 * The contract every EventStore adapter must pass. An adapter's test file calls
 * describeEventStoreContract once; see postgres.test.ts and kurrentdb.test.ts.
 *
 * (Body written by the PostgreSQL event store work; the exported shape below is fixed.)
 */
import type { EventCodec, EventStore, NewEvent } from '../../src/ports/event-store';

/** The events the contract suite appends: small, with a bigint to prove encoding. */
export type TestEvent =
  | { type: 'Deposited'; data: { amount: bigint; note: string } }
  | { type: 'Withdrawn'; data: { amount: bigint } };

export interface ContractSubject {
  /** A store over an empty log, using the given codec. */
  store: EventStore<TestEvent>;
  /**
   * Writes an event whose `type`/`data` the codec will refuse, bypassing the codec,
   * to simulate schema drift. Returns the stream it wrote to.
   */
  writeUndecodable(streamId: string): Promise<void>;
  /**
   * Optional: begins an append and holds its transaction open until `commit` is called, so
   * a test can make a slow writer hold a lower position while a fast one commits a higher one.
   * Adapters where positions are assigned at commit (KurrentDB) leave it undefined, and the
   * test prints why it does not apply.
   */
  beginSlowAppend?(streamId: string, events: readonly NewEvent<TestEvent>[]): Promise<{ commit(): Promise<void> }>;
  /** Releases connections; the suite calls it in afterAll. */
  dispose(): Promise<void>;
}

export interface ContractFactory {
  /** Each call gives a fresh, empty log. */
  create(codec: EventCodec<TestEvent>): Promise<ContractSubject>;
}

export declare function describeEventStoreContract(adapterName: string, factory: ContractFactory): void;
