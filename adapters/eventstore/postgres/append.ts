import type { ClientBase } from 'pg';
import type { EncodedEvent, ExpectedVersion, LogPosition, StreamRevision } from '../../../src/ports/event-store';

/** Anything that runs a query: a pool, a pool client inside a transaction, a client. */
export type Queryable = Pick<ClientBase, 'query'>;

export interface EncodedAppendRequest {
  readonly streamId: string;
  readonly expectedVersion: ExpectedVersion;
  readonly events: readonly { readonly id: string; readonly encoded: EncodedEvent }[];
}

/** What the write function reports for one request, before the store maps it to the port's types. */
export type AppendOutcome =
  | { readonly outcome: 'written' | 'already_written'; readonly revision: StreamRevision; readonly position: LogPosition }
  | { readonly outcome: 'empty'; readonly revision: StreamRevision | null }
  | { readonly outcome: 'conflict'; readonly actual: StreamRevision | null };

/** Raised by the write function (SQLSTATE TGD01) when an append is neither new nor an exact retry. */
export const DUPLICATE_EVENT_ID_SQLSTATE = 'TGD01';

// A named statement is parsed and planned once per connection: the append is one round trip.
const APPEND_SQL =
  'SELECT o_request, o_outcome, o_revision, o_tx, o_seq FROM append_to_streams($1::text[], $2::text[], $3::int[], $4::int[], $5::uuid[], $6::text[], $7::jsonb[], $8::jsonb[], $9::boolean)';

interface AppendRow {
  o_request: number;
  o_outcome: 'written' | 'already_written' | 'conflict' | 'empty';
  o_revision: string | null;
  o_tx: string | null;
  o_seq: string | null;
}

// append_to_streams (migration 0001) also understands 'stream_exists' and 'any'; the port no longer
// offers them, and a shipped migration is never edited, so that SQL stays, unused.
function expectedVersionParam(expected: ExpectedVersion): string {
  if (typeof expected === 'bigint') {
    if (expected < 0n) throw new RangeError(`expected revision must be 0 or more, got ${expected}`);
    return expected.toString();
  }
  return expected;
}

/**
 * Appends through the append_to_streams function: the precise path, for every case (retries,
 * partial duplicates, several requests on one stream, empty appends). It costs about 0.6 ms of
 * plpgsql per call (measured), so appendEncoded sends the common cases as plain statements.
 * Safe inside a caller's transaction.
 */
