import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { StreamSink } from '../../../adapters/inference/sink';

/**
 * A tiny OpenAI-style upstream whose every byte a test scripts: for behaviour mock-llm lacks
 * (usage chunks, crashes mid-stream) and for seeing what the upstream received.
 */

export interface SeenRequest {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Record<string, unknown>;
  /** Resolves true when the client closed the connection before the response ended. */
  readonly closedEarly: Promise<boolean>;
}

export interface ScriptedUpstream {
  readonly baseUrl: string;
  readonly seen: SeenRequest[];
  close(): Promise<void>;
}

export type Script = (request: SeenRequest, res: ServerResponse) => void | Promise<void>;

export async function startScriptedUpstream(script: Script): Promise<ScriptedUpstream> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => {
      const closedEarly = new Promise<boolean>((resolve) => res.on('close', () => resolve(!res.writableFinished)));
      const request: SeenRequest = { path: req.url ?? '', headers: req.headers, body: JSON.parse(raw || '{}'), closedEarly };
      seen.push(request);
      void script(request, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function chatChunk(content: string, finishReason: string | null = null, extra: Record<string, unknown> = {}): string {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'scripted-upstream-model',
    choices: [{ index: 0, delta: { content }, finish_reason: finishReason }],
    ...extra,
  })}\n\n`;
}

export function usageChunk(promptTokens: number, completionTokens: number): string {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-scripted',
    object: 'chat.completion.chunk',
    created: 1_700_000_000,
    model: 'scripted-upstream-model',
    choices: [],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  })}\n\n`;
}

export function startSse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A sink that records every write and when it happened. */
export function recordingSink(onWrite?: (chunk: string, index: number) => void) {
  const writes: { chunk: string; at: number }[] = [];
  let opened = 0;
  const sink: StreamSink = {
    open: () => {
      opened++;
    },
    write: (chunk) => {
      writes.push({ chunk, at: performance.now() });
      onWrite?.(chunk, writes.length - 1);
      return true;
    },
  };
  return {
    sink,
    writes,
    opened: () => opened,
    /** The data payloads written, in order. */
    events: () =>
      writes.flatMap((w) =>
        w.chunk
          .split('\n\n')
          .filter((e) => e.startsWith('data: '))
          .map((e) => e.slice(6)),
      ),
  };
}
