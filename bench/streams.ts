/**
 * Streams, two shapes (issue 17), Tollgate beside the bare proxy (node:http in, undici out, bytes
 * relayed: the floor of any Node gateway), in one run:
 *   npx tsx bench/streams.ts [--chunks 1000] [--long-requests 64] [--connections 8] [--rounds 2]
 *                            [--streams 10000] [--growth-streams 500] [--instances K] [--only long,open]
                           [--profile DIR]
 *
 * 1. Long streams: each answer is --chunks chunks (16 characters each, as fast as the reader takes
 *    them, then finish_reason, the usage chunk and [DONE]), --long-requests per round over
 *    --connections connections. Printed: the gateway process's CPU per chunk, Tollgate's against
 *    the bare proxy's (target: at most 2x).
 * 2. Many open streams: --streams concurrent streams, all open at once (the upstream sends a first
 *    chunk and holds each stream until every one is open), from this process's own connections,
 *    opened --opening at a time. Printed: the gateway's RSS per open stream (RSS with all open,
 *    less RSS idle, over their number; target at most 64 KiB; judged after a full GC, asked of
 *    each gateway through its inspector, since RSS as it is moves with when the collector last ran),
 *    its open files, and PostgreSQL's connections. Before them (on a settled gateway), --growth-streams streams held open after 20
 *    chunks, and as many after --chunks chunks: the RSS per stream is the same, it does not grow
 *    with the answer (the upstream reports usage).
 *    A gateway holds two sockets per open stream (client and upstream): this process raises its
 *    own open-file limit (RLIMIT_NOFILE, soft and hard, with prlimit; root may raise the hard one)
 *    to what --streams needs before it starts anything, so the gateway, the upstream and the
 *    bare proxy inherit it. Where it cannot (not root, or above fs.nr_open), the many streams are
 *    spread over --instances K Tollgate processes on the one database, as a scale-out deployment
 *    runs (default: the fewest that fit the limit, said with the reason), each with its own
 *    upstream process (which holds one socket per stream); the client load stays in this process
 *    (one socket per stream) and the count is lowered to what it can hold, and said. Printed per
 *    instance and in total; the target is judged on the total RSS growth over the total streams.
 *    The bare proxy stays one process, at most what one process holds. While all are open, PostgreSQL's connections are counted: an open
 *    stream holds no database connection, so they stay at the gateway's pool size or below.
 *
 * Tollgate runs compiled, as `npm start` does (node dist/src/main.js, rebuilt first when a source
 * is newer); the bare proxy is plain JavaScript (bench/support/bare-proxy.mjs); the upstream stays
 * on tsx (a loader cost at its start only; its CPU and memory are not measured).
 *
 * The upstream is bench/support/stream-upstream.ts (it reports usage, as vLLM does when asked).
 * After the run the account's stream is read back: every 2xx answer settled exactly once, every
 * reservation ended. Exits non-zero on any non-2xx answer, connection error or ledger failure.
 */
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client as PgClient } from 'pg';
import { Pool as HttpPool, WebSocket } from 'undici';
import { stopChild } from '../adapters/stop-child';
import {
  ACCOUNT_ID,
  ADMIN_KEY,
  BENCH_MASTER_KEY,
  markStopping,
  metricSum,
  readLedger,
  seed,
  seedAccount,
  startChild,
  waitForHttp,
  waitForPort,
} from './gateway';
import { flag, freePort, printTable, startBenchPostgres, type BenchPostgres } from './support/embedded-postgres';
import { buildIfStale, GATEWAY_MAIN } from './support/dist';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`Streams benchmark: Tollgate beside a bare Node proxy, two shapes.

  npx tsx bench/streams.ts [--chunks 1000] [--long-requests 64] [--connections 8] [--rounds 2]
                           [--streams 10000] [--growth-streams 500] [--instances K] [--only long,open]

  --chunks N          chunks of 16 characters per long answer (default 1000)
  --long-requests N   long streams per round (default 64), over --connections N connections (default 8)
  --rounds N          rounds of the long-stream shape (default 2)
  --streams N         streams held open at once for the RSS shape (default 10000). The open-file
                      limit is raised to fit (prlimit on this process, inherited by the gateway,
                      upstream and proxy; the hard limit needs root); where it cannot be, the
                      streams are spread over several Tollgate instances (see --instances), and
                      lowered to what this process (the client, one socket each) can hold
  --instances K       Tollgate processes on one database the open streams are spread over, each
                      with its own upstream process (default: the fewest whose open-file limit
                      fits --streams at two sockets per stream, printed with the reason); the
                      bare proxy stays one process, holding at most what one process can
  --growth-streams N  streams held after 20 and after --chunks chunks: RSS per stream must not grow
                      with the answer (default 500)
  --opening N         streams being opened at once while the open shape ramps up (default 256):
                      the next is sent when one has its first chunks
  --only long,open    run only these shapes
  --profile DIR       run (the first) Tollgate with node --cpu-prof, its profile written to DIR on exit

Tollgate runs compiled (node dist/src/main.js, rebuilt first when a source is newer). Prints the
gateway's CPU per chunk against the bare proxy's (target at most 2x) and its RSS per open stream
(target at most 64 KiB), with PostgreSQL's connection count while all are open, then checks the
ledger: every 2xx settled exactly once, every reservation ended. Exits non-zero on any failed
answer or ledger mismatch.
A tiny run: npx tsx bench/streams.ts --chunks 20 --long-requests 8 --rounds 1 --streams 20 --growth-streams 10
`);
  process.exit(0);
}

