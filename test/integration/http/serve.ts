import type { Express } from 'express';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { until } from '../../support/wait';

export interface Running {
  readonly baseUrl: string;
  close(): Promise<void>;
}

/** Listens on a free port of 127.0.0.1. */
export function serve(app: Express): Promise<Running> {
  return new Promise((resolve, reject) => {
    const server: Server = app.listen(0, '127.0.0.1', (error?: Error) => {
      if (error) return reject(error);
      const { port } = server.address() as AddressInfo;
      resolve({
        baseUrl: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((done) => {
            server.closeAllConnections();
            server.close(() => done());
          }),
      });
    });
  });
}

/** A pino logger whose JSON lines land in `lines`, parsed. */
export function capturedLogger(): { logger: Logger; lines: Record<string, unknown>[]; raw: string[] } {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines, raw };
}

/** Waits until `predicate` holds, for log lines written after the response reached the client; the deadline is only a safety net. */
export async function eventually(predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  await until(() => (predicate() ? true : undefined), { timeoutMs, intervalMs: 10 });
}
