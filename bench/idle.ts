/**
 * What idle gateway instances cost, on one PostgreSQL, on this machine:
 *   npx tsx bench/idle.ts [--seconds 30] [--instances 1,3] [--settle 10]
 *
 * A fresh embedded PostgreSQL (durable commits, as bench/scale-out.ts), then for each instance
 * count N: N gateway processes (compiled, `node dist/src/main.js` as `npm start` and the fault suite run them)
 * with no traffic at all. After `--settle` seconds (start-up, first projection catch-up, first
 * probes), CPU is sampled from /proc over `--seconds` and printed as CPU seconds per minute: for
 * each gateway and for PostgreSQL (every postgres process: backends, walwriter, checkpointer...).
 * Alongside, from PostgreSQL's own statistics: transactions committed per minute and the tables
 * read (sequential and index scans) per minute, so the pollers that cost most can be named.
 *
 * An idle gateway still has work: the live-log subscription, the instance lease heartbeat,
 * projection runners, background workers and the status probe. Each instance's share of that is
 * what grows PostgreSQL's CPU with the number of instances even when no request arrives.
 */
import { readdirSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { chatCompletionRule, launchMockLlm } from '../adapters/inference/mock-llm-process';
import { MasterKey } from '../adapters/postgres/personal-data-vault';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../test/support/e2e-processes';
import { flag, freePort, printTable, startBenchPostgres } from './support/embedded-postgres';
import { buildIfStale } from './support/dist';

const IDLE_USAGE = `Idle gateways: what N gateway processes with no traffic cost, on one PostgreSQL.

  npx tsx bench/idle.ts [--seconds 30] [--instances 1,3] [--settle 10]

  --seconds N      CPU sampled over N seconds per instance count (default 30)
  --instances a,b  instance counts to measure (default 1,3)
  --settle N       seconds after start-up before sampling (default 10)

Gateways run compiled (node dist/src/main.js, rebuilt first when a source is newer). Prints CPU
seconds per minute of each gateway and of PostgreSQL, commits per minute, and the tables read most.
`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(IDLE_USAGE);
  process.exit(0);
}

const SECONDS = flag('--seconds', 30);
const SETTLE = flag('--settle', 10);
const COUNTS = (() => {
  const i = process.argv.indexOf('--instances');
  const list = (i < 0 ? '1,3' : (process.argv[i + 1] ?? '')).split(',').map(Number);
  if (list.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error('--instances needs a comma-separated list of positive counts, e.g. 1,3');
  return list;
})();
const MASTER_KEY = MasterKey.generate().export();

/** CPU ticks (utime + stime) of every process on the machine, by pid, with its parent and name. */
function allProcesses(): { pid: number; ppid: number; comm: string; ticks: number }[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const fields = stat.slice(close + 2).split(' ');
        return [{ pid: Number(name), ppid: Number(fields[1]), comm: stat.slice(stat.indexOf('(') + 1, close), ticks: Number(fields[11]) + Number(fields[12]) }];
      } catch {
        return [];
      }
    });
}

/** Ticks per gateway (with its children) and for every postgres process under this bench. */
function sample(gateways: readonly GatewayProcess[]): { gateways: number[]; postgres: Map<number, number> } {
  const all = allProcesses();
  const children = new Map<number, number[]>();
  for (const p of all) (children.get(p.ppid) ?? children.set(p.ppid, []).get(p.ppid)!).push(p.pid);
  const descendants = (root: number): number[] => [root, ...(children.get(root) ?? []).flatMap(descendants)];
  const ticks = new Map(all.map((p) => [p.pid, p.ticks]));
  const mine = new Set(descendants(process.pid));
  const postgres = new Map<number, number>();
  for (const p of all) if (mine.has(p.pid) && p.comm === 'postgres') postgres.set(p.pid, p.ticks);
  return { gateways: gateways.map((g) => descendants(g.pid).reduce((sum, pid) => sum + (ticks.get(pid) ?? 0), 0)), postgres };
}

