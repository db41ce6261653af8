import type * as DatabaseContextModule from './database-context';

/**
 * The database context of the direct-to-database commands (finance, compliance), loaded on
 * first use rather than when the CLI starts: it brings pg, the event store, pino and zod, which
 * `tollgate --help`, `--version` and the admin-API commands do not need. bench/cli-startup.ts
 * measures what this saves.
 */
const databaseContext = (): typeof DatabaseContextModule => require('./database-context') as typeof DatabaseContextModule;

export type { DatabaseContext } from './database-context';
export const withDatabase: typeof DatabaseContextModule.withDatabase = (work) => databaseContext().withDatabase(work);
export const parseInstant: typeof DatabaseContextModule.parseInstant = (value) => databaseContext().parseInstant(value);
export const write: typeof DatabaseContextModule.write = (text) => databaseContext().write(text);
export const fail: typeof DatabaseContextModule.fail = (message) => databaseContext().fail(message);
