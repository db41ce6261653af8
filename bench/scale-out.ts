/**
 * Throughput and CPU per request of 1, 2 and 3 gateway instances behind a real HAProxy, on one
 * PostgreSQL, on this machine:
 *   npx tsx bench/scale-out.ts [--seconds 10] [--connections 32] [--accounts 8] [--instances 3]
 *
 * Everything on loopback: a fresh embedded PostgreSQL (durable commits), one @dwmkerr/mock-llm
 * upstream, N gateway processes (compiled, `node dist/src/main.js` as `npm start` and the fault suite run them)
 * behind Debian's HAProxy (test/support/haproxy.ts: round robin, /readyz checks), autocannon in
 * this process sending non-streaming chat over `--connections` keep-alive connections, spread
 * over `--accounts` accounts (one key each; one hot account is bound by its own stream's appends,
 * see the README's "Scaling out"). For each N: requests/s, latency, and the CPU seconds the
 * gateways, PostgreSQL, HAProxy and the upstream spent per 1,000 requests (from /proc): on a
 * machine with few cores the gateways compete with the rest for the same CPUs, so CPU per
 * request says more about what another machine would gain than requests/s does.
 *
 * Exits non-zero if any answer is not 2xx.
 */
import { readdirSync, readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { launchMockLlm, chatCompletionRule } from '../adapters/inference/mock-llm-process';
import { startGatewayProcess, writeModelsFile, type GatewayProcess } from '../test/support/e2e-processes';
import { TEST_ADMIN_KEY } from '../test/support/gateway';
import { startHaproxy, type LoadBalancer } from '../test/support/haproxy';
import { flag, freePort, printTable, startBenchPostgres } from './support/embedded-postgres';
import { buildIfStale } from './support/dist';
import { MasterKey } from '../adapters/postgres/personal-data-vault';

/** The benchmark deployment's master key, the same for every instance. */
const MASTER_KEY = MasterKey.generate().export();

const SCALE_OUT_USAGE = `Scale-out: 1, 2 and 3 gateways behind HAProxy on one PostgreSQL, requests/s and CPU per request.

  npx tsx bench/scale-out.ts [--seconds 10] [--connections 32] [--accounts 8] [--instances 3]

  --seconds N      measured seconds per instance count (default 10), after a 2 s warm-up
  --connections N  autocannon connections (default 32)
  --accounts N     accounts the requests are spread over, one key each (default 8)
  --instances N    up to this many gateways (default 3)

Gateways run compiled (node dist/src/main.js, rebuilt first when a source is newer). Needs haproxy.
Exits 1 if any answer is not 2xx.
`;
if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(SCALE_OUT_USAGE);
  process.exit(0);
}

const SECONDS = flag('--seconds', 10);
const CONNECTIONS = flag('--connections', 32);
const ACCOUNTS = flag('--accounts', 8);
const MAX_INSTANCES = flag('--instances', 3);
const MODEL = 'bench-model';

type Group = 'gateways' | 'postgres' | 'haproxy' | 'upstream';

/** CPU ticks (utime + stime) of every process on the machine, by pid, with its parent and name. */
function allProcesses(): { pid: number; ppid: number; comm: string; cmdline: string; ticks: number }[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .flatMap((name) => {
      try {
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        const close = stat.lastIndexOf(')');
        const fields = stat.slice(close + 2).split(' ');
        const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ');
        return [
          {
            pid: Number(name),
            ppid: Number(fields[1]),
            comm: stat.slice(stat.indexOf('(') + 1, close),
            cmdline,
            ticks: Number(fields[11]) + Number(fields[12]),
          },
        ];
      } catch {
        return [];
      }
    });
}

function cpuByGroup(gatewayPids: readonly number[], haproxyPid: number): Map<number, { group: Group; ticks: number }> {
  const all = allProcesses();
  const children = new Map<number, number[]>();
  for (const p of all) (children.get(p.ppid) ?? children.set(p.ppid, []).get(p.ppid)!).push(p.pid);
  const descendants = (root: number): number[] => [root, ...(children.get(root) ?? []).flatMap(descendants)];
  const mine = new Set(descendants(process.pid));
  const gateways = new Set(gatewayPids.flatMap(descendants));
  const sample = new Map<number, { group: Group; ticks: number }>();
  for (const p of all) {
    if (!mine.has(p.pid)) continue;
    const group: Group | undefined = gateways.has(p.pid)
      ? 'gateways'
      : p.pid === haproxyPid
        ? 'haproxy'
        : p.cmdline.includes('mock-llm')
          ? 'upstream'
          : p.comm === 'postgres'
            ? 'postgres'
            : undefined;
    if (group) sample.set(p.pid, { group, ticks: p.ticks });
  }
  return sample;
}

function cpuSpent(before: ReturnType<typeof cpuByGroup>, after: ReturnType<typeof cpuByGroup>): Record<Group, number> {
  const spent: Record<Group, number> = { gateways: 0, postgres: 0, haproxy: 0, upstream: 0 };
  for (const [pid, now] of after) spent[now.group] += (now.ticks - (before.get(pid)?.ticks ?? 0)) / 100;
  return spent;
}

