/**
 * Where a gateway's CPU goes, by activity, from a V8 CPU profile (`bench/gateway.ts --profile DIR`
 * or `bench/streams.ts --profile DIR` write one):
 *   npx tsx bench/profile-breakdown.ts FILE.cpuprofile [--requests N]
 *
 * A sample goes to the first activity below that any frame of its stack belongs to, so work done
 * on behalf of an activity (a socket write under a PostgreSQL query, a zod parse under the group
 * commit) counts for that activity. Work reached only through a promise continuation has no
 * caller in the profile and lands in the layer that resumed it (PostgreSQL replies in the pg
 * client, upstream bytes in undici). Socket writes (`writev`) are also split by what sent them.
 * Read that split with care: on this machine V8's sampler put 20% of a one-connection run's busy
 * time in `writev` where `perf record` of the same run found about 3% in the kernel's writev.
 *
 * With --requests (the requests the profiled run served: the bench prints `placed`), each line
 * also says milliseconds per request.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

const HELP = `npx tsx bench/profile-breakdown.ts FILE.cpuprofile [--requests N]

Prints a V8 CPU profile's busy time by activity (start-up, the ledger's appends and the pg client,
the upstream call, Node's HTTP server, projections, GC, ...) and its socket writes by sender.
  --requests N   also print milliseconds per request (N: requests the profiled run served)
`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h') || args.length === 0) {
  process.stdout.write(HELP);
  process.exit(args.length === 0 ? 2 : 0);
}
const requestsAt = args.indexOf('--requests');
const requests = requestsAt >= 0 ? Number(args[requestsAt + 1]) : undefined;
if (requests !== undefined && !(Number.isInteger(requests) && requests > 0)) {
  process.stderr.write('--requests takes a positive whole number\n');
  process.exit(2);
}
const file = args.find((arg, index) => !arg.startsWith('--') && (requestsAt < 0 || index !== requestsAt + 1));
if (!file) {
  process.stderr.write(HELP);
  process.exit(2);
}

const has = (pattern: RegExp) => (frame: CallFrame) => pattern.test(frame.url);
const named = (pattern: RegExp) => (frame: CallFrame) => pattern.test(frame.functionName);

/** In order: the first that matches any frame of a sample's stack takes the sample. */
const ACTIVITIES: readonly (readonly [string, (frame: CallFrame) => boolean])[] = [
  ['start-up (loading modules)', (f) => has(/node:internal\/modules|node:internal\/bootstrap/)(f) || named(/^wrapSafe$/)(f)],
  ['GC', named(/^\(garbage collector\)$/)],
  ['projections, process managers (batches)', has(/\/read-models\/|\/process-managers\/|\/notices\/status|\/projections\//)],
  ['request log', has(/request-log\.js$/)],
  ['metrics (prom-client)', has(/prom-client|observability\/metrics/)],
  ['logging (pino)', has(/\/pino|\/logger\.js$/)],
  ['settlement (decide, append)', named(/^endReservation$/)],
  ['tokenizer', has(/gpt-tokenizer|adapters\/inference\/tokens\.js$/)],
  ['upstream call (undici, dispatch, relay)', has(/undici|adapters\/inference\/(dispatch|stream|sse-scan|sink|upstream-payload)\.js$/)],
  ['ledger: group commit, event store, pg client', has(/group-commit\.js$|eventstore\/postgres\/|node_modules\/(pg|pg-pool|pg-protocol)\//)],
  ['reservation decision (domain)', has(/dist\/domain\/|inference\/reservation\.js$/)],
  ['request parsing, validation (zod)', has(/openai\/requests\.js$|node_modules\/zod\//)],
  ['authentication (API keys)', has(/api-keys\.js$|http\/auth\.js$/)],
  ['admission limits', has(/\/admission\//)],
  ['answer writing', has(/json-response\.js$|routes\/answers\.js$/)],
  ['HTTP server (node:http, lean path)', has(/node:_http_|lean-v1\.js$|node:net$|stream_base_commons$/)],
];
const IDLE = '(idle)';

const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
const selfUs = new Map<number, number>();
profile.samples.forEach((id, index) => {
  selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0));
});

function stackOf(id: number): CallFrame[] {
  const stack: CallFrame[] = [];
  for (let current: number | undefined = id; current !== undefined; current = parentOf.get(current)) stack.push(byId.get(current)!.callFrame);
  return stack;
}

const WRITERS: readonly (readonly [string, RegExp])[] = [
  ['PostgreSQL queries (pg)', /node_modules\/pg\//],
  ['upstream requests (undici)', /undici/],
  ['answers and streams to clients (node:http)', /node:_http_outgoing|json-response|adapters\/inference\/(stream|sink)\.js$/],
];

const byActivity = new Map<string, number>();
const writes = new Map<string, number>();
let busy = 0;
for (const [id, us] of selfUs) {
  const stack = stackOf(id);
  if (stack[0]!.functionName === IDLE) continue;
  busy += us;
  const activity = ACTIVITIES.find(([, test]) => stack.some(test))?.[0] ?? 'other (promise machinery, timers, events)';
  byActivity.set(activity, (byActivity.get(activity) ?? 0) + us);
  if (stack[0]!.functionName === 'writev' || stack[0]!.functionName === 'writeBuffer') {
    const writer = WRITERS.find(([, pattern]) => stack.some((frame) => pattern.test(frame.url)))?.[0] ?? 'other';
    writes.set(writer, (writes.get(writer) ?? 0) + us);
  }
}

const perRequest = (us: number) => (requests ? `${(us / 1000 / requests).toFixed(3).padStart(8)} ms/req` : '');
const line = (label: string, us: number, of: number) =>
  `${((100 * us) / of).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms ${perRequest(us)}  ${label}\n`;

process.stdout.write(`${file}\nbusy ${(busy / 1000).toFixed(0)} ms${requests ? ` over ${requests} requests` : ''}\n\nby activity:\n`);
for (const [activity, us] of [...byActivity].sort((a, b) => b[1] - a[1])) process.stdout.write(line(activity, us, busy));
const written = [...writes.values()].reduce((sum, us) => sum + us, 0);
process.stdout.write(`\nsocket writes (writev, writeBuffer): ${((100 * written) / busy).toFixed(1)}% of busy time, by sender:\n`);
for (const [writer, us] of [...writes].sort((a, b) => b[1] - a[1])) process.stdout.write(line(writer, us, written));