const CHUNKS = flag('--chunks', 1_000);
const LONG_REQUESTS = flag('--long-requests', 64);
const CONNECTIONS = flag('--connections', 8);
const ROUNDS = flag('--rounds', 2);
const STREAMS = flag('--streams', 10_000);
const GROWTH_STREAMS = flag('--growth-streams', 500);
/** Streams being opened at once (sent, first chunks not yet in): all at once overflows the listen backlogs (connect timeouts, resets). */
const OPENING = flag('--opening', 256);
/** `--profile DIR`: the first Tollgate runs with --cpu-prof and writes its profile there on exit. */
const PROFILE_DIR = process.argv.includes('--profile') ? resolve(process.argv[process.argv.indexOf('--profile') + 1] ?? '.') : undefined;
const ONLY = process.argv.includes('--only') ? (process.argv[process.argv.indexOf('--only') + 1] ?? '').split(',') : ['long', 'open'];
const CHUNK_CHARS = 16;

const MODELS = { fast: 'long-fast', hold1: 'open-hold-1', hold20: 'open-hold-20', holdLong: `open-hold-${CHUNKS}` } as const;

function body(model: string): string {
  return JSON.stringify({ model, stream: true, max_tokens: 4_096, messages: [{ role: 'user', content: 'Say hello in one short sentence, please.' }] });
}

/** CPU ticks (1/100 s) of one process so far. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Open file descriptors of a process (sockets included). */
function openFiles(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('VmRSS:'));
  return Number(line?.split(/\s+/)[1] ?? 0) * 1_024;
}

/** Issue 17's target 4: the gateway's RSS per open stream. */
const RSS_TARGET_KIB = 64;

/**
 * Raises this process's open-file limit, soft and hard, to `wanted` (capped at fs.nr_open) with
 * prlimit, so the children started after it inherit it; raising the hard limit needs root
 * (CAP_SYS_RESOURCE). Returns why it could not, or undefined.
 */
function raiseFileLimit(wanted: number): string | undefined {
  if (fileLimit() >= wanted) return undefined;
  let ceiling = wanted;
  try {
    ceiling = Math.min(wanted, Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()));
  } catch {
    // not Linux: prlimit fails below and says so
  }
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${ceiling}:${ceiling}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    return undefined;
  } catch (error) {
    return `prlimit --nofile=${ceiling}:${ceiling} failed: ${String((error as { stderr?: Buffer }).stderr ?? (error as Error).message).trim()}`;
  }
}

/** The soft limit on open files of this process (children inherit it). */
function fileLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'));
  const soft = Number(line?.split(/\s+/)[3]);
  return Number.isFinite(soft) ? soft : 1_024;
}

interface Outcome {
  ok: number;
  failed: number;
  chunks: number;
  /** what the failures were: HTTP status or error code, with counts */
  why?: Record<string, number>;
}

function failed(o: Outcome, reason: string): void {
  o.failed++;
  o.why ??= {};
  o.why[reason] = (o.why[reason] ?? 0) + 1;
}

