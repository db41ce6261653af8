/**
 * System calls per request, by name, of the upstream alone (direct), the bare Node proxy, the
 * ledger floor and Tollgate: on this machine (a Firecracker VM, nested paravirtualisation) a system
 * call costs far more than on bare metal, so how many each target makes per request is part of
 * reading its CPU figure in bench/gateway.ts.
 *   npx tsx bench/syscalls.ts [--requests 500] [--warmup 200] [--shapes non-streaming,streaming]
 *                             [--only direct,bare-proxy,ledger-floor,tollgate] [--no-postgres]
 *
 * The same processes as bench/gateway.ts (mock-llm upstream, Tollgate compiled over a fresh
 * embedded PostgreSQL with durable commits, bench/support/bare-proxy.mjs,
 * bench/support/ledger-floor.mjs over its own embedded PostgreSQL). One target at a time, at a
 * fixed low load: --warmup requests untraced, then `strace -c -f` attached to the target's process
 * (every thread; for direct, the upstream's), --requests requests over one autocannon connection,
 * strace stopped, its counts divided by the 2xx answers. For Tollgate and the ledger floor their
 * PostgreSQL's processes (postmaster and every backend) are traced too, by a second strace, and
 * printed in their own column (--no-postgres: not). strace slows a traced process many times
 * over: only the counts mean anything, never the time.
 *
 * Exits 2 when strace is not installed (a bench, not a test: CI does not install it), 1 on any
 * non-2xx answer or connection error, 0 otherwise.
 */
export const USAGE = `System calls per request: the upstream direct, the bare proxy, the ledger floor and Tollgate.

  npx tsx bench/syscalls.ts [--requests 500] [--warmup 200] [--shapes non-streaming,streaming]
                            [--only direct,bare-proxy,ledger-floor,tollgate] [--no-postgres]

  --requests N    traced requests per target and shape (default 500), over one connection
  --warmup N      untraced requests per target and shape first (default 200)
  --shapes a,b    non-streaming, streaming (default both)
  --only a,b      trace only these of direct, bare-proxy, ledger-floor, tollgate
  --no-postgres   do not trace Tollgate's and the ledger floor's PostgreSQL processes

One target at a time, at a fixed low load (one autocannon connection): strace -c -f is attached
to the target's process (all its threads; for direct, the upstream mock-llm's) while it serves
--requests requests; its counts are divided by the 2xx answers and printed per system call (those
at 0.05 or more per request in some column) and in total. For Tollgate and the ledger floor, a
second strace counts their PostgreSQL's processes (postmaster and backends), in its own column.
strace slows the traced process many times over: the counts are the figure, not the time.
Needs strace (apt-get install strace); exits 2 without it. Exits 1 on any non-2xx answer or
connection error.
`;
import { type ChildProcess, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { stopChild } from '../adapters/stop-child';
import { launchMockLlm, type MockLlmProcess } from '../adapters/inference/mock-llm-process';
import {
  ADMIN_KEY,
  BENCH_MASTER_KEY,
  MODEL,
  markStopping,
  mockLlmConfig,
  processTree,
  requestBody,
  SHAPES,
  type Shape,
  seed,
  startChild,
  waitForHttp,
  waitForPort,
} from './gateway';
import { buildIfStale, GATEWAY_MAIN } from './support/dist';
import { flag, freePort, printTable, runBench, startBenchPostgres, type BenchPostgres } from './support/embedded-postgres';
import { attachStrace } from './support/strace';

const TARGETS = ['direct', 'bare-proxy', 'ledger-floor', 'tollgate'] as const;
type TargetName = (typeof TARGETS)[number];

const list = (name: string): string[] | undefined => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : (process.argv[i + 1] ?? '').split(',').filter((s) => s !== '');
};

/** A syscall's count per request is printed when it is at least this in some column. */
const SHOWN_PER_REQUEST = 0.05;

