import net from 'node:net';
import { Pool } from 'pg';
import { migrate } from '../../../adapters/postgres/migrate';
import { createTestDatabase } from '../../support/database';
import { runEntryPoint } from '../../support/processes';

async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('start-up', () => {
  test('an unreachable database stops start-up with a clear error and a non-zero exit', async () => {
    const port = await closedPort();
    const result = await runEntryPoint('src/main.ts', [], {
      DATABASE_URL: `postgres://tollgate:s3cret-password@127.0.0.1:${port}/tollgate`,
      TOLLGATE_DB_CONNECT_TIMEOUT_S: '3',
      PORT: String(await closedPort()),
    }); // runEntryPoint's deadline is a safety net: the verdict is that it exits on its own, not how fast
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`cannot reach PostgreSQL at postgres://tollgate:***@127.0.0.1:${port}/tollgate`);
    expect(result.stderr + result.stdout).not.toContain('s3cret-password');
  }, 90_000);

  test('a wrong configuration value stops start-up with one line naming the variable', async () => {
    const result = await runEntryPoint('src/main.ts', [], { PORT: 'eighty', DATABASE_URL: 'postgres://x@127.0.0.1:1/x' });
    expect(result.code).toBe(2);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^tollgate: invalid PORT: /);
  }, 90_000);

  test('migrations are safe to run twice and from two processes at once', async () => {
    const url = await createTestDatabase('migrate');
    const pools = [new Pool({ connectionString: url }), new Pool({ connectionString: url })];
    const migrations = [
      { id: '0001_first', sql: 'CREATE TABLE first_table (id int PRIMARY KEY)' },
      { id: '0002_second', sql: 'CREATE TABLE second_table (id int PRIMARY KEY)' },
    ];
    try {
      const applied = await Promise.all(pools.map((pool) => migrate(pool, migrations)));
      // Each migration was applied by exactly one of the two migrators.
      expect([...applied[0]!, ...applied[1]!].sort()).toEqual(['0001_first', '0002_second']);
      expect(await migrate(pools[0]!, migrations)).toEqual([]);
      const rows = await pools[0]!.query('SELECT id FROM schema_migrations ORDER BY id');
      expect(rows.rows.map((r) => r.id)).toEqual(['0001_first', '0002_second']);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
  });
});
