import type { ServerResponse } from 'node:http';

/**
 * Where a streamed answer goes. The adapter calls open() once, just before the first event,
 * so until then the gateway can still answer with a JSON error and a real status code.
 * The adapter never ends the sink: the gateway does, after dispatch resolves.
 */
export interface StreamSink {
  /** Send status 200 and the SSE headers. */
  open(): void;
  /** One or more whole SSE events. false means "buffer full": the adapter waits for drain. */
  // biome-ignore lint/suspicious/noConfusingVoidType: a sink that never buffers may return nothing, as Node's writables' callers allow
  write(chunk: string): boolean | void;
  /** Resolves when the sink can take more, or will never (closed). */
  waitForDrain?(): Promise<void>;
  /**
   * Hold writes until flush(): the events of one upstream read go out in one system call, not
   * one each. Idempotent; flush() before waiting for drain.
   */
  cork?(): void;
  flush?(): void;
}

/** A sink over a node/express response, with backpressure through 'drain'. */
export function responseSink(res: ServerResponse): StreamSink {
  const bytes = byteSink(res);
  let corked = false;
  // While corked, events are joined into one string and written once at flush: one chunk of the
  // chunked encoding per upstream read, not three buffers (size, event, CRLF) per event.
  let held = '';
  return {
    open: () => bytes.open('text/event-stream; charset=utf-8'),
    write(chunk) {
      if (!corked) return bytes.write(chunk);
      held += chunk;
      return !res.writableNeedDrain;
    },
    waitForDrain: () => bytes.waitForDrain(),
    cork() {
      if (corked || res.destroyed || res.writableEnded) return;
      corked = true;
    },
    flush() {
      if (!corked) return;
      corked = false;
      const chunk = held;
      held = '';
      if (chunk.length > 0) bytes.write(chunk);
    },
  };
}

/**
 * Audio bytes or relayed SSE over a node/express response, in the content type the upstream
 * answered with: the same headers and backpressure as responseSink.
 */
export function byteSink(res: ServerResponse): ByteSink {
  return {
    open(contentType) {
      res.statusCode = 200;
      res.setHeader('content-type', contentType);
      res.setHeader('cache-control', 'no-cache');
      // Stops nginx-style proxies from buffering the stream.
      res.setHeader('x-accel-buffering', 'no');
      // No flushHeaders(): the first chunk follows at once, and the headers go out with it in
      // one write instead of a system call of their own.
    },
    write(chunk) {
      if (res.destroyed || res.writableEnded) return true;
      return res.write(chunk);
    },
    waitForDrain() {
      if (res.destroyed || res.writableEnded || !res.writableNeedDrain) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    },
  };
}

/** Where audio bytes or SSE events go; opened once, before the first chunk. */
export interface ByteSink {
  open(contentType: string): void;
  /** false: buffer full, wait for drain */
  write(chunk: Uint8Array | string): boolean;
  waitForDrain(): Promise<void>;
}

/**
 * A dispatch started before its reservation is durable (issue 17). Until open(), nothing reaches
 * the client: the sink holds the first write (and the opening of the response) and answers
 * "full", so the relay waits on waitForDrain instead of reading on; the upstream's own flow
 * control does the rest, so at most one write is held whatever the answer's length. cancel()
 * aborts the dispatch (its signal) and the held write is dropped, never sent.
 */
export interface DispatchGate {
  /** aborted by cancel(): give it to the dispatch */
  readonly cancelled: AbortSignal;
  /** the client's sink, behind the gate */
  sink(inner: StreamSink): StreamSink;
  /** the reservation is durable: let everything through, what was held first */
  open(): void;
  cancel(): void;
}

export function dispatchGate(): DispatchGate {
  const controller = new AbortController();
  let opened = false;
  let inner: StreamSink | undefined;
  let opening = false;
  const held: string[] = [];
  let wake: (() => void) | undefined;
  const waiting = new Promise<void>((resolve) => {
    wake = resolve;
  });
  return {
    cancelled: controller.signal,
    sink(target) {
      inner = target;
      return {
        open() {
          if (opened) target.open();
          else opening = true;
        },
        write(chunk) {
          if (opened) return target.write(chunk);
          if (!controller.signal.aborted) held.push(chunk);
          return false;
        },
        async waitForDrain() {
          if (!opened) await waiting;
          if (controller.signal.aborted) return;
          await target.waitForDrain?.();
        },
        cork() {
          if (opened) target.cork?.();
        },
        flush() {
          if (opened) target.flush?.();
        },
      };
    },
    open() {
      if (opened || controller.signal.aborted) return;
      opened = true;
      if (inner) {
        if (opening) inner.open();
        opening = false;
        for (const chunk of held.splice(0)) inner.write(chunk);
      }
      wake?.();
    },
    cancel() {
      if (opened) return;
      held.length = 0;
      controller.abort();
      wake?.();
    },
  };
}
