import { createParser } from 'eventsource-parser';
import type { EventSourceMessage } from 'eventsource-parser';
import type { Operation } from './models-file';
import type { OutcomeKind } from './outcome';
import type { StreamSink } from './sink';
import { ChunkScanner } from './sse-scan';
import { StreamingTokenCounter } from './tokens';
import { collectMessageText, isModerationError, isRecord, readUsage } from './upstream-payload';

/**
 * Relays an upstream's SSE stream to the client event by event, as each arrives, waiting on
 * the sink's backpressure. It keeps the generated text in memory only to count tokens when
 * the upstream reports no usage; the text is never logged and is dropped with the result.
 */

export interface RelayInput {
  readonly body: AsyncIterable<Buffer | string>;
  readonly sink: StreamSink;
  readonly signal?: AbortSignal | undefined;
  /** The client asked for stream_options.include_usage: pass (or make) the usage chunk. */
  readonly clientWantsUsage: boolean;
  readonly operation: Operation;
  /** Set when the upstream's model name must be replaced by the public id in each chunk. */
  readonly publicModel?: string | undefined;
  readonly now: () => number;
  readonly countPrompt: () => number;
}

export interface RelayResult {
  readonly kind: OutcomeKind;
  /** Whether anything was written to the sink (so its headers are out). */
  readonly started: boolean;
  /** Tokens in the generated text, counted locally (for when the upstream reports no usage). */
  countTokens(): number;
  readonly upstreamUsage?: { promptTokens?: number; completionTokens?: number };
  readonly firstTokenAt?: number;
  readonly finishReason?: string;
  /** For an error event before any output: the status it carried, if any. */
  readonly errorStatus?: number;
}

// A broken upstream must not make us buffer without bound while looking for an event's end.
const maxEventBytes = 8 * 1024 * 1024;