async function admin(base: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${TEST_ADMIN_KEY}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await response.text();
  if (response.status >= 300) throw new Error(`${method} ${path}: HTTP ${response.status} ${text.slice(0, 200)}`);
  return JSON.parse(text) as Record<string, unknown>;
}

async function main(): Promise<number> {
  buildIfStale();
  const pg = await startBenchPostgres();
  const mockPort = await freePort();
  const mock = await launchMockLlm(
    { streaming: { chunkSize: 8, chunkIntervalMs: 1 }, rules: [chatCompletionRule('{{jmes request body.messages[-1].content}}')] },
    mockPort,
  );
  const modelsFile = writeModelsFile([{ id: MODEL, upstreams: [{ baseUrl: mock.baseUrl, capacity: 1_024 }], maxOutputTokens: 256, operations: ['chat'] }]);
  const gateways: GatewayProcess[] = [];
  let lb: LoadBalancer | undefined;
  let failed = false;
  try {
    const rows: string[][] = [
      ['instances', 'req/s', 'p50 ms', 'p99 ms', 'gateways CPU s/1k req', 'postgres', 'haproxy', 'upstream', 'total CPU s/1k req', 'non-2xx'],
    ];
    const keys: string[] = [];
    for (let n = 1; n <= MAX_INSTANCES; n++) {
      while (gateways.length < n)
        gateways.push(await startGatewayProcess({ databaseUrl: pg.url, modelsFile, readyTimeoutMs: 120_000, env: { TOLLGATE_MASTER_KEY: MASTER_KEY } }));
      await lb?.stop();
      lb = await startHaproxy({ backends: gateways.map((g, i) => ({ name: `g${i}`, port: Number(new URL(g.url).port) })) });
      for (let i = 0; i < n; i++) await lb.waitFor(`g${i}`, 'UP');
      if (keys.length === 0) {
        await admin(lb.url, 'POST', '/admin/models', { id: MODEL, operations: ['chat'], max_output_tokens: 256 });
        await admin(lb.url, 'POST', '/admin/prices', { model: MODEL, operation: 'chat', input_usd_per_million: '0.50', output_usd_per_million: '1.50' });
        for (let a = 0; a < ACCOUNTS; a++) {
          const account = await admin(lb.url, 'POST', '/admin/accounts', { display_name: `Bench ${a}`, email: `bench${a}@example.org` });
          const id = String(account.account_id);
          await admin(lb.url, 'POST', `/admin/accounts/${id}/top-ups`, { amount_usd: '5000', reference: `bench-${a}`, reason: 'bench' });
          keys.push(String((await admin(lb.url, 'POST', `/admin/accounts/${id}/keys`, { name: 'bench' })).key));
        }
      }
      const requests = keys.map((key, a) => ({
        method: 'POST' as const,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: `hello from account ${a}` }] }),
      }));
      const cannon = (seconds: number) =>
        new Promise<autocannon.Result>((resolve, reject) => {
          let i = 0;
          const instance = autocannon(
            {
              url: `${lb!.url}/v1/chat/completions`,
              connections: CONNECTIONS,
              duration: seconds,
              method: 'POST',
              headers: { 'content-type': 'application/json' },
              requests: [
                {
                  setupRequest: (request) => {
                    const r = requests[i++ % requests.length]!;
                    return { ...request, method: r.method, headers: r.headers, body: r.body };
                  },
                },
              ],
            },
            (error, result) => (error ? reject(error) : resolve(result)),
          );
          void instance;
        });
      await cannon(2); // warm-up: JIT, key verification (bcrypt once per key per instance), caches
      const before = cpuByGroup(
        gateways.slice(0, n).map((g) => g.pid),
        lb.pid,
      );
      const result = await cannon(SECONDS);
      const after = cpuByGroup(
        gateways.slice(0, n).map((g) => g.pid),
        lb.pid,
      );
      const spent = cpuSpent(before, after);
      const total = result.requests.total;
      const per1k = (seconds: number) => ((seconds / Math.max(1, total)) * 1_000).toFixed(2);
      const non2xx = result.non2xx + result.errors;
      if (non2xx > 0) failed = true;
      rows.push([
        String(n),
        (total / SECONDS).toFixed(0),
        result.latency.p50.toFixed(1),
        result.latency.p99.toFixed(1),
        per1k(spent.gateways),
        per1k(spent.postgres),
        per1k(spent.haproxy),
        per1k(spent.upstream),
        per1k(spent.gateways + spent.postgres + spent.haproxy + spent.upstream),
        String(non2xx),
      ]);
      process.stderr.write(`measured ${n} instance(s)\n`);
    }
    console.log(
      `\nnon-streaming chat through HAProxy, autocannon ${CONNECTIONS} connections over ${ACCOUNTS} accounts, ${SECONDS} s per row after a 2 s warm-up; ` +
        `embedded PostgreSQL with durable commits; this machine: ${(await import('node:os')).cpus().length} CPUs, load average ${(await import('node:os'))
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}\n`,
    );
    printTable(rows);
    if (failed) console.log('\nFAILED: some answers were not 2xx');
    return failed ? 1 : 0;
  } finally {
    await lb?.stop();
    await Promise.all(gateways.map((g) => g.stop()));
    await mock.stop();
    await pg.stop().catch(() => {});
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(error);
    process.exit(1);
  },
);