/** One streamed request; resolves when its body ended, counting its SSE events. `opened` is called with the headers. */
async function stream(
  pool: HttpPool,
  path: string,
  headers: Record<string, string>,
  model: string,
  reached: { events: number; then: () => void } | undefined,
  into: Outcome,
): Promise<void> {
  let told = false;
  const tell = () => {
    if (!told && reached) {
      told = true;
      reached.then();
    }
  };
  try {
    const response = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers }, body: body(model) });
    let text = '';
    let events = 0;
    for await (const part of response.body) {
      text += part.toString();
      const parts = text.split('\n\n');
      text = parts.pop() ?? '';
      events += parts.length;
      if (reached && events >= reached.events) tell();
    }
    tell();
    if (response.statusCode === 200) {
      into.ok++;
      into.chunks += events;
    } else failed(into, `HTTP ${response.statusCode}`);
  } catch (error) {
    tell();
    failed(into, (error as { code?: string }).code ?? (error as Error).name);
  }
}

interface Gw {
  readonly name: 'tollgate' | 'bare-proxy';
  readonly pid: number;
  readonly origin: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** its inspector's port (node --inspect), through which a full garbage collection is asked */
  readonly inspectPort: number;
  /** the upstream holding its held streams (a request to /release ends them) */
  readonly holdPort: number;
  /** its name in the tables: `tollgate #2` for a second instance */
  readonly label: string;
}

/**
 * A full garbage collection in a child started with --inspect (HeapProfiler.collectGarbage over
 * its inspector WebSocket): RSS after it is the memory the open streams really hold, not the
 * garbage a lazy collector has not yet returned. Returns the bytes still live after it, the V8
 * heap in use plus the memory outside it (Buffers), as the process itself reports them: RSS
 * also keeps the pages the collector and malloc took for garbage and have not given back.
 */
