import fc from 'fast-check';
import { accountStreamId, decideAccount, evolveAccount, initialAccountState, type AccountEvent } from '../../../domain/account';
import { usd } from '../../../domain/money';
import { requestLogStreamId } from '../../../domain/request-log';
import { foldUsage, utcDay, type ReservationFacts } from '../../../projections/usage/usage';
import { runScriptInMemory, sampleAccountScript } from '../../../src/finance/sample-history';

const stream = accountStreamId('acc');
const at = (occurredAt: string) => ({ correlationId: 'c', causationId: 'c', actor: { kind: 'system' as const, process: 't' }, occurredAt });
const placed = (requestId: string, occurredAt: string): AccountEvent => ({
  type: 'ReservationPlaced',
  data: { requestId, keyId: 'k1', model: 'm1', operation: 'embedding', amount: usd('1'), priceVersion: 1, expiresAt: '2025-01-02T00:00:00Z', instanceId: null },
  metadata: at(occurredAt),
});

describe('usage reducer', () => {
  test('a settled speech request counts its audio milliseconds and input characters beside the tokens', () => {
    const settled = (requestId: string, operation: 'transcription' | 'speech', usage: Record<string, unknown>): AccountEvent =>
      ({
        type: 'ReservationSettled',
        data: {
          requestId,
          keyId: 'k1',
          model: 'whisper',
          operation,
          reservedAmount: 500n,
          actualCost: 170n,
          fromPromo: [],
          fromPurchased: 170n,
          usage: { inputTokens: 0n, outputTokens: 0n, estimated: true, ...usage },
          priceVersion: 1,
          outcome: 'completed',
        },
        metadata: at('2025-01-02T10:00:00+00:00'),
      }) as AccountEvent;
    const rows = [
      ...foldUsage([
        { streamId: stream, event: settled('a', 'transcription', { audioMilliseconds: 1_686n }) },
        { streamId: stream, event: settled('b', 'transcription', { audioMilliseconds: 2_000n }) },
        { streamId: stream, event: settled('c', 'speech', { inputCharacters: 43n }) },
      ]).values(),
    ];
    expect(rows.map((r) => [r.operation, r.requests, r.audioMilliseconds, r.inputCharacters, r.cost])).toEqual([
      ['transcription', 2n, 3_686n, 0n, 340n],
      ['speech', 1n, 0n, 43n, 170n],
    ]);
  });

  test('a release counts a request and an error under the key, model and operation of its placement, on the day it ended (UTC)', () => {
    const open = new Map<string, ReservationFacts>();
    // Placement and release in different batches: the facts travel through `open`.
    foldUsage([{ streamId: stream, event: placed('r1', '2025-01-01T23:59:00+00:00') }], open);
    const rows = foldUsage(
      [
        {
          streamId: stream,
          event: {
            type: 'ReservationReleased',
            data: { requestId: 'r1', amount: usd('1'), reason: 'gateway_error' },
            metadata: at('2025-01-02T00:00:01+00:00'),
          },
        },
        // Its latency comes from the request log (the wallet event carries none): no second request.
        {
          streamId: requestLogStreamId('acc', '2025-01-02'),
          event: {
            type: 'RequestLogged',
            data: {
              requestId: 'r1',
              accountId: 'acc',
              keyId: 'k1',
              model: 'm1',
              operation: 'embedding',
              ended: 'released',
              outcome: 'gateway_error',
              usage: null,
              upstream: null,
              httpStatus: 502,
              stream: false,
              latencyMs: 40,
              timeToFirstTokenMs: null,
            },
            metadata: at('2025-01-02T00:00:01+00:00'),
          },
        },
      ],
      open,
    );
    expect([...rows.values()]).toEqual([
      {
        accountId: 'acc',
        keyId: 'k1',
        model: 'm1',
        operation: 'embedding',
        day: '2025-01-02',
        requests: 1n,
        inputTokens: 0n,
        outputTokens: 0n,
        audioMilliseconds: 0n,
        inputCharacters: 0n,
        cost: 0n,
        errors: 1n,
        latencyMsSum: 40n,
        latencyCount: 1n,
      },
    ]);
    expect(open.size).toBe(0);
  });

  test('days are UTC whatever offset the writer used', () => {
    expect(utcDay('2025-01-01T23:30:00-02:00')).toBe('2025-01-02');
  });

  test('property: requests, tokens and cost sum to what the account state counted; errors are the ends not completed', () => {
    fc.assert(
      fc.property(fc.integer(), fc.integer({ min: 1, max: 200 }), (seed, steps) => {
        const { events, state } = runScriptInMemory(
          sampleAccountScript('acc', { seed, steps, startAt: '2025-01-01T00:00:00Z' }),
          (c, s) => decideAccount(c, s),
          evolveAccount,
          initialAccountState(),
        );
        const rows = [...foldUsage(events.map((event) => ({ streamId: stream, event }))).values()];
        const sum = (f: (r: (typeof rows)[number]) => bigint) => rows.reduce((s, r) => s + f(r), 0n);
        const ended = events.filter((e) => e.type === 'ReservationSettled' || e.type === 'ReservationReleased' || e.type === 'ReservationExpired');
        const errors = ended.filter((e) => e.type !== 'ReservationSettled' || e.data.outcome !== 'completed');
        return (
          sum((r) => r.requests) === BigInt(ended.length) &&
          sum((r) => r.errors) === BigInt(errors.length) &&
          sum((r) => r.cost) === state.totalUsage.cost &&
          sum((r) => r.inputTokens) === state.totalUsage.inputTokens &&
          sum((r) => r.outputTokens) === state.totalUsage.outputTokens &&
          rows.every((r) => r.keyId !== 'unknown')
        );
      }),
      { numRuns: 100 },
    );
  });
});
