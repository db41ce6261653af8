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
// generous (a loaded machine can take tens of seconds just to start node with tsx).
const HUNG_AFTER_MS = 60_000;

/** Runs a TypeScript entry point of this repo in a child node (through tsx) to completion. */
export function runEntryPoint(entry: string, args: string[], env: Record<string, string | undefined>, timeoutMs = HUNG_AFTER_MS): Promise<Finished> {
  return runToCompletion(process.execPath, ['--import', 'tsx', resolve(repoRoot, entry), ...args], env, timeoutMs);
}

/** Runs a program from the repo root with extra environment, to completion. */
export function runToCompletion(command: string, args: string[], env: Record<string, string | undefined>, timeoutMs = HUNG_AFTER_MS): Promise<Finished> {
  const started = Date.now();
  return new Promise((done, fail) => {
    const child = spawn(command, args, {
      cwd: repoRoot,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
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
