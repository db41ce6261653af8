import { dispatchGate, type StreamSink } from '../../../adapters/inference/sink';
import { relayStream } from '../../../adapters/inference/stream';

/**
 * The gate a speculative dispatch relays through (issue 17): nothing reaches the client's sink
 * before open(), the relay stops reading after its first write (so at most one write is held),
 * and a cancel drops what was held and ends the relay.
 */

const event = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

/** An upstream body that counts how many reads the relay pulled. */
function upstreamBody(parts: string[]): { body: AsyncIterable<Buffer>; pulled: () => number } {
  let pulled = 0;
  return {
    body: (async function* () {
      for (const part of parts) {
        pulled++;
        yield Buffer.from(part);
      }
    })(),
    pulled: () => pulled,
  };
}

function recordingSink(calls: string[]): StreamSink {
  return {
    open: () => calls.push('open'),
    write: (chunk) => {
      calls.push(chunk);
      return true;
    },
    waitForDrain: async () => {},
  };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A relay of `parts` into a recording sink behind a fresh gate, started. */
function relayBehindGate(parts: string[]) {
  const calls: string[] = [];
  const gate = dispatchGate();
  const upstream = upstreamBody(parts);
  const relaying = relayStream({
    body: upstream.body,
    sink: gate.sink(recordingSink(calls)),
    signal: gate.cancelled,
    clientWantsUsage: false,
    operation: 'chat',
    now: () => 0,
    countPrompt: () => 1,
  });
  return { calls, gate, upstream, relaying };
}

test('before open nothing reaches the client and the relay waits after its first write; open lets it through in order', async () => {
  const parts = [event('a'), event('b'), event('c', 'stop'), 'data: [DONE]\n\n'];
  const { calls, gate, upstream, relaying } = relayBehindGate(parts);
  for (let i = 0; i < 5; i++) await settle();
  expect(calls).toEqual([]);
  // The relay holds one write and reads no further.
  expect(upstream.pulled()).toBe(1);

  gate.open();
  const result = await relaying;
  expect(result.kind).toBe('completed');
  expect(calls[0]).toBe('open');
  expect(calls.slice(1).join('')).toBe(parts.join(''));
});

test('cancel: the held write is dropped, the relay ends as cancelled, nothing ever reaches the client', async () => {
  const { calls, gate, upstream, relaying } = relayBehindGate([event('a'), event('b'), event('c', 'stop'), 'data: [DONE]\n\n']);
  for (let i = 0; i < 5; i++) await settle();
  gate.cancel();
  const result = await relaying;
  expect(result.kind).toBe('client_disconnected');
  expect(gate.cancelled.aborted).toBe(true);
  // Opening after a cancel lets nothing through either.
  gate.open();
  expect(calls).toEqual([]);
  expect(upstream.pulled()).toBe(1);
});
