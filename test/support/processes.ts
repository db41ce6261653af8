import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

export const repoRoot = resolve(__dirname, '../..');

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
  elapsedMs: number;
}

// How long a child may take before it counts as hung: a safety net, never a verdict, so it is
// generous (a loaded machine can take tens of seconds just to start node).
const HUNG_AFTER_MS = 60_000;

/**
 * The compiled file of an entry point of this repo (`src/main.ts` -> `<repo>/dist/src/main.js`),
 * as `npm start` and bin/tollgate run them. Jest's global setup rebuilds dist/ whenever a source
 * changed, so it is never stale; running it costs no tsx compilation of every module per child
 * (seconds of CPU each on the suite's two shared cores).
 */
export function compiledEntryPoint(entry: string): string {
  return resolve(repoRoot, 'dist', entry.replace(/\.ts$/, '.js'));
}

/** Runs an entry point of this repo (given by its source path, run compiled) in a child node to completion. */
export function runEntryPoint(entry: string, args: string[], env: Record<string, string | undefined>, timeoutMs = HUNG_AFTER_MS): Promise<Finished> {
  return runToCompletion(process.execPath, [compiledEntryPoint(entry), ...args], env, timeoutMs);
}

/** Runs a program from the repo root with extra environment, to completion; `input`, if given, is its stdin. */
export function runToCompletion(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
  timeoutMs = HUNG_AFTER_MS,
  input?: string,
): Promise<Finished> {
  const started = Date.now();
  return new Promise((done, fail) => {
    const child = spawn(command, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    child.stdin?.end(input);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (chunk) => (stdout += chunk));
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`${command} ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, elapsedMs: Date.now() - started });
    });
  });
}