export async function relayStream(input: RelayInput): Promise<RelayResult> {
  const { sink, signal } = input;
  // The generated text is counted as it comes, never kept whole: memory per stream does not grow
  // with the answer's length.
  const counter = new StreamingTokenCounter();
  const scanner = new ChunkScanner(input.publicModel);
  const parts: string[] = [];
  const pending: EventSourceMessage[] = [];
  let parserBroken = false;
  const parser = createParser({
    onEvent: (event) => pending.push(event),
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') parserBroken = true;
    },
    maxBufferSize: maxEventBytes,
  });

  let started = false;
  // Inside the loop over one upstream read's events (corked between them).
  let inRead = false;
  // The sink said it was full during the current read: wait for drain once the read is written.
  let full = false;
  let done = false;
  let finishReason: string | undefined;
  let moderated = false;
  let upstreamUsage: RelayResult['upstreamUsage'];
  let usageRelayed = false;
  let firstTokenAt: number | undefined;
  let errorKind: OutcomeKind | undefined;
  let errorStatus: number | undefined;
  let last: { id?: unknown; created?: unknown; model?: unknown; object?: unknown } = {};
  // The latest chunk relayed without parsing, read for its id and model only if a usage chunk must
  // be made: one event's text, whatever the answer's length (copied once per read).
  let lastUnparsed: string | undefined;

  // Returns a promise only when the sink is full: the common event costs no promise and no tick.
  const write = (chunk: string): Promise<void> | undefined => {
    if (!started) {
      sink.open();
      started = true;
    }
    if (sink.write(chunk) === false && sink.waitForDrain) {
      // Within one read of a corking sink: the rest of the read joins this write, and the relay
      // waits for drain after it (one system call, not one for the events before the wait and one
      // for those after). What the sink holds is bounded by one upstream read.
      if (inRead && sink.cork) {
        full = true;
        return undefined;
      }
      sink.flush?.();
      return untilDrainOrAbort(sink.waitForDrain(), signal);
    }
    return undefined;
  };

  /**
   * Most chunks carry only text: relayed as they came, their text counted, nothing parsed.
   * Returns undefined when done with the event, a promise while the sink is full, or 'parse'.
   */
  const relayPlain = (data: string): Promise<void> | undefined | 'parse' => {
    const scanned = scanner.scan(data);
    if (scanned.kind === 'parse') return 'parse';
    // Not JSON (a keep-alive or a vendor extension): nothing to relay or count. [DONE] is handled whole.
    if (scanned.kind === 'skip') return isDone(data) ? 'parse' : undefined;
    // Only a client that asked for usage may need the usage chunk made from this one.
    if (input.clientWantsUsage) lastUnparsed = data;
    if (scanned.text.length > 0) {
      counter.add(scanned.text);
      if (firstTokenAt === undefined) firstTokenAt = input.now();
    }
    return write(sseData(scanned.data));
  };

  // Returns false to stop reading the upstream.
  const handle = async (event: EventSourceMessage): Promise<boolean> => {
    const data = event.data;
    if (isDone(data)) {
      if (input.clientWantsUsage && !usageRelayed) await write(sseData(JSON.stringify(syntheticUsageChunk())));
      await write('data: [DONE]\n\n');
      done = true;
      return true;
    }

    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      return true; // Not JSON (a keep-alive or a vendor extension): nothing to relay or count.
    }
    if (!isRecord(chunk)) return true;

    if (chunk.error !== undefined) {
      errorKind = isModerationError(chunk) ? 'moderation_refusal' : 'upstream_error';
      const status = isRecord(chunk.error) ? Number(chunk.error.code ?? chunk.error.status) : NaN;
      if (Number.isInteger(status) && status >= 400 && status < 600) errorStatus = status;
      // The upstream's error text might echo the prompt: send our own words if streaming began.
      if (started) await write(sseData(streamError('The upstream reported an error mid-stream.', 'upstream_error')));
      return false;
    }

    last = { id: chunk.id, created: chunk.created, model: chunk.model, object: chunk.object };
    lastUnparsed = undefined;
    const usage = readUsage(chunk.usage);
    if (usage) upstreamUsage = usage;
    const choices = Array.isArray(chunk.choices) ? chunk.choices.filter(isRecord) : [];
    if (choices.length === 0 && usage) {
      // The usage-only chunk: the client sees it only if it asked, as with OpenAI.
      if (!input.clientWantsUsage) return true;
      usageRelayed = true;
    }

    parts.length = 0;
    for (const choice of choices) {
      if (typeof choice.text === 'string') parts.push(choice.text);
      else if (isRecord(choice.delta)) collectMessageText(choice.delta, parts);
      if (typeof choice.finish_reason === 'string') {
        finishReason = choice.finish_reason;
        if (choice.finish_reason === 'content_filter') moderated = true;
      }
    }
    for (const part of parts) counter.add(part);
    if (firstTokenAt === undefined && parts.some((part) => part.length > 0)) firstTokenAt = input.now();

    if (input.publicModel !== undefined && typeof chunk.model === 'string') {
      chunk.model = input.publicModel;
      await write(sseData(JSON.stringify(chunk)));
    } else {
      await write(sseData(data));
    }
    return true;
  };

  const syntheticUsageChunk = () => {
    if (lastUnparsed !== undefined) {
      try {
        const chunk: unknown = JSON.parse(lastUnparsed);
        if (isRecord(chunk)) last = { id: chunk.id, created: chunk.created, model: chunk.model, object: chunk.object };
      } catch {
        // Relayed as it came, but not JSON after all: the usage chunk takes our defaults.
      }
    }
    const promptTokens = input.countPrompt();
    const completionTokens = counter.total();
    return {
      id: last.id ?? 'usage',
      object: last.object ?? (input.operation === 'chat' ? 'chat.completion.chunk' : 'text_completion'),
      created: last.created ?? Math.floor(Date.now() / 1000),
      model: input.publicModel ?? last.model ?? '',
      choices: [],
      usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
    };
  };

  const decoder = new TextDecoder();
  try {
    reading: for await (const bytes of input.body) {
      parser.feed(typeof bytes === 'string' ? bytes : decoder.decode(bytes, { stream: true }));
      if (parserBroken) {
        errorKind = 'upstream_error';
        break;
      }
      // The events of one read go out together, in one system call.
      if (started) sink.cork?.();
      inRead = started;
      try {
        for (const event of pending) {
          // After [DONE], read on to the end so the keep-alive connection can be reused.
          if (done) break;
          const relayed = relayPlain(event.data);
          if (relayed === 'parse') {
            if (!(await handle(event))) break reading;
          } else if (relayed !== undefined) await relayed;
          if (signal?.aborted) break reading;
        }
      } finally {
        pending.length = 0;
        inRead = false;
        // A copy, not a slice: a slice would keep this whole upstream read alive with the stream.
        if (lastUnparsed !== undefined) lastUnparsed = copyOf(lastUnparsed);
        counter.compact();
        sink.flush?.();
      }
      if (full) {
        full = false;
        await untilDrainOrAbort(sink.waitForDrain!(), signal);
        if (signal?.aborted) break;
      }
    }
  } catch {
    // A reset, a stall past bodyTimeout or our own abort: classified below.
  }

  let kind: OutcomeKind;
  if (signal?.aborted && !done) {
    kind = 'client_disconnected';
  } else if (errorKind !== undefined) {
    kind = errorKind;
    if (errorKind === 'upstream_error' && parserBroken && started) {
      await write(sseData(streamError('The upstream sent an unreadable stream.', 'upstream_error')));
    }
  } else if (done || finishReason !== undefined) {
    // Finished but closed without [DONE]: end the client's stream properly.
    if (!done) {
      if (input.clientWantsUsage && !usageRelayed) await write(sseData(JSON.stringify(syntheticUsageChunk())));
      await write('data: [DONE]\n\n');
    }
    kind = moderated ? 'moderation_refusal' : 'completed';
  } else {
    kind = 'cut';
    // An SDK reads an error event as a failure instead of a short, apparently complete answer.
    if (started) await write(sseData(streamError('The upstream stream ended before the answer was complete.', 'upstream_stream_cut')));
  }

  return {
    kind,
    started,
    countTokens: () => counter.total(),
    ...(upstreamUsage === undefined ? {} : { upstreamUsage }),
    ...(firstTokenAt === undefined ? {} : { firstTokenAt }),
    ...(finishReason === undefined ? {} : { finishReason }),
    ...(errorStatus === undefined ? {} : { errorStatus }),
  };
}

function copyOf(text: string): string {
  return Buffer.from(text, 'utf16le').toString('utf16le');
}

function isDone(data: string): boolean {
  return data.length < 64 && data.trim() === '[DONE]';
}

function sseData(json: string): string {
  return `data: ${json}\n\n`;
}

function streamError(message: string, code: string): string {
  return JSON.stringify({ error: { message, type: 'upstream_error', param: null, code } });
}

function untilDrainOrAbort(drain: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return drain;
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const onAbort = () => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    void drain.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
