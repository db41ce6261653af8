import { InvalidArgumentError } from 'commander';
import pino from 'pino';
import { z } from 'zod';
import { createPostgresEventStore } from '../../adapters/eventstore/postgres';
import { MasterKeyError, type PersonalDataVault } from '../ports/personal-data-vault';
import { domainEventCodec, type DomainEvent } from '../../domain/events';
import { ConfigError, loadConfig, type Config } from '../config';
import { openVault, resolveMasterKey } from '../master-key';
import { CliError } from './errors';
import { openDatabase, type Database } from '../database';
import { accountPolicyFrom } from '../gateway';
import { createLedger, type Ledger } from '../ledger';
import { ANNOUNCED_EVENT_TYPES } from '../live-log';
import type { EventStore } from '../ports/event-store';

/** What the finance and compliance commands work on: the gateway's own database and log. */
export interface DatabaseContext {
  readonly database: Database;
  readonly store: EventStore<DomainEvent>;
  readonly ledger: Ledger;
  readonly vault: PersonalDataVault;
  /** the master key in use and where it came from (for rotation) */
  readonly masterKey: ReturnType<typeof resolveMasterKey>;
}

/**
 * Opens the database the gateway uses (DATABASE_URL, or the embedded server in
 * TOLLGATE_DATA_DIR: a running gateway's server, else one started for this command and stopped
 * after it), runs `work`, and closes it. Logs go to stderr: stdout carries the
 * command's output (CSV, JSON), so it can be piped.
 */
export async function withDatabase<T>(work: (context: DatabaseContext) => Promise<T>): Promise<T> {
  let config: Config;
  let masterKey: ReturnType<typeof resolveMasterKey>;
  try {
    config = loadConfig();
    // A missing or unreadable master key stops the command before the database is opened.
    masterKey = resolveMasterKey(config);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof MasterKeyError) throw new CliError(error.message.replaceAll('\n', '; '));
    throw error;
  }
  const log = pino({ level: config.LOG_LEVEL === 'info' ? 'warn' : config.LOG_LEVEL }, pino.destination(2));
  const database = await openDatabase(config, log, { poolSize: 4, role: 'cli' });
  let vault: PersonalDataVault;
  try {
    // A wrong master key stops here, before anything is read or written.
    vault = await openVault(config, database.pool, log, masterKey);
  } catch (error) {
    await database.close();
    if (error instanceof MasterKeyError) throw new CliError(error.message);
    throw error;
  }
  const store = createPostgresEventStore<DomainEvent>(database.pool, domainEventCodec, {
    notify: false,
    // A key revoked or an account suspended from the command line reaches running gateways at once.
    announcedTypes: ANNOUNCED_EVENT_TYPES,
  });
  try {
    return await work({
      database,
      store,
      ledger: createLedger(store, accountPolicyFrom(config), {
        // retention run clears usage latency with the request log: the same period as the gateway's
        requestLogRetentionDays: config.TOLLGATE_REQUEST_LOG_RETENTION_DAYS,
      }),
      vault,
      masterKey,
    });
  } finally {
    await store.close();
    await database.close();
  }
}

const instantSchema = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);

/** commander argument parser: an ISO instant (2025-01-31T12:00:00Z) or a UTC date (2025-01-31). */
export function parseInstant(value: string): string {
  if (!instantSchema.safeParse(value).success) {
    throw new InvalidArgumentError('expected an ISO-8601 instant such as 2025-01-31T12:00:00Z, or a date such as 2025-01-31');
  }
  return new Date(Date.parse(value)).toISOString();
}

export function write(text: string): void {
  process.stdout.write(text);
}

/** A refusal the user can act on: one line on stderr, exit code 1. Never personal data in `message`. */
export function fail(message: string): void {
  process.stderr.write(`tollgate: ${message}\n`);
  process.exitCode = 1;
}
