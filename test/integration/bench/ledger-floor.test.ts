import { type ChildProcess, spawn } from 'node:child_process';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Client } from 'pg';
import { stopChild } from '../../../adapters/stop-child';
import { freePort } from '../../../bench/support/embedded-postgres';
import { createTestDatabase } from '../../support/database';
import { repoRoot } from '../../support/processes';
import { until, within } from '../../support/wait';

/**
 * bench/support/ledger-floor.mjs, the floor bench/gateway.ts measures beside Tollgate: it is only a
 * fair floor if it really makes the money durable before an answer leaves, so its promises are
 * checked here against a real PostgreSQL and a real upstream on loopback: the upstream is called
 * at once, the answer held until the reservation's commit; reservations that arrive while one
 * INSERT is in flight share the next commit; a failed commit answers 503, never the upstream's
 * answer; on SIGTERM the deferred settlements are committed.
 */

const ANSWER = JSON.stringify({ id: 'chatcmpl-floor', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' } }] });

let upstream: http.Server;
let upstreamSeen = 0;
let databaseUrl: string;
let db: Client;
let floor: ChildProcess | undefined;
let floorUrl: string;

beforeAll(async () => {
  upstream = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      upstreamSeen += 1;
      res.writeHead(200, { 'content-type': 'application/json' }).end(ANSWER);
    });
  });
  await new Promise<void>((done) => upstream.listen(0, '127.0.0.1', done));
  databaseUrl = await createTestDatabase('floor');
  db = new Client({ connectionString: databaseUrl });
  await db.connect();
});

afterAll(async () => {
  if (floor) await stopChild(floor, 10_000);
  await db.end();
  await new Promise((done) => upstream.close(done));
});

beforeEach(async () => {
  await db.query('DROP TABLE IF EXISTS ledger'); // the floor makes it afresh before it listens
  const port = await freePort();
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  const child = spawn(process.execPath, [join(repoRoot, 'bench/support/ledger-floor.mjs'), base, String(port), databaseUrl], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  floor = child;
  floorUrl = `http://127.0.0.1:${port}/v1/chat/completions`;
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  // a TCP connection, not a request: every request is relayed and reserved
  await until(
    () => {
      if (child.exitCode !== null) throw new Error(`ledger-floor exited: ${stderr}`);
      return new Promise<true | undefined>((done) => {
        const socket = net.connect({ host: '127.0.0.1', port }, () => {
          socket.destroy();
          done(true);
        });
        socket.once('error', () => done(undefined));
      });
    },
    { what: 'the ledger floor to listen' },
  );
  upstreamSeen = 0;
});

afterEach(async () => {
  if (floor) await stopChild(floor, 10_000);
  floor = undefined;
});

/** Stops the floor with SIGTERM (it commits its deferred settlements first); its exit code. */
async function stopFloor(): Promise<number | null> {
  const child = floor!;
  await within(stopChild(child, 10_000), 'the ledger floor to stop');
  floor = undefined;
  return child.exitCode;
}

function ask(): Promise<Response> {
  return fetch(floorUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":"m","messages":[]}' });
}

/** Rows by kind (1 reservation, 2 settlement), with the transactions that wrote them. */
async function rows(): Promise<{ request: number; kind: number; xmin: string }[]> {
  const { rows } = await db.query<{ request: string; kind: number; xmin: string }>('SELECT request, kind, xmin::text AS xmin FROM ledger ORDER BY id');
  return rows.map((r) => ({ request: Number(r.request), kind: r.kind, xmin: r.xmin }));
}

/** Holds a lock that makes the floor's INSERT wait; release() commits it. */
async function blockInserts(): Promise<{ release(): Promise<void> }> {
  const locker = new Client({ connectionString: databaseUrl });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE ledger IN EXCLUSIVE MODE');
  return {
    async release() {
      await locker.query('COMMIT');
      await locker.end();
    },
  };
}

/** True once an INSERT into the ledger waits for a lock (the floor's commit is then in flight and blocked). */
async function insertWaiting(): Promise<true | undefined> {
  const { rows } = await db.query(
    "SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'ledger' AND NOT l.granted AND l.mode = 'RowExclusiveLock'",
  );
  return rows.length > 0 ? true : undefined;
}

test('dispatches to the upstream at once, but holds the answer until its reservation is durable; settles after', async () => {
  const blocked = await blockInserts();
  let answered = false;
  const response = ask().then((r) => {
    answered = true;
    return r;
  });
  await until(() => (upstreamSeen === 1 ? true : undefined), { what: 'the upstream to be called' });
  await until(insertWaiting, { what: "the reservation's INSERT to wait for the lock" });
  // the upstream has answered, the reservation is not durable: nothing may have reached the client
  expect(answered).toBe(false);
  expect(await rows()).toEqual([]);
  await blocked.release();
  const r = await within(response, 'the answer once the reservation is committed');
  expect(r.status).toBe(200);
  expect(await r.text()).toBe(ANSWER);
  expect(await stopFloor()).toBe(0);
  expect((await rows()).map((row) => [row.request, row.kind])).toEqual([
    [1, 1],
    [1, 2],
  ]);
});

test('reservations that arrive while an INSERT is in flight share the next commit, one for all', async () => {
  const blocked = await blockInserts();
  const first = ask();
  await until(insertWaiting, { what: "the first reservation's INSERT to wait for the lock" });
  const others = [ask(), ask(), ask(), ask()];
  await until(() => (upstreamSeen === 5 ? true : undefined), { what: 'all five requests to reach the upstream' });
  await blocked.release();
  const answers = await within(Promise.all([first, ...others]), 'the five answers');
  expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
  await Promise.all(answers.map((a) => a.text()));
  expect(await stopFloor()).toBe(0);
  const all = await rows();
  const reservations = all.filter((row) => row.kind === 1);
  expect(reservations.map((row) => row.request).sort()).toEqual([1, 2, 3, 4, 5]);
  // the first alone in the INSERT that waited, the four others together in the next one
  const first1 = reservations.find((row) => row.request === 1)!;
  const rest = reservations.filter((row) => row.request !== 1);
  expect(new Set(rest.map((row) => row.xmin)).size).toBe(1);
  expect(rest[0]!.xmin).not.toBe(first1.xmin);
  expect(
    all
      .filter((row) => row.kind === 2)
      .map((row) => row.request)
      .sort(),
  ).toEqual([1, 2, 3, 4, 5]);
});

test('a reservation that cannot be committed answers 503, never the upstream answer, and is not settled', async () => {
  await db.query('ALTER TABLE ledger ADD CONSTRAINT no_reservations CHECK (kind <> 1)');
  const refused = await ask();
  expect(refused.status).toBe(503);
  expect(await refused.text()).toBe('');
  // called speculatively all the same (it may answer after the 503 went out), its answer dropped
  await until(() => (upstreamSeen === 1 ? true : undefined), { what: 'the speculative call to reach the upstream' });
  await db.query('ALTER TABLE ledger DROP CONSTRAINT no_reservations');
  const served = await ask();
  expect(served.status).toBe(200);
  await served.text();
  expect(await stopFloor()).toBe(0);
  expect((await rows()).map((row) => [row.request, row.kind])).toEqual([
    [2, 1],
    [2, 2],
  ]);
});
