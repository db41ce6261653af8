export { createPostgresEventStore, type PostgresEventStore, type PostgresEventStoreOptions } from './store';
export { appendEncoded, appendThroughFunction, type Queryable, type EncodedAppendRequest, type AppendOutcome } from './append';
export { eventStoreMigration, eventStoreMigrations, streamMaxAgeMigration, EVENTS_CHANNEL } from './schema';
