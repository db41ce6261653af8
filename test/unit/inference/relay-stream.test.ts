import { relayStream } from '../../../adapters/inference/stream';
import type { StreamSink } from '../../../adapters/inference/sink';

const event = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;

async function* reads(...parts: string[]): AsyncIterable<Buffer> {
  for (const part of parts) yield Buffer.from(part);
}

function recordingSink(calls: string[]): StreamSink {
  return {
    open: () => calls.push('open'),
    write: (chunk) => {
      calls.push(chunk === 'data: [DONE]\n\n' ? 'write [DONE]' : 'write');
      return true;
    },
    waitForDrain: async () => {},
    cork: () => calls.push('cork'),
    flush: () => calls.push('flush'),
  };
}

test('the events of one upstream read are written between one cork and one flush: one system call, not one each', async () => {
  const calls: string[] = [];
  const result = await relayStream({
    body: reads(event('a'), event('b') + event('c') + event('d', 'stop') + 'data: [DONE]\n\n'),
    sink: recordingSink(calls),
    clientWantsUsage: false,
    operation: 'chat',
    now: () => 0,
    countPrompt: () => 1,
  });
  expect(result.kind).toBe('completed');
  // The first read opens the stream at once (first token latency); the second goes out corked.
  expect(calls).toEqual(['open', 'write', 'flush', 'cork', 'write', 'write', 'write', 'write [DONE]', 'flush']);
});