export async function appendThroughFunction(db: Queryable, requests: readonly EncodedAppendRequest[], options: { notify: boolean }): Promise<AppendOutcome[]> {
  const streamIds: string[] = [];
  const expected: string[] = [];
  const counts: number[] = [];
  const eventRequests: number[] = [];
  const ids: string[] = [];
  const types: string[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  requests.forEach((request, index) => {
    if (request.streamId.length === 0) throw new RangeError('stream id must not be empty');
    streamIds.push(request.streamId);
    expected.push(expectedVersionParam(request.expectedVersion));
    counts.push(request.events.length);
    for (const { id, encoded } of request.events) {
      eventRequests.push(index + 1);
      ids.push(id);
      types.push(encoded.type);
      data.push(JSON.stringify(encoded.data));
      metadata.push(JSON.stringify(encoded.metadata));
    }
  });
  if (requests.length === 0) return [];

  const result = await db.query<AppendRow>({
    name: 'tollgate_append_through_function',
    text: APPEND_SQL,
    values: [streamIds, expected, counts, eventRequests, ids, types, data, metadata, options.notify],
  });

  const outcomes: (AppendOutcome | undefined)[] = new Array(requests.length);
  for (const row of result.rows) {
    const revision = row.o_revision === null ? null : BigInt(row.o_revision);
    const noStream = revision === null || revision < 0n ? null : revision;
    switch (row.o_outcome) {
      case 'written':
      case 'already_written':
        outcomes[row.o_request - 1] = {
          outcome: row.o_outcome,
          revision: revision!,
          position: { tx: BigInt(row.o_tx!), seq: BigInt(row.o_seq!) },
        };
        break;
      case 'empty':
        outcomes[row.o_request - 1] = { outcome: 'empty', revision: noStream };
        break;
      case 'conflict':
        outcomes[row.o_request - 1] = { outcome: 'conflict', actual: noStream };
        break;
    }
  }
  return outcomes.map((outcome, index) => {
    if (!outcome) throw new Error(`append_to_streams returned no outcome for request ${index + 1}`);
    return outcome;
  });
}

// Every request names an exact revision or 'no_stream', so the client knows each event's
// revision: the statement only claims streams (UPDATE ... WHERE revision = expected, or INSERT ...
// ON CONFLICT, each waiting for a concurrent writer and re-checking what it committed) and inserts.
export const KNOWN_REVISIONS_SQL = `
WITH created AS (
  INSERT INTO streams (stream_id, revision)
  SELECT * FROM unnest($1::text[], $2::bigint[])
  ON CONFLICT DO NOTHING
  RETURNING stream_id
),
checked AS (
  UPDATE streams s SET revision = c.revision
  FROM unnest($3::text[], $4::bigint[], $5::bigint[]) AS c(stream_id, expected, revision)
  WHERE s.stream_id = c.stream_id AND s.revision = c.expected
  RETURNING s.stream_id
),
inserted AS (
  INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata)
  SELECT e.id, e.stream_id, e.revision, e.type, e.data, e.metadata
  FROM unnest($6::uuid[], $7::text[], $8::bigint[], $9::text[], $10::jsonb[], $11::jsonb[])
    WITH ORDINALITY AS e(id, stream_id, revision, type, data, metadata, ord)
  WHERE e.stream_id IN (SELECT stream_id FROM created UNION ALL SELECT stream_id FROM checked)
  ORDER BY e.ord
  RETURNING events.stream_id, events.stream_revision, events.transaction_id, events.global_seq
)
SELECT stream_id, stream_revision::text AS revision, transaction_id::text AS tx, global_seq::text AS seq FROM inserted`;

// One event at a known revision: the same claim-then-insert with scalars, no arrays to unpack.
export const ONE_EVENT_EXISTING_SQL = `
WITH claimed AS (
  UPDATE streams SET revision = $3 WHERE stream_id = $1 AND revision = $2 RETURNING stream_id
)
INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata)
SELECT $4, stream_id, $3, $5, $6, $7 FROM claimed
RETURNING stream_id, stream_revision::text AS revision, transaction_id::text AS tx, global_seq::text AS seq`;

const ONE_EVENT_NEW_SQL = `
WITH claimed AS (
  INSERT INTO streams (stream_id, revision) VALUES ($1, 0) ON CONFLICT DO NOTHING RETURNING stream_id
)
INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata)
SELECT $2, stream_id, 0, $3, $4, $5 FROM claimed
RETURNING stream_id, stream_revision::text AS revision, transaction_id::text AS tx, global_seq::text AS seq`;

async function appendOneEvent(db: Queryable, request: EncodedAppendRequest): Promise<(AppendOutcome | undefined)[]> {
  const { id, encoded } = request.events[0]!;
  const data = JSON.stringify(encoded.data);
  const metadata = JSON.stringify(encoded.metadata);
  const result =
    request.expectedVersion === 'no_stream'
      ? await db.query<KnownRevisionRow>({
          name: 'tollgate_append_one_new',
          text: ONE_EVENT_NEW_SQL,
          values: [request.streamId, id, encoded.type, data, metadata],
        })
      : await db.query<KnownRevisionRow>({
          name: 'tollgate_append_one_existing',
          text: ONE_EVENT_EXISTING_SQL,
          values: [
            request.streamId,
            expectedVersionParam(request.expectedVersion),
            ((request.expectedVersion as bigint) + 1n).toString(),
            id,
            encoded.type,
            data,
            metadata,
          ],
        });
  const row = result.rows[0];
  if (!row) return [undefined];
  return [{ outcome: 'written', revision: BigInt(row.revision), position: { tx: BigInt(row.tx), seq: BigInt(row.seq) } }];
}

interface KnownRevisionRow {
  stream_id: string;
  revision: string;
  tx: string;
  seq: string;
}

async function appendKnownRevisions(db: Queryable, requests: readonly EncodedAppendRequest[]): Promise<(AppendOutcome | undefined)[]> {
  const order = requests.map((_, index) => index).sort((a, b) => compareText(requests[a]!.streamId, requests[b]!.streamId));
  const newStreams: string[] = [];
  const newRevisions: string[] = [];
  const checkedStreams: string[] = [];
  const checkedExpected: string[] = [];
  const checkedRevisions: string[] = [];
  const ids: string[] = [];
  const eventStreams: string[] = [];
  const eventRevisions: string[] = [];
  const types: string[] = [];
  const data: string[] = [];
  const metadata: string[] = [];
  const finalRevisions = new Map<string, bigint>();
  for (const index of order) {
    const request = requests[index]!;
    const before = request.expectedVersion === 'no_stream' ? -1n : (request.expectedVersion as bigint);
    const final = before + BigInt(request.events.length);
    finalRevisions.set(request.streamId, final);
    if (request.expectedVersion === 'no_stream') {
      newStreams.push(request.streamId);
      newRevisions.push(final.toString());
    } else {
      checkedStreams.push(request.streamId);
      checkedExpected.push(expectedVersionParam(request.expectedVersion));
      checkedRevisions.push(final.toString());
    }
    request.events.forEach(({ id, encoded }, offset) => {
      ids.push(id);
      eventStreams.push(request.streamId);
      eventRevisions.push((before + 1n + BigInt(offset)).toString());
      types.push(encoded.type);
      data.push(JSON.stringify(encoded.data));
      metadata.push(JSON.stringify(encoded.metadata));
    });
  }
  const result = await db.query<KnownRevisionRow>({
    name: 'tollgate_append_known_revisions',
    text: KNOWN_REVISIONS_SQL,
    values: [newStreams, newRevisions, checkedStreams, checkedExpected, checkedRevisions, ids, eventStreams, eventRevisions, types, data, metadata],
  });
  const written = new Map<string, AppendOutcome>();
  for (const row of result.rows) {
    const revision = BigInt(row.revision);
    if (revision !== finalRevisions.get(row.stream_id)) continue;
    written.set(row.stream_id, { outcome: 'written', revision, position: { tx: BigInt(row.tx), seq: BigInt(row.seq) } });
  }
  return requests.map((request) => written.get(request.streamId));
}

const UNIQUE_VIOLATION = '23505';
const DEADLOCK_DETECTED = '40P01';

function fastPathApplies(requests: readonly EncodedAppendRequest[]): boolean {
  const streams = new Set<string>();
  for (const request of requests) {
    if (request.events.length === 0 || streams.has(request.streamId)) return false;
    streams.add(request.streamId);
  }
  return true;
}

/**
 * Appends already-encoded events; outcomes come back in request order. A batch runs as one plain
 * statement (one round trip, one transaction): scalars for one event, arrays for a batch (every
 * revision is known: exact or 'no_stream'). Requests that fail the version check there, and batches a single
 * statement cannot decide (stored event ids, a deadlock between batches, one stream twice, empty
 * appends), go through append_to_streams, which tells a conflict from an exact retry from a
 * partial duplicate; such a request that turns out writable is written in that second transaction.
 * Needs autocommit (`db` a pool): the fallback re-runs a statement that failed. Inside a
 * transaction of your own, call appendThroughFunction.
 */
export async function appendEncoded(db: Queryable, requests: readonly EncodedAppendRequest[]): Promise<AppendOutcome[]> {
  if (requests.length === 0) return [];
  const options = { notify: false }; // the store notifies after commit: see PostgresEventStoreOptions.notify
  if (!fastPathApplies(requests)) return appendThroughFunction(db, requests, options);

  const oneEvent = requests.length === 1 && requests[0]!.events.length === 1;
  const outcomes = await withPreciseFallback(db, requests, options, () => (oneEvent ? appendOneEvent(db, requests[0]!) : appendKnownRevisions(db, requests)));
  const undecided = requests.flatMap((request, index) => (outcomes[index] ? [] : [{ request, index }]));
  if (undecided.length > 0) {
    // A failed version check may still be an exact retry of an earlier append: ask precisely.
    const decided = await appendThroughFunction(
      db,
      undecided.map((u) => u.request),
      options,
    );
    for (const [i, { index }] of undecided.entries()) outcomes[index] = decided[i];
  }
  return outcomes as AppendOutcome[];
}

/** Runs a single-statement append; when it fails as a whole (nothing stored), the precise path decides. */
async function withPreciseFallback(
  db: Queryable,
  requests: readonly EncodedAppendRequest[],
  options: { notify: boolean },
  attempt: () => Promise<(AppendOutcome | undefined)[]>,
): Promise<(AppendOutcome | undefined)[]> {
  try {
    return await attempt();
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === UNIQUE_VIOLATION || code === DEADLOCK_DETECTED) return appendThroughFunction(db, requests, options);
    throw error;
  }
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
