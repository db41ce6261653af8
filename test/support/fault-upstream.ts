import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A small real OpenAI-compatible upstream on loopback for the faults @dwmkerr/mock-llm cannot
 * produce: it never stalls, never cuts a connection mid-stream, never trickles with a usage
 * chunk at the end, and cannot stream faster than a client reads. Behaviour is chosen by the
 * requested model:
 * - `stall`: reads the request and never answers (`stallsClosed` counts those the client gave up on);
 * - `stall-mid-stream`: streams 3 chunks, then goes silent with the connection open;
 * - `cut`: streams 5 chunks, then destroys the connection (no finish_reason, no [DONE]);
 * - `trickle`: 10 chunks 300 ms apart, then finish_reason, a usage chunk and [DONE];
 * - `firehose`: chunks as fast as the connection takes them (waiting on 'drain'), until the
 *   reader goes away or `firehoseLimitBytes`; `firehoseWritten` counts what it wrote, and
 *   `firehoseParked` is true while it waits for 'drain' (held back by its reader).
 */
export interface FaultUpstream {
  /** includes /v1 */
  baseUrl: string;
  firehoseWritten: number;
  firehoseParked: boolean;
  stallsClosed: number;
  /** requests received, by model */
  readonly received: Record<string, number>;
  /** requests whose client hung up before the answer ended (cancelled), by model */
  readonly cancelled: Record<string, number>;
  stop(): Promise<void>;
}

export const TRICKLE_USAGE = { prompt_tokens: 13, completion_tokens: 10, total_tokens: 23 } as const;

const chunk = (model: string, content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-fault', object: 'chat.completion.chunk', created: 1700000000, model, choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

export async function startFaultUpstream(options: { firehoseLimitBytes?: number } = {}): Promise<FaultUpstream> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };
  const state: FaultUpstream = { baseUrl: '', firehoseWritten: 0, firehoseParked: false, stallsClosed: 0, received: {}, cancelled: {}, stop: async () => {} };

  const startStream = (res: ServerResponse) => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });

  const handle = (req: IncomingMessage, res: ServerResponse, body: { model?: string }) => {
    const model = body.model ?? '';
    state.received[model] = (state.received[model] ?? 0) + 1;
    res.once('close', () => {
      if (!res.writableFinished) state.cancelled[model] = (state.cancelled[model] ?? 0) + 1;
    });
    switch (model) {
      case 'stall':
        res.once('close', () => state.stallsClosed++);
        return; // never answer
      case 'stall-mid-stream':
        startStream(res);
        for (let i = 0; i < 3; i++) res.write(chunk(model, `word${i} `));
        return; // silent from here on
      case 'cut':
        startStream(res);
        for (let i = 0; i < 5; i++) res.write(chunk(model, `word${i} `));
        later(100, () => req.socket.destroy());
        return;
      case 'trickle': {
        startStream(res);
        let i = 0;
        const next = () => {
          if (res.destroyed) return;
          if (i < 10) {
            res.write(chunk(model, `w${i++} `));
            later(300, next);
            return;
          }
          res.write(chunk(model, '', 'stop'));
          res.write(
            `data: ${JSON.stringify({ id: 'chatcmpl-fault', object: 'chat.completion.chunk', created: 1700000000, model, choices: [], usage: TRICKLE_USAGE })}\n\n`,
          );
          res.end('data: [DONE]\n\n');
        };
        next();
        return;
      }
      case 'firehose': {
        startStream(res);
        const piece = chunk(model, 'lorem ipsum dolor sit amet '.repeat(40));
        const limit = options.firehoseLimitBytes ?? 1024 ** 3;
        const pump = () => {
          state.firehoseParked = false;
          while (!res.destroyed && state.firehoseWritten < limit) {
            state.firehoseWritten += piece.length;
            if (!res.write(piece)) {
              state.firehoseParked = true;
              res.once('drain', pump);
              return;
            }
          }
          if (!res.destroyed) res.end('data: [DONE]\n\n');
        };
        pump();
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'unknown fault model', type: 'invalid_request_error', param: 'model', code: null } }));
    }
  };

  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (part: string) => (raw += part));
    req.on('end', () => {
      let body: { model?: string } = {};
      try {
        body = JSON.parse(raw) as { model?: string };
      } catch {
        // answered as an unknown model
      }
      handle(req, res, body);
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  state.baseUrl = `http://127.0.0.1:${port}/v1`;
  state.stop = async () => {
    for (const timer of timers) clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return state;
}
