import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import type { Operation } from '../../domain/price-book/operation';
import { toEpochMs } from '../../domain/time/instant';
import { accountIdOfStream } from '../balances/balances';

/**
 * Usage per account, key, model, operation and UTC day: what the dashboard and /v1/usage read.
 * A request counts on the day its reservation ended (settled, released or expired). Errors are
 * the requests not charged in full as asked: released and expired reservations, and settlements
 * whose outcome is anything but `completed`. Latency is kept as a sum and a count so averages
 * over any grouping stay exact.
 */

/** What ReservationPlaced says about a request that its release or expiry does not repeat. */
export interface ReservationFacts {
  readonly keyId: string;
  readonly model: string;
  readonly operation: Operation | string;
}

/** Facts of a reservation whose placement the projection never saw (not possible in a whole log). */
export const UNKNOWN_RESERVATION: ReservationFacts = { keyId: 'unknown', model: 'unknown', operation: 'unknown' };

export interface UsageRow {
  readonly accountId: string;
  readonly keyId: string;
  readonly model: string;
  readonly operation: string;
  /** YYYY-MM-DD, UTC */
  readonly day: string;
  readonly requests: bigint;
  readonly inputTokens: bigint;
  readonly outputTokens: bigint;
  /** seconds of audio charged, in milliseconds (transcription, translation) */
  readonly audioMilliseconds: bigint;
  /** input characters charged (speech) */
  readonly inputCharacters: bigint;
  readonly cost: MicroUsd;
  readonly errors: bigint;
  readonly latencyMsSum: bigint;
  readonly latencyCount: bigint;
}

/** How the projection must treat an event for the usage of its account. */
export type UsageStep =
  | { readonly kind: 'placed'; readonly accountId: string; readonly requestId: string; readonly facts: ReservationFacts }
  /** a reservation ended; `facts` null when they come from its placement */
  | {
      readonly kind: 'ended';
      readonly accountId: string;
      readonly requestId: string;
      readonly facts: ReservationFacts | null;
      usage(facts: ReservationFacts): UsageRow;
    }
  /** the request log's entry for a request: its latency (the wallet events carry none) */
  | { readonly kind: 'observed'; readonly row: UsageRow };

export function utcDay(instant: string): string {
  return new Date(toEpochMs(instant)).toISOString().slice(0, 10);
}

export function usageStep(streamId: string, event: DomainEvent): UsageStep | null {
  if (event.type === 'RequestLogged') {
    const d = event.data;
    return {
      kind: 'observed',
      row: {
        accountId: d.accountId,
        keyId: d.keyId,
        model: d.model,
        operation: d.operation,
        day: utcDay(event.metadata.occurredAt),
        requests: 0n,
        inputTokens: 0n,
        outputTokens: 0n,
        audioMilliseconds: 0n,
        inputCharacters: 0n,
        cost: 0n,
        errors: 0n,
        latencyMsSum: BigInt(d.latencyMs ?? 0),
        latencyCount: d.latencyMs === null ? 0n : 1n,
      },
    };
  }
  const accountId = accountIdOfStream(streamId);
  if (accountId === null) return null;
  const day = utcDay(event.metadata.occurredAt);
  const row = (facts: ReservationFacts, values: Partial<UsageRow>): UsageRow => ({
    accountId,
    keyId: facts.keyId,
    model: facts.model,
    operation: facts.operation,
    day,
    requests: 1n,
    inputTokens: 0n,
    outputTokens: 0n,
    audioMilliseconds: 0n,
    inputCharacters: 0n,
    cost: 0n,
    errors: 0n,
    latencyMsSum: 0n,
    latencyCount: 0n,
    ...values,
  });
  switch (event.type) {
    case 'ReservationPlaced': {
      const { requestId, keyId, model, operation } = event.data;
      return { kind: 'placed', accountId, requestId, facts: { keyId, model, operation } };
    }
    case 'ReservationSettled': {
      const d = event.data;
      const facts = { keyId: d.keyId, model: d.model, operation: d.operation };
      return {
        kind: 'ended',
        accountId,
        requestId: d.requestId,
        facts,
        usage: (f) =>
          row(f, {
            inputTokens: d.usage.inputTokens,
            outputTokens: d.usage.outputTokens,
            audioMilliseconds: d.usage.audioMilliseconds ?? 0n,
            inputCharacters: d.usage.inputCharacters ?? 0n,
            cost: d.actualCost,
            errors: d.outcome === 'completed' ? 0n : 1n,
          }),
      };
    }
    case 'ReservationReleased': {
      const d = event.data;
      return {
        kind: 'ended',
        accountId,
        requestId: d.requestId,
        facts: null,
        usage: (f) => row(f, { errors: 1n }),
      };
    }
    case 'ReservationExpired':
      return { kind: 'ended', accountId, requestId: event.data.requestId, facts: null, usage: (f) => row(f, { errors: 1n }) };
    default:
      return null;
  }
}

export function usageKeyOf(row: Pick<UsageRow, 'accountId' | 'keyId' | 'model' | 'operation' | 'day'>): string {
  return [row.accountId, row.keyId, row.model, row.operation, row.day].join('\u0000');
}

export function addUsage(a: UsageRow | undefined, b: UsageRow): UsageRow {
  if (!a) return b;
  return {
    ...a,
    requests: a.requests + b.requests,
    inputTokens: a.inputTokens + b.inputTokens,
    outputTokens: a.outputTokens + b.outputTokens,
    audioMilliseconds: a.audioMilliseconds + b.audioMilliseconds,
    inputCharacters: a.inputCharacters + b.inputCharacters,
    cost: a.cost + b.cost,
    errors: a.errors + b.errors,
    latencyMsSum: a.latencyMsSum + b.latencyMsSum,
    latencyCount: a.latencyCount + b.latencyCount,
  };
}

/**
 * The whole reducer over a sequence of events (the SQL side does the same per batch, keeping open
 * reservations' facts in a table): usage rows by key.
 */
export function foldUsage(
  events: readonly { streamId: string; event: DomainEvent }[],
  open: Map<string, ReservationFacts> = new Map(),
  rows: Map<string, UsageRow> = new Map(),
): Map<string, UsageRow> {
  for (const { streamId, event } of events) {
    const step = usageStep(streamId, event);
    if (!step) continue;
    if (step.kind === 'observed') {
      rows.set(usageKeyOf(step.row), addUsage(rows.get(usageKeyOf(step.row)), step.row));
      continue;
    }
    const key = `${step.accountId}\u0000${step.requestId}`;
    if (step.kind === 'placed') {
      open.set(key, step.facts);
      continue;
    }
    const facts = step.facts ?? open.get(key) ?? UNKNOWN_RESERVATION;
    open.delete(key);
    const usage = step.usage(facts);
    const k = usageKeyOf(usage);
    rows.set(k, addUsage(rows.get(k), usage));
  }
  return rows;
}