interface DbStats {
  commits: number;
  tables: Map<string, number>;
}

async function dbStats(db: pg.Client): Promise<DbStats> {
  const commits = await db.query<{ n: string }>('SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()');
  const tables = await db.query<{ name: string; scans: string }>(
    "SELECT relname AS name, (coalesce(seq_scan, 0) + coalesce(idx_scan, 0))::text AS scans FROM pg_stat_user_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
  );
  return { commits: Number(commits.rows[0]!.n), tables: new Map(tables.rows.map((r) => [r.name, Number(r.scans)])) };
}

async function main(): Promise<void> {
  buildIfStale();
  const postgres = await startBenchPostgres();
  // An upstream that answers: /readyz needs one. Its CPU is not counted.
  const mock = await launchMockLlm({ rules: [chatCompletionRule('idle')] }, await freePort(), 60_000);
  const modelsFile = writeModelsFile([{ id: 'bench-model', upstreams: [{ baseUrl: mock.baseUrl, capacity: 16 }], maxOutputTokens: 256, operations: ['chat'] }]);
  const gateways: GatewayProcess[] = [];
  const stats = new pg.Client({ connectionString: postgres.url });
  let connected = false;
  const perMinute = (ticks: number) => ((ticks / 100 / SECONDS) * 60).toFixed(2);
  const rows: string[][] = [['instances', 'each gateway CPU s/min', 'gateways total', 'postgres CPU s/min', 'postgres per instance', 'commits/min']];
  const scanRows: string[][] = [];
  try {
    for (const count of COUNTS) {
      while (gateways.length > count) await gateways.pop()!.stop();
      while (gateways.length < count)
        gateways.push(await startGatewayProcess({ databaseUrl: postgres.url, modelsFile, readyTimeoutMs: 120_000, env: { TOLLGATE_MASTER_KEY: MASTER_KEY } }));
      if (!connected) {
        await stats.connect(); // after the first gateway migrated the schema
        connected = true;
      }
      await new Promise((resolve) => setTimeout(resolve, SETTLE * 1_000));
      // The bench's own statistics reads fall outside the CPU window; their two commits are subtracted.
      const dbBefore = await dbStats(stats);
      const before = sample(gateways);
      await new Promise((resolve) => setTimeout(resolve, SECONDS * 1_000));
      const after = sample(gateways);
      const dbAfter = await dbStats(stats);
      const each = after.gateways.map((t, i) => t - before.gateways[i]!);
      let pgTicks = 0;
      for (const [pid, t] of after.postgres) pgTicks += t - (before.postgres.get(pid) ?? 0);
      rows.push([
        String(count),
        each.map(perMinute).join(' / '),
        perMinute(each.reduce((a, b) => a + b, 0)),
        perMinute(pgTicks),
        perMinute(pgTicks / count),
        (((dbAfter.commits - dbBefore.commits - 2) / SECONDS) * 60).toFixed(0),
      ]);
      const scans = [...dbAfter.tables]
        .map(([name, n]) => [name, n - (dbBefore.tables.get(name) ?? 0)] as const)
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 8);
      scanRows.push([String(count), scans.map(([name, n]) => `${name} ${((n / SECONDS) * 60).toFixed(0)}`).join(', ') || '-']);
      process.stderr.write(`measured ${count} idle instance(s)\n`);
    }
    console.log(
      `\nidle gateways (no requests), ${SECONDS} s sampled after ${SETTLE} s settling; embedded PostgreSQL; this machine: ${(await import('node:os')).cpus().length} CPUs\n`,
    );
    printTable(rows);
    console.log('\ntable scans per minute (sequential + index), most read first:');
    for (const [count, line] of scanRows) console.log(`  ${count} instance(s): ${line}`);
  } finally {
    await stats.end().catch(() => undefined);
    for (const g of gateways) await g.stop();
    await postgres.stop();
    await mock.stop();
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
