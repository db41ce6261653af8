import type { InferenceOutcome } from '../../../adapters/inference';
import { billedAtMost } from '../../../src/inference/serve-request';

const outcome = (outputTokens: number, operation: InferenceOutcome['operation'] = 'chat'): InferenceOutcome => ({
  kind: 'completed',
  operation,
  model: 'm',
  httpStatus: 200,
  usage: { inputTokens: 12, outputTokens, estimated: false },
  upstream: 'http://127.0.0.1:1',
  latencyMs: 5,
  tokensProduced: outputTokens,
  failovers: 0,
});

function logger() {
  const lines: unknown[] = [];
  return { lines, warn: (fields: unknown) => void lines.push(fields) };
}

test('output within max_tokens is billed as reported, and nothing is logged', () => {
  const log = logger();
  const o = outcome(100);
  expect(billedAtMost(o, 100, log, 'req_1')).toBe(o);
  expect(log.lines).toEqual([]);
});

test('output beyond max_tokens is billed at max_tokens, input untouched, and the overrun is logged', () => {
  const log = logger();
  const billed = billedAtMost(outcome(660_602), 100, log, 'req_1');
  expect(billed.usage).toEqual({ inputTokens: 12, outputTokens: 100, estimated: false });
  expect(billed.tokensProduced).toBe(100);
  expect(log.lines).toEqual([expect.objectContaining({ requestId: 'req_1', outputTokens: 660_602, maxOutputTokens: 100 })]);
});

test('embeddings have no output to cap', () => {
  const o = outcome(0, 'embedding');
  expect(billedAtMost(o, 0, logger(), 'req_1')).toBe(o);
});
