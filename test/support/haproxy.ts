import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from '../../adapters/stop-child';
import { freePort } from './mock-llm';
import { until } from './wait';

/**
 * A real HAProxy (Debian's package: `.ci/run` installs it) in front of gateway processes, as an
 * operator would run it:
 * - round robin per request (HTTP mode balances every request, keep-alive or not);
 * - health checks on GET /readyz every `checkIntervalMs`, a server out after 3 failures (a
 *   refused connection fails at once; a slow answer has 5 s), back after 2 successes;
 * - a request whose connection is refused or that gets no response at all (a stopping gateway
 *   closing an idle keep-alive connection as the request arrives, or a killed one) is retried on
 *   another server (`retry-on conn-failure empty-response`, `option redispatch`): the gateway
 *   had not answered it, and a reservation the dead one placed for it is expired uncharged;
 * - `X-Forwarded-For` added (the gateways trust 127.0.0.1: TOLLGATE_TRUSTED_PROXIES);
 * - every answer, HAProxy's own errors too, says which server it came from in `x-served-by`
 *   (a test's way to tell which instance served or failed a request).
 * The stats page (CSV) says which servers HAProxy sees up.
 */

export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? '/usr/sbin/haproxy';

export interface Backend {
  readonly name: string;
  readonly port: number;
}

export interface LoadBalancer {
  /** where clients connect, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly pid: number;
  /** Each server's status as HAProxy sees it: 'UP', 'DOWN', 'MAINT', or a transition like 'UP 1/2'. */
  serverStates(): Promise<Record<string, string>>;
  /** Resolves once HAProxy reports the server in that state (a safety-net deadline only). */
  waitFor(server: string, state: 'UP' | 'DOWN', timeoutMs?: number): Promise<void>;
  output(): string;
  stop(): Promise<void>;
}

export function haproxyConfig(options: { port: number; statsPort: number; backends: readonly Backend[]; checkIntervalMs: number }): string {
  const servers = options.backends.map((b) => `  server ${b.name} 127.0.0.1:${b.port} check`).join('\n');
  return `global
  maxconn 4096

defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 30s
  timeout queue 10s
  # a loaded machine answers /readyz slowly (it asks the database and an upstream): a slow
  # answer is not a dead server
  timeout check 5s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
  option forwardfor

frontend api
  bind 127.0.0.1:${options.port}
  default_backend gateways

backend gateways
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter ${options.checkIntervalMs} fastinter ${options.checkIntervalMs} downinter ${options.checkIntervalMs} fall 3 rise 2
  http-after-response set-header x-served-by %s
${servers}

frontend stats
  bind 127.0.0.1:${options.statsPort}
  stats enable
  stats uri /stats
`;
}

export async function startHaproxy(options: { backends: readonly Backend[]; checkIntervalMs?: number }): Promise<LoadBalancer> {
  if (!existsSync(HAPROXY_BIN)) throw new Error(`HAProxy not found at ${HAPROXY_BIN}: apt-get install -y haproxy (as .ci/run does), or set HAPROXY_BIN`);
  const port = await freePort();
  const statsPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-haproxy-'));
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, haproxyConfig({ port, statsPort, backends: options.backends, checkIntervalMs: options.checkIntervalMs ?? 500 }));
  // -db: stay in the foreground, logs to stderr; -W would fork a master.
  const child: ChildProcess = spawn(HAPROXY_BIN, ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000)));
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000)));
  const statsUrl = `http://127.0.0.1:${statsPort}/stats;csv`;

  const serverStates = async (): Promise<Record<string, string>> => {
    const csv = await (await fetch(statsUrl, { signal: AbortSignal.timeout(2_000) })).text();
    const lines = csv.split('\n').filter((line) => line.trim() !== '');
    const header = lines[0]!.replace(/^# /, '').split(',');
    const [px, sv, status] = ['pxname', 'svname', 'status'].map((name) => header.indexOf(name));
    const states: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const fields = line.split(',');
      if (fields[px!] === 'gateways' && fields[sv!] !== 'BACKEND' && fields[sv!] !== 'FRONTEND') states[fields[sv!]!] = fields[status!]!;
    }
    return states;
  };

  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}: ${output}`);
      return serverStates().then(
        () => true,
        () => undefined,
      );
    },
    { what: 'haproxy to listen', timeoutMs: 20_000, intervalMs: 50 },
  );
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    serverStates,
    async waitFor(server, state, timeoutMs = 30_000) {
      await until(async () => ((await serverStates().catch(() => ({}) as Record<string, string>))[server] === state ? true : undefined), {
        what: `haproxy to see ${server} ${state}`,
        timeoutMs,
        intervalMs: 50,
      });
    },
    output: () => output,
    stop: () => stopChild(child, 5_000),
  };
}