interface Target {
  readonly name: TargetName;
  readonly url: string;
  readonly headers: Record<string, string>;
  /** the process traced (for direct, the upstream's) */
  readonly pids: () => number[];
  /** the target's own PostgreSQL: its postmaster and backends */
  readonly postgres?: () => number[];
}

async function requests(target: Target, shape: Shape, amount: number): Promise<{ ok: number; bad: number }> {
  const result = await autocannon({
    url: target.url,
    method: 'POST',
    connections: 1,
    amount,
    timeout: 30,
    headers: { 'content-type': 'application/json', ...target.headers },
    body: requestBody(shape),
  });
  return { ok: result['2xx'], bad: result.non2xx + result.errors };
}

async function main(): Promise<number> {
  try {
    execFileSync('strace', ['-V'], { stdio: 'ignore' });
  } catch {
    console.error('bench/syscalls.ts needs strace, which is not installed here (Debian: apt-get install strace)');
    return 2;
  }
  const REQUESTS = flag('--requests', 500);
  const WARMUP = flag('--warmup', 200);
  const shapes = (list('--shapes') ?? SHAPES) as Shape[];
  for (const s of shapes) if (!SHAPES.includes(s)) throw new Error(`--shapes: unknown shape ${s} (${SHAPES.join(', ')})`);
  const only = list('--only');
  for (const t of only ?? []) if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`--only: unknown target ${t} (${TARGETS.join(', ')})`);
  const names = TARGETS.filter((t) => !only || only.includes(t));
  const withPostgres = !process.argv.includes('--no-postgres');

  buildIfStale();
  const scratch = mkdtempSync(join(tmpdir(), 'tollgate-bench-sys-'));
  let mock: MockLlmProcess | undefined;
  const databases: BenchPostgres[] = [];
  const children: ChildProcess[] = [];
  const cleanup = async () => {
    markStopping();
    await Promise.all([...children.map((c) => stopChild(c, 15_000)), mock?.stop()]);
    await Promise.all(databases.map((d) => d.stop().catch(() => {})));
    rmSync(scratch, { recursive: true, force: true });
  };
  const interrupt = () => {
    console.error('interrupted: stopping everything this benchmark started');
    void cleanup().then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    const treeOf = (pid: number) => [pid, ...processTree(pid).map((p) => p.pid)];
    mock = await launchMockLlm(mockLlmConfig, await freePort(), 60_000);
    const upstream = mock;
    const targets: Target[] = [];
    for (const name of names) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}/v1/chat/completions`;
      if (name === 'direct') {
        const pids = () =>
          processTree(process.pid)
            .filter((p) => p.cmdline.includes('mock-llm'))
            .map((p) => p.pid);
        targets.push({ name, url: `${upstream.baseUrl}/chat/completions`, headers: {}, pids });
      } else if (name === 'bare-proxy') {
        const c = startChild(name, [join(__dirname, 'support', 'bare-proxy.mjs'), upstream.baseUrl, String(port)], process.env);
        children.push(c.child);
        await waitForPort(port, c.child, c.output, name);
        targets.push({ name, url, headers: {}, pids: () => [c.child.pid!] });
      } else if (name === 'ledger-floor') {
        const db = await startBenchPostgres();
        databases.push(db);
        const c = startChild(name, [join(__dirname, 'support', 'ledger-floor.mjs'), upstream.baseUrl, String(port), db.url], process.env);
        children.push(c.child);
        await waitForPort(port, c.child, c.output, name);
        targets.push({ name, url, headers: {}, pids: () => [c.child.pid!], postgres: () => treeOf(db.pid) });
      } else {
        const db = await startBenchPostgres();
        databases.push(db);
        const apiKey = await seed(db.url);
        const modelsFile = join(scratch, 'models.json');
        writeFileSync(
          modelsFile,
          JSON.stringify({
            models: [{ id: MODEL, upstreams: [{ baseUrl: upstream.baseUrl, capacity: 1_024 }], maxOutputTokens: 4_096, operations: ['chat'] }],
          }),
        );
        const c = startChild(name, [GATEWAY_MAIN], {
          ...process.env,
          DATABASE_URL: db.url,
          TOLLGATE_MASTER_KEY: BENCH_MASTER_KEY.export(),
          HOST: '127.0.0.1',
          PORT: String(port),
          TOLLGATE_MODELS_FILE: modelsFile,
          TOLLGATE_ADMIN_KEY: ADMIN_KEY,
          TOLLGATE_DATA_DIR: join(scratch, 'tollgate-data'),
          LOG_LEVEL: 'warn',
        });
        children.push(c.child);
        await waitForHttp(`http://127.0.0.1:${port}/healthz`, c.child, c.output, name);
        targets.push({ name, url, headers: { authorization: `Bearer ${apiKey}` }, pids: () => [c.child.pid!], postgres: () => treeOf(db.pid) });
      }
    }

    console.log(
      `system calls per 2xx request (strace -c -f), ${REQUESTS} requests over one connection per target and shape after ${WARMUP} untraced; ` +
        `direct: the upstream (mock-llm) process; PostgreSQL: the target's own server, postmaster and backends\n`,
    );
    const invalid: string[] = [];
    for (const shape of shapes) {
      const columns: { label: string; perRequest: Map<string, number> }[] = [];
      for (const target of targets) {
        const warm = await requests(target, shape, WARMUP);
        if (warm.bad > 0) invalid.push(`${target.name} ${shape} warm-up: ${warm.bad} non-2xx answers or errors`);
        const out = join(scratch, `strace-${target.name}-${shape}`);
        const traced = await attachStrace(target.pids(), out);
        const tracedPostgres = withPostgres && target.postgres ? await attachStrace(target.postgres(), `${out}-postgres`) : undefined;
        const t = await requests(target, shape, REQUESTS);
        const counts = await traced.stop();
        const postgresCounts = await tracedPostgres?.stop();
        if (t.bad > 0 || t.ok === 0) invalid.push(`${target.name} ${shape}: ${t.bad} non-2xx answers or errors, ${t.ok} 2xx`);
        const per = (m: Map<string, number>) => new Map([...m].map(([name, n]) => [name, n / Math.max(1, t.ok)]));
        columns.push({ label: target.name === 'direct' ? 'direct (upstream)' : target.name, perRequest: per(counts) });
        if (postgresCounts) columns.push({ label: `${target.name} PostgreSQL`, perRequest: per(postgresCounts) });
        process.stderr.write(
          `  ${shape} ${target.name}: ${t.ok} requests traced, ${((counts.get('total') ?? 0) / Math.max(1, t.ok)).toFixed(2)} system calls each\n`,
        );
      }
      const names = [...new Set(columns.flatMap((c) => [...c.perRequest.keys()]))]
        .filter((n) => n !== 'total' && columns.some((c) => (c.perRequest.get(n) ?? 0) >= SHOWN_PER_REQUEST))
        .sort((a, b) => Math.max(...columns.map((c) => c.perRequest.get(b) ?? 0)) - Math.max(...columns.map((c) => c.perRequest.get(a) ?? 0)));
      const cell = (c: (typeof columns)[number], n: string) => {
        const v = c.perRequest.get(n);
        return v === undefined ? '-' : v.toFixed(2);
      };
      console.log(`${shape}:`);
      printTable([[`syscalls/request`, ...columns.map((c) => c.label)], ...[...names, 'total'].map((n) => [n, ...columns.map((c) => cell(c, n))])]);
      console.log('');
    }
    if (invalid.length > 0) {
      console.error(`INVALID FIGURES: a figure counts only with no non-2xx answer and no connection error:\n  ${invalid.join('\n  ')}`);
      return 1;
    }
    return 0;
  } finally {
    await cleanup();
  }
}

if (require.main === module) runBench(USAGE, main);