async function fullGc(inspectPort: number): Promise<number> {
  const [target] = (await (await fetch(`http://127.0.0.1:${inspectPort}/json/list`)).json()) as { webSocketDebuggerUrl: string }[];
  const socket = new WebSocket(target!.webSocketDebuggerUrl);
  const live = await new Promise<number>((resolve, reject) => {
    socket.addEventListener('open', () => socket.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' })));
    socket.addEventListener('message', (event) => {
      const message = JSON.parse(String(event.data)) as { id?: number; result?: { result?: { value?: number } } };
      if (message.id === 1)
        socket.send(
          JSON.stringify({
            id: 2,
            method: 'Runtime.evaluate',
            params: { expression: '(() => { const m = process.memoryUsage(); return m.heapUsed + m.external; })()', returnByValue: true },
          }),
        );
      else if (message.id === 2) resolve(Number(message.result?.result?.value ?? Number.NaN));
    });
    socket.addEventListener('error', () => reject(new Error(`no answer from the inspector on port ${inspectPort}`)));
  });
  socket.close();
  return live;
}

async function main(): Promise<number> {
  const scratch = mkdtempSync(join(tmpdir(), 'tollgate-bench-streams-'));
  const children: ChildProcess[] = [];
  let pg: BenchPostgres | undefined;
  const cleanup = async () => {
    markStopping();
    await Promise.all(children.map((child) => stopChild(child, 15_000)));
    await pg?.stop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  let exitCode = 0;
  try {
    // two sockets per open stream in the gateway, and some for PostgreSQL, the log, the modules
    const notRaised = ONLY.includes('open') ? raiseFileLimit(Math.max(65_536, STREAMS * 2 + 1_000)) : undefined;
    if (notRaised) process.stderr.write(`  could not raise the open-file limit: ${notRaised}\n`);
    const limit = fileLimit();
    buildIfStale();
    const [fastPort, holdPort, tollgatePort, bareFastPort, bareHoldPort, tollgateInspect, bareInspect] = await Promise.all(
      Array.from({ length: 7 }, () => freePort()),
    );
    pg = await startBenchPostgres();
    const apiKey = await seed(pg.url, [...new Set(Object.values(MODELS))]);
    const upstream = (port: number, chunks: number, intervalMs: number) => {
      const u = startChild(
        `upstream ${port}`,
        ['--import', 'tsx', join(__dirname, 'support', 'stream-upstream.ts'), String(port), String(chunks), String(CHUNK_CHARS), String(intervalMs)],
        process.env,
      );
      children.push(u.child);
      return u;
    };
    const ups = [
      { port: fastPort, u: upstream(fastPort, CHUNKS, 0) },
      { port: holdPort, u: upstream(holdPort, 1, 0) },
    ];
    const base = (port: number) => `http://127.0.0.1:${port}/v1`;
    const model = (id: string, port: number) => ({ id, upstreams: [{ baseUrl: base(port), capacity: 100_000 }], maxOutputTokens: 4_096, operations: ['chat'] });
    /** A Tollgate instance on the shared database, its held streams on its own upstream at `hold`. */
    const startTollgate = (instance: number, port: number, inspect: number, hold: number) => {
      const modelsFile = join(scratch, `models-${instance}.json`);
      writeFileSync(
        modelsFile,
        JSON.stringify({
          models: [model(MODELS.fast, fastPort), ...[...new Set([MODELS.hold1, MODELS.hold20, MODELS.holdLong])].map((id) => model(id, hold))],
        }),
      );
      const started = startChild(
        instance === 0 ? 'tollgate' : `tollgate #${instance + 1}`,
        [...(PROFILE_DIR && instance === 0 ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`] : []), `--inspect=127.0.0.1:${inspect}`, GATEWAY_MAIN],
        {
          ...process.env,
          DATABASE_URL: pg!.url,
          TOLLGATE_MASTER_KEY: BENCH_MASTER_KEY.export(),
          HOST: '127.0.0.1',
          PORT: String(port),
          TOLLGATE_MODELS_FILE: modelsFile,
          TOLLGATE_ADMIN_KEY: ADMIN_KEY,
          TOLLGATE_DATA_DIR: join(scratch, `tollgate-data-${instance}`),
          LOG_LEVEL: 'warn',
          // The held streams are silent from their first chunks until all are open (minutes on a
          // loaded machine); the default 120 s would cut the first ones as stalled upstreams.
          TOLLGATE_UPSTREAM_IDLE_TIMEOUT_S: '1800',
        },
      );
      children.push(started.child);
      return started;
    };
    const tg = startTollgate(0, tollgatePort, tollgateInspect, holdPort);
    const bareFast = startChild('bare-proxy', [join(__dirname, 'support', 'bare-proxy.mjs'), base(fastPort), String(bareFastPort)], process.env);
    const bareHold = startChild(
      'bare-proxy',
      [`--inspect=127.0.0.1:${bareInspect}`, join(__dirname, 'support', 'bare-proxy.mjs'), base(holdPort), String(bareHoldPort)],
      process.env,
    );
    children.push(bareFast.child, bareHold.child);
    await Promise.all([
      ...ups.map(({ port, u }) => waitForPort(port, u.child, u.output, 'stream upstream', 120_000)),
      waitForHttp(`http://127.0.0.1:${tollgatePort}/healthz`, tg.child, tg.output, 'tollgate'),
      waitForPort(bareFastPort, bareFast.child, bareFast.output, 'bare-proxy', 120_000),
      waitForPort(bareHoldPort, bareHold.child, bareHold.output, 'bare-proxy', 120_000),
    ]);
    const tollgateGw = (pid: number, port: number, inspectPort: number, holdPort: number, label: string, key = apiKey): Gw => ({
      name: 'tollgate',
      pid,
      origin: `http://127.0.0.1:${port}`,
      path: '/v1/chat/completions',
      headers: { authorization: `Bearer ${key}` },
      inspectPort,
      holdPort,
      label,
    });
    const tollgate = (): Gw => tollgateGw(tg.child.pid!, tollgatePort, tollgateInspect, holdPort, 'tollgate');
    const bare = (port: number, child: ChildProcess): Gw => ({
      name: 'bare-proxy',
      pid: child.pid!,
      origin: `http://127.0.0.1:${port}`,
      path: '/v1/chat/completions',
      headers: {},
      inspectPort: port === bareHoldPort ? bareInspect : 0,
      holdPort,
      label: 'bare-proxy',
    });

    let tollgate2xx = 0;
    /** the open shape's further Tollgate instances (the first is `tg`) */
    const moreTollgates: ChildProcess[] = [];
    /** the accounts the requests were made on: one per Tollgate instance */
    const accounts = [ACCOUNT_ID];
    const invalid: string[] = [];
    const count = (gw: Gw, label: string, o: Outcome, expectedChunks: number) => {
      if (gw.name === 'tollgate') tollgate2xx += o.ok;
      if (o.failed > 0 || o.chunks < expectedChunks)
        invalid.push(`${gw.name} ${label}: ${o.failed} failed ${JSON.stringify(o.why ?? {})}, ${o.chunks} of ${expectedChunks} chunks`);
    };

    if (ONLY.includes('long')) {
      // --- 1. long streams: CPU per chunk --------------------------------------------------
      const targets = [tollgate(), bare(bareFastPort, bareFast.child)];
      const spent = new Map<string, { ticks: number; chunks: number }>();
      for (let round = 0; round <= ROUNDS; round++) {
        for (const gw of targets) {
          const pool = new HttpPool(gw.origin, { connections: CONNECTIONS, pipelining: 1 });
          const o: Outcome = { ok: 0, failed: 0, chunks: 0 };
          const before = cpuTicks(gw.pid);
          let next = 0;
          await Promise.all(
            Array.from({ length: CONNECTIONS }, async () => {
              while (next++ < LONG_REQUESTS) await stream(pool, gw.path, gw.headers, MODELS.fast, undefined, o);
            }),
          );
          const ticks = cpuTicks(gw.pid) - before;
          await pool.close();
          count(gw, `long streams round ${round}`, o, LONG_REQUESTS * CHUNKS);
          // round 0 warms up
          if (round > 0) {
            const s = spent.get(gw.name) ?? { ticks: 0, chunks: 0 };
            s.ticks += ticks;
            s.chunks += o.chunks;
            spent.set(gw.name, s);
          }
          process.stderr.write(`  long streams round ${round} ${gw.name}: ${o.ok} streams, ${o.chunks} events, ${(ticks * 10).toFixed(0)} ms CPU\n`);
        }
      }
      const perChunk = (name: string) => {
        const s = spent.get(name)!;
        return (s.ticks * 10_000) / s.chunks; // microseconds
      };
      const ratio = perChunk('tollgate') / perChunk('bare-proxy');
      console.log(
        `\n1. long streams: ${CHUNKS} chunks of ${CHUNK_CHARS} characters per answer, ${LONG_REQUESTS} answers per round over ${CONNECTIONS} connections, ${ROUNDS} rounds`,
      );
      printTable([
        ['target', 'CPU us per chunk (gateway process)'],
        ['tollgate', perChunk('tollgate').toFixed(2)],
        ['bare-proxy', perChunk('bare-proxy').toFixed(2)],
      ]);
      console.log(`Tollgate / bare proxy CPU per chunk: ${ratio.toFixed(2)}x (target <= 2x): ${ratio <= 2 ? 'met' : 'NOT met'}`);
    }

    if (ONLY.includes('open')) {
      // --- 2. many open streams: RSS per stream -------------------------------------------------
      // A gateway holds two sockets per open stream (client and upstream), an upstream and the client
      // (this process) one each: with the open-file limit below what one gateway needs, the streams
      // are spread over several Tollgate instances on the one database (as a scale-out deployment
      // runs), each with its own upstream process, and this process must fit them all.
      const perGateway = Math.floor((limit - openFiles(tg.child.pid!) - 64) / 2);
      const instancesAsked = process.argv.includes('--instances') ? flag('--instances', 1) : undefined;
      const instances = instancesAsked ?? Math.max(1, Math.ceil(STREAMS / perGateway));
      const clientFits = limit - openFiles(process.pid) - 256;
      const streams = Math.min(STREAMS, instances * perGateway, clientFits);
      console.log(
        `\n2. many open streams, all open at once (the upstream holds each one until all are), over ${instances} Tollgate instance${instances > 1 ? 's' : ''} on one database, each with its own upstream process: ` +
          (instancesAsked
            ? 'as --instances asks'
            : `the fewest that hold ${STREAMS} when each process may open ${limit} files${notRaised ? ` (a limit that cannot be raised here: ${notRaised})` : ''} and a gateway holds two sockets per open stream (${perGateway} per instance)`) +
          `; the client load from this process, one socket per stream (${streams} of its ${limit} files)` +
          (streams < STREAMS ? `; ${streams} of the ${STREAMS} asked: no more fit in ${instances} instance(s) and this client process` : ''),
      );
      // the further instances, each on its own port, inspector and upstream
      const gateways: Gw[] = [tollgate()];
      // Each instance's streams on an account of its own: one hot account's reservations from two
      // instances at once conflict, and past the retries some are answered 503 (602 of 10,000 in a run).
      for (let i = 1; i < instances; i++) {
        const account = `${ACCOUNT_ID}-${i + 1}`;
        accounts.push(account);
        const key = await seedAccount(pg.url, account);
        const [port, inspect, hold] = await Promise.all([freePort(), freePort(), freePort()]);
        const u = upstream(hold, 1, 0);
        const t = startTollgate(i, port, inspect, hold);
        moreTollgates.push(t.child);
        await waitForPort(hold, u.child, u.output, 'stream upstream', 120_000);
        await waitForHttp(`http://127.0.0.1:${port}/healthz`, t.child, t.output, `tollgate #${i + 1}`);
        gateways.push(tollgateGw(t.child.pid!, port, inspect, hold, `tollgate #${i + 1}`, key));
      }
      const rows: string[][] = [
        [
          'target',
          'held after',
          'streams',
          'RSS idle MiB',
          'RSS all open MiB',
          'KiB per open stream',
          'after a full GC (idle too)',
          'answered 2xx',
          'open files',
          'PG connections (busy)',
        ],
      ];
      // PostgreSQL's client connections while all streams are open, this one's own left out.
      const db = new PgClient({ connectionString: pg.url });
      await db.connect();
      const pgConnections = async () => {
        const {
          rows: [r],
        } = await db.query<{ total: number; busy: number }>(
          "SELECT count(*)::int AS total, (count(*) FILTER (WHERE state <> 'idle'))::int AS busy FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        );
        return `${r!.total} (${r!.busy})`;
      };
      let verdict: { streams: number; kib: number; kibAfterGc: number; all2xx: boolean } | undefined;
      // The small growth shapes first: after thousands of streams a gateway's heap takes minutes to
      // shrink back, and their idle RSS would be that, not idle.
      // A few streams through each gateway first, not measured: what its first streams load once
      // (the tokenizer's tables, compiled code) is no open stream's memory (it read 827 KiB per stream).
      const share = (i: number) => Math.floor(streams / instances) + (i < streams % instances ? 1 : 0);
      const bareGw = bare(bareHoldPort, bareHold.child);
      const shapes: { parts: { gw: Gw; count: number }[]; model: string; chunks: number; warmUp?: true }[] = [
        ...gateways.map((gw) => ({ parts: [{ gw, count: 20 }], model: MODELS.hold20, chunks: 20, warmUp: true as const })),
        { parts: [{ gw: bareGw, count: 20 }], model: MODELS.hold20, chunks: 20, warmUp: true },
        { parts: [{ gw: gateways[0]!, count: Math.min(GROWTH_STREAMS, streams) }], model: MODELS.hold20, chunks: 20 },
        { parts: [{ gw: gateways[0]!, count: Math.min(GROWTH_STREAMS, streams) }], model: MODELS.holdLong, chunks: CHUNKS },
        { parts: gateways.map((gw, i) => ({ gw, count: share(i) })), model: MODELS.hold1, chunks: 1 },
        // the bare proxy stays one process, at most what one process holds
        { parts: [{ gw: bareGw, count: streams }], model: MODELS.hold1, chunks: 1 },
      ];
      const perStreamAfter = new Map<number, { rss: number; live: number }>();
      for (const { parts: asked, model, chunks, warmUp } of shapes) {
        // the previous shape's streams all settled (Tollgate settles after the answer ends), then a moment
        const settling = Date.now();
        for (const { gw } of asked) {
          for (const deadline = Date.now() + 600_000; gw.name === 'tollgate' && Date.now() < deadline; ) {
            const metrics = await (await fetch(`${gw.origin}/metrics`)).text();
            if (metricSum(metrics, 'tollgate_reservations_open', {}) === 0) break;
            await new Promise((resolve) => setTimeout(resolve, 500));
          }
        }
        if (Date.now() - settling > 1_000)
          process.stderr.write(`  waited ${((Date.now() - settling) / 1_000).toFixed(1)} s for the last shape's reservations to settle\n`);
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        const parts: {
          gw: Gw;
          n: number;
          idle: number;
          idleAfterGc: number;
          idleLive: number;
          pool: HttpPool;
          o: Outcome;
          open: number;
          openAfterGc: number;
          openLive: number;
          files: number;
        }[] = [];
        for (const { gw, count } of asked) {
          // each figure against its own baseline: RSS as it is, and RSS after a full GC
          const idle = rssBytes(gw.pid);
          const idleLive = await fullGc(gw.inspectPort);
          const idleAfterGc = rssBytes(gw.pid);
          // what fits beside the files the gateway holds already (64 spare: its database pool may grow)
          const n = Math.min(count, Math.floor((limit - openFiles(gw.pid) - 64) / 2));
          const pool = new HttpPool(gw.origin, { connections: n, pipelining: 1, headersTimeout: 900_000, bodyTimeout: 900_000, connect: { timeout: 120_000 } });
          parts.push({ gw, n, idle, idleAfterGc, idleLive, pool, o: { ok: 0, failed: 0, chunks: 0 }, open: 0, openAfterGc: 0, openLive: 0, files: 0 });
        }
        const total = parts.reduce((sum, p) => sum + p.n, 0);
        let holding = 0;
        let allHeld!: () => void;
        const held = new Promise<void>((resolve) => (allHeld = resolve));
        const started = Date.now();
        // At most OPENING streams being opened at once, over all the gateways in turn: the next is
        // sent when one holds.
        const order: number[] = [];
        for (let j = 0; j < Math.max(...parts.map((p) => p.n)); j++) for (const [i, p] of parts.entries()) if (j < p.n) order.push(i);
        const streamsDone: Promise<void>[] = [];
        let sent = 0;
        const send = () => {
          if (sent >= total) return;
          const p = parts[order[sent++]!]!;
          streamsDone.push(stream(p.pool, p.gw.path, p.gw.headers, model, { events: chunks, then }, p.o));
        };
        const then = () => {
          if (++holding === total) allHeld();
          send();
        };
        for (let i = 0; i < Math.min(OPENING, total); i++) send();
        await held;
        const rampSeconds = (Date.now() - started) / 1_000;
        for (const p of parts) p.open = rssBytes(p.gw.pid);
        for (const p of parts) {
          p.openLive = await fullGc(p.gw.inspectPort);
          p.openAfterGc = rssBytes(p.gw.pid);
          p.files = openFiles(p.gw.pid);
        }
        const connections = await pgConnections();
        for (const hold of new Set(parts.map((p) => p.gw.holdPort))) await fetch(`http://127.0.0.1:${hold}/release`);
        await Promise.all(streamsDone);
        for (const p of parts) {
          await p.pool.close();
          count(p.gw, `${p.n} open streams (${model})`, p.o, p.n * (chunks + 2));
          process.stderr.write(
            `  open streams ${p.gw.label} ${model}: ${p.o.ok} ok${p.o.failed > 0 ? `, ${p.o.failed} failed ${JSON.stringify(p.o.why)}` : ''}, all ${total} open after ${rampSeconds.toFixed(1)} s\n`,
          );
        }
        if (warmUp) continue;
        if (parts.length === 1 && parts[0]!.gw.name === 'tollgate' && parts[0]!.n > 0)
          perStreamAfter.set(chunks, {
            rss: (parts[0]!.openAfterGc - parts[0]!.idleAfterGc) / parts[0]!.n,
            live: (parts[0]!.openLive - parts[0]!.idleLive) / parts[0]!.n,
          });
        const row = (label: string, n: number, idle: number, idleAfterGc: number, open: number, openAfterGc: number, ok: number, files: number) => [
          label,
          `${chunks} chunks`,
          String(n),
          (idle / 2 ** 20).toFixed(0),
          (open / 2 ** 20).toFixed(0),
          ((open - idle) / 1_024 / n).toFixed(1),
          ((openAfterGc - idleAfterGc) / 1_024 / n).toFixed(1),
          `${ok}/${n}`,
          String(files),
          connections,
        ];
        for (const p of parts) rows.push(row(p.gw.label, p.n, p.idle, p.idleAfterGc, p.open, p.openAfterGc, p.o.ok, p.files));
        const sum = (of: (p: (typeof parts)[number]) => number) => parts.reduce((s, p) => s + of(p), 0);
        const ok = sum((p) => p.o.ok);
        if (parts.length > 1)
          rows.push(
            row(
              `${parts[0]!.gw.name} total`,
              total,
              sum((p) => p.idle),
              sum((p) => p.idleAfterGc),
              sum((p) => p.open),
              sum((p) => p.openAfterGc),
              ok,
              sum((p) => p.files),
            ),
          );
        if (parts[0]!.gw.name === 'tollgate' && model === MODELS.hold1)
          verdict = {
            streams: total,
            kib: (sum((p) => p.open) - sum((p) => p.idle)) / 1_024 / total,
            kibAfterGc: (sum((p) => p.openAfterGc) - sum((p) => p.idleAfterGc)) / 1_024 / total,
            all2xx: ok === total,
          };
      }
      await db.end();
      printTable(rows);
      // The answer's text itself is CHUNK_CHARS bytes a chunk: a relay keeping it would grow by that much.
      // After a full GC: RSS as it is after a burst of chunks says what the process took, not what it keeps.
      const short = perStreamAfter.get(20);
      const long = perStreamAfter.get(CHUNKS);
      if (short !== undefined && long !== undefined && CHUNKS > 20) {
        const signed = (kib: number) => `${kib >= 0 ? '+' : ''}${kib.toFixed(1)} KiB`;
        const growth = (long.rss - short.rss) / 1_024;
        const liveGrowth = (long.live - short.live) / 1_024;
        const text = ((CHUNKS - 20) * CHUNK_CHARS) / 1_024;
        // Live bytes (V8 heap in use + Buffers) are what a stream holds; RSS also keeps the pages
        // taken for the garbage the longer answers made, which the collector and malloc keep.
        console.log(
          `Memory per open stream, upstream reporting usage, after a full GC, after ${CHUNKS} chunks against after 20 ` +
            `(the ${CHUNKS - 20} more chunks carry ${text.toFixed(1)} KiB of text): live (V8 heap in use + Buffers) ${signed(liveGrowth)}: ` +
            `${liveGrowth < text / 2 ? 'does not grow with the answer' : 'GROWS with the answer'}; RSS ${signed(growth)}: ` +
            `${growth < text / 2 ? 'does not grow' : 'grows (pages kept for garbage, or held data: see live)'}`,
        );
      }
      if (verdict && !verdict.all2xx) console.log('Tollgate RSS per open stream: not judged (not every stream was served)');
      else if (verdict) {
        console.log(
          // Judged after a full GC: RSS as it is moves with when the collector last ran (a run of 500
          // streams read -43 KiB per stream), not with what the streams hold.
          `Tollgate RSS per open stream, ${verdict.streams} open over ${instances} instance(s) (their total RSS growth over the total streams), after a full GC: ` +
            `${verdict.kibAfterGc.toFixed(1)} KiB (target <= ${RSS_TARGET_KIB} KiB): ` +
            `${verdict.kibAfterGc <= RSS_TARGET_KIB ? 'met' : 'NOT met'} (${verdict.kib.toFixed(1)} KiB without the GC)` +
            (verdict.streams < 10_000 ? ` (issue 17 asks it at 10,000 streams; this run held ${verdict.streams})` : ''),
        );
      }
    }

    // --- ledger ---------------------------------------------------------------------------------
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    markStopping();
    await Promise.all([tg.child, ...moreTollgates].map((child) => stopChild(child, 60_000)));
    const ledgers = await Promise.all(accounts.map((account) => readLedger(pg!.url, account)));
    const ledger = {
      placed: ledgers.reduce((n, l) => n + l.placed, 0),
      settled: ledgers.reduce((n, l) => n + l.settled, 0),
      released: ledgers.reduce((n, l) => n + l.released, 0),
      expired: ledgers.reduce((n, l) => n + l.expired, 0),
      open: ledgers.reduce((n, l) => n + l.open, 0),
    };
    const ended = ledger.settled + ledger.released + ledger.expired;
    const checks: [string, boolean][] = [
      [`no open reservation (open: ${ledger.open})`, ledger.open === 0],
      [`every reservation ended once (placed ${ledger.placed} = ended ${ended})`, ledger.placed === ended],
      [`settlements = 2xx answers (${ledger.settled} settled, ${tollgate2xx} 2xx)`, ledger.settled === tollgate2xx],
    ];
    console.log(`\nledger after the run${accounts.length > 1 ? ` (${accounts.length} accounts, one per instance)` : ''}:`);
    for (const [label, ok] of checks) console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${label}`);
    if (invalid.length > 0) {
      console.error(`\nINVALID: ${invalid.join('; ')}`);
      exitCode = 1;
    }
    if (checks.some(([, ok]) => !ok)) exitCode = 1;
  } finally {
    await cleanup();
  }
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
