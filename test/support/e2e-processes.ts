import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ModelSpec } from '../../adapters/inference';
import { freePort } from './mock-llm';
import { TEST_ADMIN_KEY } from './gateway';
import { stopChild } from '../../adapters/stop-child';

const repoRoot = resolve(__dirname, '../..');

export interface GatewayProcess {
  readonly url: string;
  readonly pid: number;
  /** stdout and stderr so far, for failure messages */
  output(): string;
  /** resolves once the process has ended */
  readonly exited: Promise<void>;
  /** resolves once it has ended and its stdout and stderr are read to their end */
  readonly closed: Promise<void>;
  /** its exit code once it has ended (null: still running, or ended by a signal) */
  exitCode(): number | null;
  stop(): Promise<void>;
}

/** Writes a models file in a fresh temporary directory; returns its path. */
export function writeModelsFile(models: readonly ModelSpec[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'tollgate-e2e-models-')), 'models.json');
  writeFileSync(file, JSON.stringify({ models }));
  return file;
}

/**
 * `npm start` (the compiled dist/src/main.js, which jest's global setup rebuilds whenever a source
 * changed) as a child process on a free port, over the given database; resolves once GET /readyz
 * answers 200. Compiled rather than through tsx: tsx compiles the gateway's modules on every start,
 * seconds of CPU per process that a suite starting dozens of them on two shared cores pays many times.
 */
export async function startGatewayProcess(options: {
  databaseUrl: string;
  modelsFile: string;
  env?: Record<string, string>;
  readyTimeoutMs?: number;
  /** a fixed port (a restart behind a load balancer comes back where it was); a free one when absent */
  port?: number;
  /** every chunk of its stdout, whole (output() keeps only the tail) */
  onStdout?: (chunk: Buffer) => void;
}): Promise<GatewayProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(process.execPath, [resolve(repoRoot, 'dist/src/main.js')], {
    cwd: repoRoot,
    env: {
      ...process.env,
      DATABASE_URL: options.databaseUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      TOLLGATE_MODELS_FILE: options.modelsFile,
      TOLLGATE_ADMIN_KEY: TEST_ADMIN_KEY,
      TOLLGATE_DATA_DIR: mkdtempSync(join(tmpdir(), 'tollgate-e2e-data-')),
      LOG_LEVEL: 'warn',
      // stop() SIGKILLs after 5 s: draining open requests for at most 2 s fits in it
      TOLLGATE_DRAIN_TIMEOUT_S: '2',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    options.onStdout?.(chunk);
    output = (output + chunk.toString()).slice(-8_000);
  });
  child.stderr!.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-8_000)));
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  const closed = new Promise<void>((done) => child.once('close', () => done()));
  const url = `http://127.0.0.1:${port}`;
  const stop = () => stopChild(child, 5_000);
  // A safety net for a process that never gets ready, generous for a loaded machine.
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway process exited with ${child.exitCode}: ${output}`);
    try {
      const response = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`gateway process not ready within the timeout: ${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { url, pid: child.pid!, output: () => output, exited, closed, exitCode: () => child.exitCode, stop };
}

/** Resident memory of a process (a gateway child), in bytes: /proc on Linux, else ps. */
export function rssBytes(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    if (match) return Number(match[1]) * 1024;
  } catch {
    // not Linux: ask ps
  }
  return (
    Number(
      execFileSync('ps', ['-o', 'rss=', '-p', String(pid)])
        .toString()
        .trim(),
    ) * 1024
  );
}

/** `npm start` (the compiled dist/src/main.js, as npm start runs it) with no DATABASE_URL: the embedded default, in its own data dir and ports. */
export interface EmbeddedGatewayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly pid: number;
  /** stdout and stderr so far */
  output(): string;
  /** resolves with the exit code (or signal) once the process has ended */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnEmbeddedGateway(options: { dataDir: string; pgPort: number; port: number; env?: Record<string, string> }): EmbeddedGatewayProcess {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TOLLGATE_DATA_DIR: options.dataDir,
    TOLLGATE_EMBEDDED_PG_PORT: String(options.pgPort),
    PORT: String(options.port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  for (const name of ['DATABASE_URL', 'EVENTSTORE_URL', ...['TOLLGATE_MODELS_FILE', 'TOLLGATE_ADMIN_KEY'].filter((n) => !options.env?.[n])]) delete env[name];
  const child = spawn(process.execPath, [resolve(repoRoot, 'dist/src/main.js')], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  return { child, url: `http://127.0.0.1:${options.port}`, pid: child.pid!, output: () => output, exited };
}

/** Resolves once GET /readyz answers 200; fails if the process ends first or the deadline passes. */
export async function readyOrExit(gateway: EmbeddedGatewayProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (gateway.child.exitCode !== null || gateway.child.signalCode !== null)
      throw new Error(`gateway exited with ${gateway.child.exitCode ?? gateway.child.signalCode}: ${gateway.output()}`);
    try {
      const response = await fetch(`${gateway.url}/readyz`, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`gateway not ready within ${timeoutMs} ms: ${gateway.output()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SIGTERM, SIGKILL after `killAfterMs`; resolves with how it ended. */
export async function stopEmbeddedGateway(
  gateway: EmbeddedGatewayProcess,
  killAfterMs = 60_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  await stopChild(gateway.child, killAfterMs);
  return gateway.exited;
}

/**
 * The URL of the embedded server running on a data dir, as the CLI finds it: the port from
 * PostgreSQL's own lock file (pgdata/postmaster.pid, line 4), the password from pg-password.
 */
export function embeddedDatabaseUrl(dataDir: string): string {
  const port = readFileSync(join(dataDir, 'pgdata', 'postmaster.pid'), 'utf8')
    .split('\n')[3]!
    .trim();
  const password = readFileSync(join(dataDir, 'pg-password'), 'utf8').trim();
  return `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`;
}
