import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'pg';
import { startEmbeddedPostgres } from '../../../adapters/postgres/embedded';
import { freePort } from '../../support/mock-llm';

/**
 * The embedded server's supervisor (adapters/postgres/embedded.ts), in this process: whom it
 * takes for a dead owner or an orphan postmaster, and whom it never touches.
 */

jest.setTimeout(120_000);

const root = mkdtempSync(join(tmpdir(), 'tollgate-embedded-unit-'));
chmodSync(root, 0o755);
const bystanders: ChildProcess[] = [];
afterAll(() => {
  for (const child of bystanders) child.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

/** A live process that is not PostgreSQL. */
function bystander(): ChildProcess {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  bystanders.push(child);
  return child;
}

async function answers(connectionString: string): Promise<boolean> {
  const client = new Client({ connectionString });
  await client.connect();
  try {
    return (await client.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one === 1;
  } finally {
    await client.end();
  }
}

test('an owner file naming a live process with another start time (a reused pid) is taken for a dead owner', async () => {
  const dataDir = join(root, 'reused-owner');
  const port = await freePort();
  const first = await startEmbeddedPostgres({ dataDir, port });
  await first.stop();

  const other = bystander();
  writeFileSync(
    join(dataDir, 'tollgate-owner.json'),
    JSON.stringify({ pid: other.pid, role: 'gateway', httpPort: 8080, pgPort: port, startTicks: '1', startedAt: '2020-01-01T00:00:00Z' }),
  );
  const server = await startEmbeddedPostgres({ dataDir, port });
  try {
    expect(await answers(server.connectionString)).toBe(true);
    expect(JSON.parse(readFileSync(join(dataDir, 'tollgate-owner.json'), 'utf8'))).toMatchObject({ pid: process.pid, role: 'gateway' });
  } finally {
    await server.stop();
  }
  expect(other.exitCode).toBeNull();
  expect(other.signalCode).toBeNull();
});

const postmasterPid = (dataDir: string) => Number(readFileSync(join(dataDir, 'pgdata', 'postmaster.pid'), 'utf8').split('\n')[0]);
const fakeLock = (dataDir: string, pid: number, port: number) =>
  writeFileSync(join(dataDir, 'pgdata', 'postmaster.pid'), `${pid}\n${join(dataDir, 'pgdata')}\n1700000000\n${port}\n\n127.0.0.1\n  0  0\nready   \n`);

test('a stale postmaster.pid naming a live process that is not PostgreSQL: that process is never signalled, and the server starts', async () => {
  const dataDir = join(root, 'stale-lock');
  const port = await freePort();
  await (await startEmbeddedPostgres({ dataDir, port })).stop();

  const other = bystander();
  fakeLock(dataDir, other.pid!, port);
  const server = await startEmbeddedPostgres({ dataDir, port });
  try {
    expect(await answers(server.connectionString)).toBe(true);
  } finally {
    await server.stop();
  }
  expect(other.exitCode).toBeNull();
  expect(other.signalCode).toBeNull();
});

test("a postmaster.pid naming another cluster's live server: that server is never stopped, and the failure says what failed", async () => {
  const [mineDir, otherDir] = [join(root, 'mine'), join(root, 'other')];
  const [minePort, otherPort] = [await freePort(), await freePort()];
  await (await startEmbeddedPostgres({ dataDir: mineDir, port: minePort })).stop();
  const other = await startEmbeddedPostgres({ dataDir: otherDir, port: otherPort });
  try {
    fakeLock(mineDir, postmasterPid(otherDir), minePort);
    const failure = await startEmbeddedPostgres({ dataDir: mineDir, port: minePort }).then(
      async (server) => {
        await server.stop();
        return undefined;
      },
      (error: unknown) => error,
    );
    // PostgreSQL itself refuses a lock file naming a live server of its user; the message carries its words.
    expect(failure).toBeInstanceOf(Error);
    expect((failure as Error).message).toMatch(new RegExp(`embedded PostgreSQL did not start on port ${minePort} .*postmaster\\.pid`));
    expect(await answers(other.connectionString)).toBe(true);
  } finally {
    await other.stop();
  }
});
