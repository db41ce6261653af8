/**
 * What the per-request log line and metrics cost the gateway, in CPU per request:
 *   npx tsx bench/logging.ts [--requests 200000]
 *
 * A child process writes `--requests` request lines (the gateway's own logRequest, through the
 * gateway's pino options) to its stdout, a pipe the parent drains, as a log collector would;
 * it reports its own CPU time (user + system, so the write system calls count, wherever they
 * run) per line, for each destination: the gateway's (src/logger.ts: asynchronous SonicBoom,
 * one write per line unless one is in flight, when lines gather behind it), SonicBoom holding
 * lines until 4 KiB have gathered, and synchronous writes. Then, in this process, the CPU time
 * of the metrics a request updates (request counter, token counters, upstream latency
 * histogram, event-store append histogram). Rounds are interleaved and the best kept: on a
 * shared machine, contention only ever adds.
 */
import { spawn } from 'node:child_process';
import pino from 'pino';
import { createGatewayMetrics } from '../adapters/http/observability/metrics';
import { logRequest } from '../adapters/http/observability/request-log';
import { LOGGER_OPTIONS, loggerDestination } from '../src/logger';
import { flag, printTable } from './support/embedded-postgres';

const REQUESTS = flag('--requests', 200_000);
const ROUNDS = flag('--rounds', 3);
type Mode = 'src/logger.ts (async, per line)' | 'async, gathered to 4 KiB' | 'synchronous';
const MODES: readonly Mode[] = ['src/logger.ts (async, per line)', 'async, gathered to 4 KiB', 'synchronous'];

function child(mode: Mode): void {
  const destination =
    mode === 'synchronous'
      ? pino.destination({ dest: 1, sync: true })
      : mode === 'async, gathered to 4 KiB'
        ? pino.destination({ dest: 1, sync: false, minLength: 4_096, periodicFlush: 250 })
        : loggerDestination();
  const log = pino({ ...LOGGER_OPTIONS, level: 'info' }, destination);
  const entry = (i: number) => ({
    requestId: `req_${i.toString(16).padStart(32, '0')}`,
    route: '/v1/chat/completions',
    status: 200,
    latencyMs: 12.3,
    accountId: 'acct_0123456789',
    keyPrefix: 'tg_live_abcd',
    model: 'bench-model',
    inputTokens: 14,
    outputTokens: 20,
  });
  const before = process.cpuUsage();
  let i = 0;
  // In batches, yielding to the event loop between them as a server does between requests.
  const batch = () => {
    for (let end = Math.min(i + 500, REQUESTS); i < end; i++) logRequest(log, entry(i));
    if (i < REQUESTS) setImmediate(batch);
    else
      process.once('exit', () => {
        const used = process.cpuUsage(before);
        process.stderr.write(`${JSON.stringify({ nsPerLine: ((used.user + used.system) * 1_000) / REQUESTS })}\n`);
      });
  };
  batch();
}

async function parent(): Promise<void> {
  const best = new Map<Mode, number>();
  for (let round = 0; round < ROUNDS; round++) for (const mode of MODES) best.set(mode, Math.min(best.get(mode) ?? Infinity, await run(mode)));
  console.log(`request log line, CPU per line (ns, best of ${ROUNDS} interleaved rounds), ${REQUESTS} lines to a pipe`);
  const base = best.get(MODES[0]!)!;
  printTable([
    ['destination', 'ns/line', 'vs src/logger.ts'],
    ...MODES.map((mode) => [mode, String(Math.round(best.get(mode)!)), `${(best.get(mode)! / base).toFixed(2)}x`]),
  ]);
}

async function run(mode: Mode): Promise<number> {
  const proc = spawn(process.execPath, ['--import', 'tsx', __filename, '--child', mode, '--requests', String(REQUESTS)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let lines = 0;
  let tail = '';
  proc.stdout.on('data', (chunk: Buffer) => {
    for (const byte of chunk) if (byte === 0x0a) lines++;
  });
  proc.stderr.on('data', (chunk: Buffer) => (tail += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  const report = JSON.parse(tail.trim().split('\n').pop() ?? '{}') as { nsPerLine?: number };
  if (code !== 0 || lines !== REQUESTS || report.nsPerLine === undefined) throw new Error(`${mode}: exit ${code}, ${lines} lines, ${tail}`);
  return report.nsPerLine;
}

async function metricsCost(): Promise<void> {
  const metrics = createGatewayMetrics();
  const perRequest = () => {
    metrics.countRequest({ route: '/v1/chat/completions', status: 200, model: 'bench-model' });
    metrics.countTokens('bench-model', { input: 14, output: 20 });
    metrics.observeUpstreamLatency('bench-model', 12.3);
    metrics.observeEventStoreAppend(2.1);
    metrics.observeEventStoreAppend(1.7);
  };
  for (let i = 0; i < 50_000; i++) perRequest();
  const before = process.cpuUsage();
  for (let i = 0; i < REQUESTS; i++) perRequest();
  const used = process.cpuUsage(before);
  const ns = ((used.user + used.system) * 1_000) / REQUESTS;
  console.log('\nmetrics a request updates (request and token counters, upstream latency, two appends), CPU per request');
  printTable([
    ['', 'ns/request'],
    ['metrics', String(Math.round(ns))],
  ]);
}

if (process.argv.includes('--child')) child(process.argv[process.argv.indexOf('--child') + 1] as Mode);
else void parent().then(metricsCost);
