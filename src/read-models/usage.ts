import type { PoolClient } from 'pg';
import type { DomainEvent } from '../../domain/events';
import { addUsage, UNKNOWN_RESERVATION, usageKeyOf, usageStep, type ReservationFacts, type UsageRow, type UsageStep } from '../../projections/usage/usage';
import type { RecordedEvent } from '../ports/event-store';
import type { SqlProjection } from './runner';

const openKey = (accountId: string, requestId: string) => `${accountId}\u0000${requestId}`;

/**
 * Usage in PostgreSQL. Per batch: one DELETE … RETURNING takes the facts of reservations placed in
 * earlier batches that end in this one, one INSERT keeps those still open, one upsert adds usage.
 */
export const usageProjection: SqlProjection<DomainEvent> = {
  name: 'usage',
  async apply(db: PoolClient, events: readonly RecordedEvent<DomainEvent>[]) {
    // Pass 1, in log order: which ends find their placement in this batch, which need the table.
    const open = new Map<string, { accountId: string; requestId: string; facts: ReservationFacts }>();
    const ends: { step: Extract<UsageStep, { kind: 'ended' }>; facts: ReservationFacts | null; key: string }[] = [];
    const fromTable = new Map<string, { accountId: string; requestId: string }>();
    const observed: UsageRow[] = [];
    for (const recorded of events) {
      const step = usageStep(recorded.streamId, recorded.event);
      if (!step) continue;
      if (step.kind === 'observed') {
        observed.push(step.row);
        continue;
      }
      const key = openKey(step.accountId, step.requestId);
      if (step.kind === 'placed') {
        open.set(key, { accountId: step.accountId, requestId: step.requestId, facts: step.facts });
        continue;
      }
      const inBatch = open.get(key);
      if (inBatch) open.delete(key);
      else fromTable.set(key, { accountId: step.accountId, requestId: step.requestId });
      ends.push({ step, facts: step.facts ?? inBatch?.facts ?? null, key });
    }

    const stored = new Map<string, ReservationFacts>();
    if (fromTable.size > 0) {
      const gone = [...fromTable.values()];
      // Left unnamed on purpose: this statement reads a table whose size its plan depends on. A named
      // statement may switch to a generic plan built once per connection (a seq scan + hash join when the
      // table was empty: bench/plan-cache.ts); unnamed, it is planned per call with the table's size.
      const { rows } = await db.query<{ account_id: string; request_id: string; key_id: string; model: string; operation: string }>(
        `DELETE FROM usage_open_reservations o USING unnest($1::text[], $2::text[]) AS d(account_id, request_id)
          WHERE o.account_id = d.account_id AND o.request_id = d.request_id
          RETURNING o.account_id, o.request_id, o.key_id, o.model, o.operation`,
        [gone.map((g) => g.accountId), gone.map((g) => g.requestId)],
      );
      for (const r of rows) stored.set(openKey(r.account_id, r.request_id), { keyId: r.key_id, model: r.model, operation: r.operation });
    }
    if (open.size > 0) {
      const still = [...open.values()];
      await db.query({
        name: 'tollgate_usage_reservations_open',
        text: `INSERT INTO usage_open_reservations (account_id, request_id, key_id, model, operation)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
         ON CONFLICT (account_id, request_id) DO UPDATE SET key_id = excluded.key_id, model = excluded.model, operation = excluded.operation`,
        values: [
          still.map((o) => o.accountId),
          still.map((o) => o.requestId),
          still.map((o) => o.facts.keyId),
          still.map((o) => o.facts.model),
          still.map((o) => o.facts.operation),
        ],
      });
    }

    // Pass 2: usage rows, summed per (account, key, model, operation, day).
    const sums = new Map<string, UsageRow>();
    for (const end of ends) {
      const usage = end.step.usage(end.facts ?? stored.get(end.key) ?? UNKNOWN_RESERVATION);
      const k = usageKeyOf(usage);
      sums.set(k, addUsage(sums.get(k), usage));
    }
    for (const row of observed) sums.set(usageKeyOf(row), addUsage(sums.get(usageKeyOf(row)), row));
    if (sums.size === 0) return;
    const rows = [...sums.values()];
    const big = (pick: (r: UsageRow) => bigint) => rows.map((r) => pick(r).toString());
    await db.query({
      name: 'tollgate_usage_daily',
      text: `INSERT INTO usage_daily (account_id, key_id, model, operation, day, requests, input_tokens, output_tokens, cost, errors, latency_ms_sum, latency_count,
                               audio_ms, input_characters)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::date[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                            $13::bigint[], $14::bigint[])
       ON CONFLICT (account_id, day, key_id, model, operation) DO UPDATE SET
         requests = usage_daily.requests + excluded.requests,
         input_tokens = usage_daily.input_tokens + excluded.input_tokens,
         output_tokens = usage_daily.output_tokens + excluded.output_tokens,
         cost = usage_daily.cost + excluded.cost,
         errors = usage_daily.errors + excluded.errors,
         latency_ms_sum = usage_daily.latency_ms_sum + excluded.latency_ms_sum,
         latency_count = usage_daily.latency_count + excluded.latency_count,
         audio_ms = usage_daily.audio_ms + excluded.audio_ms,
         input_characters = usage_daily.input_characters + excluded.input_characters`,
      values: [
        rows.map((r) => r.accountId),
        rows.map((r) => r.keyId),
        rows.map((r) => r.model),
        rows.map((r) => r.operation),
        rows.map((r) => r.day),
        big((r) => r.requests),
        big((r) => r.inputTokens),
        big((r) => r.outputTokens),
        big((r) => r.cost),
        big((r) => r.errors),
        big((r) => r.latencyMsSum),
        big((r) => r.latencyCount),
        big((r) => r.audioMilliseconds),
        big((r) => r.inputCharacters),
      ],
    });
  },
  async reset(db: PoolClient) {
    await db.query('TRUNCATE usage_daily, usage_open_reservations');
  },
};
