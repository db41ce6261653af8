// The floor for any Node gateway on this machine: node:http in, undici out, the bytes relayed as
// they arrive, no authentication, no parsing, no ledger. bench/gateway.ts and bench/streams.ts
// measure it beside Tollgate so the cost of Node's HTTP itself is seen in the same run.
// Plain JavaScript, run by node with no loader (no tsx thread or compile at start), as the
// compiled gateway beside it is:
//   node bench/support/bare-proxy.mjs <upstream base URL> <port>
import http from 'node:http';
import { Pool } from 'undici';

const [baseUrl, port] = [process.argv[2], Number(process.argv[3])];
if (!baseUrl || !Number.isInteger(port)) throw new Error('usage: bare-proxy.mjs <upstream base URL> <port>');
const upstream = new URL(baseUrl);
// No idle timeout: bench/streams.ts holds thousands of streams silent until all are open.
const pool = new Pool(upstream.origin, { pipelining: 1, bodyTimeout: 0 });
const path = `${upstream.pathname.replace(/\/+$/, '')}/chat/completions`;

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      void (async () => {
        try {
          const answer = await pool.request({ method: 'POST', path, headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) });
          res.writeHead(answer.statusCode, { 'content-type': String(answer.headers['content-type'] ?? 'application/json') });
          for await (const chunk of answer.body) res.write(chunk);
          res.end();
        } catch {
          if (!res.headersSent) res.writeHead(502);
          res.end();
        }
      })();
    });
  })
  .listen(port, '127.0.0.1');
