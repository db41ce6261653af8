/**
 * Lookups across the event log that no projection answers yet: the admin views' account search
 * and key lists. The PostgreSQL event store answers them by SQL on its events table
 * (adapters/eventstore/postgres/account-directory.ts); any other event store by reading streams
 * and scanning the global log (src/account-directory.ts). The composition root picks one.
 */
export interface AccountDirectory {
  /** The data of the account's AccountOpened and PersonalDataCorrected events, in stream order. */
  personalDataRecords(accountId: string): Promise<unknown[]>;
  /** Ids of every key ever issued to the account, oldest first. */
  keyIdsOf(accountId: string): Promise<string[]>;
  /** Every opened account's id, newest first. */
  accountIdsNewestFirst(): Promise<string[]>;
}
