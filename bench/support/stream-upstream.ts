/**
 * An OpenAI-compatible streaming upstream for the stream benchmarks (bench/streams.ts), where
 * @dwmkerr/mock-llm does not fit: it reports usage at the end of each stream (as vLLM does when
 * asked for stream_options.include_usage), and it holds thousands of slow streams open at little
 * cost. Each answer is CHUNKS content chunks of CHUNK_CHARS characters, INTERVAL_MS apart (0: as
 * fast as the connection takes them), then finish_reason, the usage chunk and [DONE].
 * A model named `...-hold-<n>` instead streams n chunks at once and then holds the stream open
 * until a request to /release ends every held stream (finish_reason, usage, [DONE]): the bench
 * then measures all its streams open at once, however long opening them took.
 *   node --import tsx bench/support/stream-upstream.ts <port> <chunks> <chunk chars> <interval ms>
 */
import http from 'node:http';

const [port, chunks, chunkChars, intervalMs] = process.argv.slice(2, 6).map(Number) as [number, number, number, number];
if (![port, chunks, chunkChars, intervalMs].every(Number.isInteger)) throw new Error('usage: stream-upstream.ts <port> <chunks> <chunk chars> <interval ms>');

const piece = 'tollgate '.repeat(Math.ceil(chunkChars / 9)).slice(0, chunkChars);
const line = (model: string, content: string, finish: string | null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model, choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
// about 2 tokens per 9-character "tollgate " (counted the way tiktoken counts it: " tollgate" is 2)

const held = new Set<() => void>();

const server = http.createServer((req, res) => {
  if (req.url === '/release') {
    const count = held.size;
    for (const finish of [...held]) finish();
    held.clear();
    res.end(String(count));
    return;
  }
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (part: string) => (raw += part));
  req.on('end', () => {
    // A request cut off mid-body (its client gone) is answered 400, not a crash of the upstream.
    let model = 'bench';
    try {
      model = (JSON.parse(raw) as { model?: string }).model ?? 'bench';
    } catch {
      if (!res.destroyed) res.writeHead(400).end();
      return;
    }
    const chunk = line(model, piece, null);
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let sent = 0;
    const hold = /-hold-(\d+)$/.exec(model);
    const total = hold ? Number(hold[1]) : chunks;
    const reported = { prompt_tokens: 14, completion_tokens: Math.ceil((total * chunkChars * 2) / 9), total_tokens: 0 };
    reported.total_tokens = reported.prompt_tokens + reported.completion_tokens;
    const finish = () => {
      if (res.destroyed) return;
      res.write(line(model, '', 'stop'));
      res.write(
        `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1700000000, model, choices: [], usage: reported })}\n\n`,
      );
      res.end('data: [DONE]\n\n');
    };
    if (hold) {
      for (let i = 0; i < total; i++) res.write(chunk);
      held.add(finish);
      res.once('close', () => held.delete(finish));
      return;
    }
    const next = (): void => {
      if (res.destroyed) return;
      if (intervalMs > 0) {
        if (sent++ < chunks) {
          res.write(chunk);
          setTimeout(next, intervalMs);
        } else finish();
        return;
      }
      // as fast as the reader takes them
      while (sent < chunks) {
        sent++;
        if (!res.write(chunk)) {
          res.once('drain', next);
          return;
        }
      }
      finish();
    };
    next();
  });
});
server.maxConnections = 100_000;
server.keepAliveTimeout = 65_000;
server.listen(port, '127.0.0.1');
