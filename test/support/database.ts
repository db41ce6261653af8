import { randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The server started by global-setup.mjs (or given by TOLLGATE_TEST_DATABASE_URL). */
export function testServerUrl(): string {
  const url = process.env.TOLLGATE_TEST_DATABASE_URL;
  if (!url) throw new Error('TOLLGATE_TEST_DATABASE_URL is not set: run the tests through jest (global-setup starts PostgreSQL)');
  return url;
}

/** Creates a fresh, empty database for one test file and returns its URL. */
export async function createTestDatabase(prefix = 't'): Promise<string> {
  const name = `${prefix}_${randomBytes(6).toString('hex')}`.toLowerCase();
  const admin = new Client({ connectionString: testServerUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(testServerUrl());
  url.pathname = `/${name}`;
  return url.toString();
}
