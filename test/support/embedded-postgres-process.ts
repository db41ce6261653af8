import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { startEmbeddedPostgres } from '../../adapters/postgres/embedded';
import { repoRoot } from './processes';

/**
 * A PostgreSQL server of its own for a test that stops and restarts it (the suite's shared
 * server must stay up), run by the gateway's own supervisor (adapters/postgres/embedded.ts) in
 * a small child process (this file, through tsx): it prints the connection string, and stops
 * the server when it gets SIGTERM; a test that SIGKILLs it leaves an orphan postmaster behind,
 * as a crashed gateway does.
 */

export interface StoppablePostgres {
  readonly connectionString: string;
  /** stops the server (fast shutdown: open connections are cut) */
  stop(): Promise<void>;
}

export function startStoppablePostgres(dataDir: string, port: number, timeoutMs = 30_000): Promise<StoppablePostgres> {
  const child = spawn(process.execPath, ['--import', 'tsx', __filename, dataDir, String(port)], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((done, fail) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`embedded PostgreSQL did not start within ${timeoutMs} ms: ${output}`));
    }, timeoutMs);
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`embedded PostgreSQL process exited with ${code}: ${output}`));
    });
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const line = /^url (\S+)$/m.exec(output);
      if (!line) return;
      clearTimeout(timer);
      done({ connectionString: line[1]!, stop: () => stopChild(child) });
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.removeAllListeners('exit');
    child.once('exit', () => done());
    child.kill('SIGTERM');
  });
}

// Run as a program: `node --import tsx embedded-postgres-process.ts <dataDir> <port>`.
if (require.main === module) {
  const [dataDir, port] = process.argv.slice(2);
  void startEmbeddedPostgres({ dataDir: resolve(dataDir!), port: Number(port) }).then(
    (server) => {
      process.stdout.write(`url ${server.connectionString}\n`);
      process.once('SIGTERM', () => void server.stop().then(() => process.exit(0)));
    },
    (error: unknown) => {
      process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
