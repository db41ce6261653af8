import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { StreamSink } from '../../../adapters/inference/sink';
import { relayStream } from '../../../adapters/inference/stream';

// What one open stream keeps: many relays held open mid-answer, the heap measured after a full
// collection, once after 20 chunks and once after 1,000. A relay that kept the answer (its text,
// the chunks, the upstream reads they were cut from) would hold at least the text's size more.

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const piece = 'tollgate tollgat'; // 16 characters, as bench/streams.ts sends
const event = `data: ${JSON.stringify({ id: 'chatcmpl-mem', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: piece }, finish_reason: null }], usage: null })}\n\n`;
const ending = `data: ${JSON.stringify({ id: 'chatcmpl-mem', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: ${JSON.stringify({ id: 'chatcmpl-mem', choices: [], usage: { prompt_tokens: 3, completion_tokens: 5 } })}\n\ndata: [DONE]\n\n`;

const nullSink: StreamSink = { open: () => {}, write: () => true, waitForDrain: async () => {}, cork: () => {}, flush: () => {} };

/** Opens `streams` relays, each fed `chunks` chunks in reads of 8, then held; returns heap bytes per stream. */
async function heldBytesPerStream(streams: number, chunks: number, clientWantsUsage: boolean): Promise<number> {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let fed = 0;
  let allFed!: () => void;
  const everyoneFed = new Promise<void>((resolve) => (allFed = resolve));
  async function* body(): AsyncIterable<Buffer> {
    for (let sent = 0; sent < chunks; sent += 8) yield Buffer.from(event.repeat(Math.min(8, chunks - sent)));
    if (++fed === streams) allFed();
    await released;
    yield Buffer.from(ending);
  }
  gc();
  const before = process.memoryUsage().heapUsed;
  const relays = Array.from({ length: streams }, () =>
    relayStream({ body: body(), sink: nullSink, clientWantsUsage, operation: 'chat', now: () => 0, countPrompt: () => 3 }),
  );
  await everyoneFed;
  gc();
  const held = process.memoryUsage().heapUsed - before;
  release();
  const results = await Promise.all(relays);
  expect(results.every((r) => r.kind === 'completed' && r.upstreamUsage?.completionTokens === 5)).toBe(true);
  return held / streams;
}

test.each([false, true])(
  'an open stream holds no more memory after 1,000 chunks than after 20 (client asked for usage: %s)',
  async (clientWantsUsage) => {
    const streams = 200;
    await heldBytesPerStream(20, 40, clientWantsUsage); // warm up the code paths
    const short = await heldBytesPerStream(streams, 20, clientWantsUsage);
    const long = await heldBytesPerStream(streams, 1_000, clientWantsUsage);
    const textBytes = 980 * piece.length; // the 980 more chunks' text, one byte a character at least
    // Bounded: the token counter holds up to 4 KiB of text (then counts it and drops it), whatever the length.
    expect(long - short).toBeLessThan(4_096 * 2 + 2_048);
    expect(long - short).toBeLessThan(textBytes);
  },
  120_000,
);
