// The floor for any *ledgered* gateway on this machine: bare-proxy.mjs's relay (node:http in,
// undici out, the bytes relayed as they arrive, the HTTP handling identical), plus the least a
// prepaid ledger must make durable, and nothing else (no auth, tokenizer, validation, events,
// projections, NOTIFY or logging):
//   - before an answer may leave, one reservation row, durable (fsync and synchronous_commit on
//     in the bench's PostgreSQL). Commits are grouped: at most one INSERT in flight; rows that
//     arrive meanwhile go together into the next one (one multi-row INSERT, one commit). The
//     request goes to the upstream at once, speculatively; its answer (for a stream, the first
//     byte) is held until its reservation's commit has resolved. A failed commit: the upstream
//     answer is dropped and the client gets 503;
//   - after the answer, one settlement row, deferred into the next commit: it waits for a
//     reservation to share one, or commits alone after 10 ms with none.
// bench/gateway.ts measures it beside Tollgate (CPU: this process plus its own PostgreSQL) and
// reads the table back: reservations = settlements = 2xx answers.
// Plain JavaScript, run by node with no loader, as bare-proxy.mjs is:
//   node bench/support/ledger-floor.mjs <upstream base URL> <port> <PostgreSQL URL>
// SIGTERM: stop listening, commit the settlements still deferred, exit 0.
import http from 'node:http';
import pg from 'pg';
import { Pool } from 'undici';

const [baseUrl, port, databaseUrl] = [process.argv[2], Number(process.argv[3]), process.argv[4]];
if (!baseUrl || !Number.isInteger(port) || !databaseUrl) throw new Error('usage: ledger-floor.mjs <upstream base URL> <port> <PostgreSQL URL>');
const upstream = new URL(baseUrl);
// No idle timeout: bench/streams.ts holds thousands of streams silent until all are open.
const pool = new Pool(upstream.origin, { pipelining: 1, bodyTimeout: 0 });
const path = `${upstream.pathname.replace(/\/+$/, '')}/chat/completions`;

// ---- the ledger: one table, group commit -------------------------------------------------------

const RESERVATION = 1;
const SETTLEMENT = 2;
/** what a request reserves, and what it is charged, in micro-USD (fixed: the floor reads no usage) */
const RESERVE_AMOUNT = 100;
const CHARGE_AMOUNT = 30;
/** a settlement alone waits this long for a reservation to share its commit */
const SETTLEMENT_DELAY_MS = 10;

const db = new pg.Pool({ connectionString: databaseUrl, max: 2 });
await db.query('CREATE TABLE IF NOT EXISTS ledger (id bigserial, request bigint NOT NULL, kind smallint NOT NULL, amount bigint NOT NULL)');
const INSERT = {
  name: 'ledger-floor-insert',
  text: 'INSERT INTO ledger (request, kind, amount) SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::bigint[])',
};

/** rows waiting for the next commit; a reservation carries its waiter */
let queue = [];
let reservationsQueued = 0;
let writing = false;
let timer;
let drained;

function flush() {
  if (writing || queue.length === 0) return;
  clearTimeout(timer);
  timer = undefined;
  const batch = queue;
  queue = [];
  reservationsQueued = 0;
  writing = true;
  db.query({ ...INSERT, values: [batch.map((r) => r.request), batch.map((r) => r.kind), batch.map((r) => r.amount)] }).then(
    () => {
      for (const row of batch) row.committed?.resolve();
      next();
    },
    (error) => {
      for (const row of batch) {
        if (row.committed) row.committed.reject(error);
        else queue.push(row); // a settlement is owed whatever happens: the next commit takes it
      }
      next();
    },
  );
}

function next() {
  writing = false;
  if (reservationsQueued > 0) flush();
  else if (queue.length > 0) timer ??= setTimeout(flush, SETTLEMENT_DELAY_MS);
  else drained?.();
}

/** Resolves once the reservation row is durable. */
function reserve(request) {
  return new Promise((resolve, reject) => {
    queue.push({ request, kind: RESERVATION, amount: RESERVE_AMOUNT, committed: { resolve, reject } });
    reservationsQueued += 1;
    flush();
  });
}

function settle(request) {
  queue.push({ request, kind: SETTLEMENT, amount: CHARGE_AMOUNT });
  if (!writing) timer ??= setTimeout(flush, SETTLEMENT_DELAY_MS);
}

// ---- HTTP: bare-proxy.mjs's, the answer held until the reservation is durable -----------------

let requests = 0;
const server = http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        const request = ++requests;
        // at once, side by side: the reservation's commit (true once durable) and the upstream call
        const durable = reserve(request).then(
          () => true,
          () => false,
        );
        const dispatched = pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
        dispatched.catch(() => {}); // a failed call is answered below, once the reservation is decided
        if (!(await durable)) {
          // Not reserved: nothing of the upstream's answer may leave. Cancel it (undici reports the
          // abort as an error on the body: expected) and say so.
          void dispatched.then(
            (answer) => answer.body.on('error', () => {}).destroy(),
            () => {},
          );
          res.writeHead(503);
          res.end();
          return;
        }
        try {
          const answer = await dispatched;
          res.writeHead(answer.statusCode, { 'content-type': String(answer.headers['content-type'] ?? 'application/json') });
          for await (const chunk of answer.body) res.write(chunk);
          res.end();
        } catch {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        } finally {
          settle(request);
        }
      })();
    });
  })
  .listen(port, '127.0.0.1');

process.once('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
  const done = new Promise((resolve) => (drained = resolve));
  if (!writing) queue.length > 0 ? flush() : drained();
  void done.then(() => db.end()).then(() => process.exit(0));
});
