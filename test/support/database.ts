import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The server started by global-setup.mjs (or given by TOLLGATE_TEST_DATABASE_URL). */
export function testServerUrl(): string {
  const url = process.env.TOLLGATE_TEST_DATABASE_URL;
  if (!url) throw new Error('TOLLGATE_TEST_DATABASE_URL is not set: run the tests through jest (global-setup starts PostgreSQL)');
  return url;
}

/**
 * Creates a fresh database for one test file and returns its URL: empty, or with `migrated`, a
 * copy of the run's migrated template (global-setup.mjs) when there is one, saving the
 * migrations' time; the code that opens it migrates it as always, finding nothing left to apply.
 * Tests of migrating itself (concurrent start-up, the first run) keep empty ones.
 */
export async function createTestDatabase(prefix = 't', options: { migrated?: boolean } = {}): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const template = options.migrated ? process.env.TOLLGATE_TEST_MIGRATED_TEMPLATE : undefined;
  const admin = new Client({ connectionString: testServerUrl() });
  await admin.connect();
  try {
    await admin.query(template ? `CREATE DATABASE ${name} TEMPLATE ${template}` : `CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(testServerUrl());
  url.pathname = `/${name}`;
  return url.toString();
}
