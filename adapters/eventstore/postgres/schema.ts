import type { Migration } from '../../postgres/migrate';

/** The NOTIFY channel appends signal on; subscriptions LISTEN on it. */
export const EVENTS_CHANNEL = 'tollgate_events';

/**
 * The whole store, message-db style: one append-only `events` table, one `streams` row per
 * stream (its lock serializes appends to that stream), and one write function so an append
 * of any batch is a single round trip.
 */
const sql = /* sql */ `
-- Stream ids compare bytewise (COLLATE "C"): no locale rules on the hottest index keys.
CREATE TABLE streams (
  stream_id text COLLATE "C" PRIMARY KEY,
  -- revision of the last event; -1 only inside an append that creates the stream
  revision bigint NOT NULL
) WITH (fillfactor = 70); -- room on each page so revision updates stay HOT (no index write)

CREATE TABLE events (
  event_id uuid PRIMARY KEY,
  stream_id text COLLATE "C" NOT NULL,
  stream_revision bigint NOT NULL,
  transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  global_seq bigserial NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (stream_id, stream_revision)
);

-- Global order: a reader walks (transaction_id, global_seq) below the xmin horizon (Emmett's method).
CREATE INDEX events_global_order ON events (transaction_id, global_seq);

-- Append-only means append-only: history is corrected by new events, never rewritten.
CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'events are append-only: % refused', TG_OP;
END $fn$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

-- Where a subscriber records how far it got, in the same transaction as its work.
-- numeric(20,0) holds any unsigned 64-bit position (xid8 here, commit positions in KurrentDB).
CREATE TABLE checkpoints (
  name text PRIMARY KEY,
  tx numeric(20,0) NOT NULL,
  seq numeric(20,0) NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Appends a batch of requests, each checked on its own against its stream's expected version.
-- One row per request: outcome 'written' | 'already_written' | 'conflict' | 'empty'.
-- A request whose event ids are partly stored raises SQLSTATE TGD01 (the whole batch rolls back).
CREATE FUNCTION append_to_streams(
  stream_ids text[],     -- per request
  expected text[],       -- per request: a revision, 'no_stream', 'stream_exists' or 'any'
  event_counts int[],    -- per request
  event_requests int[],  -- per event: the 1-based request it belongs to
  event_ids uuid[],      -- per event, requests' events concatenated in request order
  types text[],
  data jsonb[],
  metadata jsonb[],
  notify boolean
) RETURNS TABLE (o_request int, o_outcome text, o_revision bigint, o_tx text, o_seq bigint, o_detail text)
LANGUAGE plpgsql AS $fn$
DECLARE
  n int := coalesce(cardinality(stream_ids), 0);
  locked text[];          -- distinct streams in lock order (sorted, so batches never deadlock)
  revs bigint[] := '{}';  -- their revisions as this batch advances them; -1 = no stream
  created boolean := false;
  rev bigint;
  s text;
  i int;
  k int;
  slot int;
  first_event int := 1;
  ok boolean;
  any_stored boolean;
  written_requests int[] := '{}';
  written_last_revs bigint[] := '{}';
  base bigint[] := array_fill(NULL::bigint, ARRAY[n]);
  first_events int[] := array_fill(NULL::int, ARRAY[n]);
  stored_total bigint;
  stored_here bigint;
  dup uuid;
BEGIN
  SELECT array_agg(x ORDER BY x) INTO locked FROM (SELECT DISTINCT unnest(stream_ids) AS x) d;
  FOREACH s IN ARRAY coalesce(locked, '{}') LOOP
    SELECT st.revision INTO rev FROM streams st WHERE st.stream_id = s FOR UPDATE;
    IF NOT FOUND THEN
      INSERT INTO streams (stream_id, revision) VALUES (s, -1) ON CONFLICT DO NOTHING RETURNING revision INTO rev;
      IF FOUND THEN
        created := true;
      ELSE
        -- another transaction created it while we looked; we waited for it, so lock what it made
        SELECT st.revision INTO rev FROM streams st WHERE st.stream_id = s FOR UPDATE;
      END IF;
    END IF;
    revs := revs || rev;
  END LOOP;

  -- Exact retries and partial duplicates are rare: one probe for the batch, per request only if needed.
  any_stored := EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY (event_ids));

  FOR i IN 1 .. n LOOP
    k := event_counts[i];
    slot := array_position(locked, stream_ids[i]);
    rev := revs[slot];
    first_events[i] := first_event;
    IF any_stored AND k > 0 THEN
      SELECT count(*), count(*) FILTER (WHERE e.stream_id = stream_ids[i])
        INTO stored_total, stored_here
        FROM events e WHERE e.event_id = ANY (event_ids[first_event : first_event + k - 1]);
      IF stored_total > 0 THEN
        IF stored_here = k THEN
          -- an exact retry: report what the first attempt stored
          SELECT i, 'already_written', e.stream_revision, e.transaction_id::text, e.global_seq, NULL
            INTO o_request, o_outcome, o_revision, o_tx, o_seq, o_detail
            FROM events e
            WHERE e.event_id = ANY (event_ids[first_event : first_event + k - 1])
            ORDER BY e.stream_revision DESC LIMIT 1;
          RETURN NEXT;
          first_event := first_event + k;
          CONTINUE;
        END IF;
        SELECT x INTO dup FROM unnest(event_ids[first_event : first_event + k - 1]) x
          WHERE EXISTS (SELECT 1 FROM events e WHERE e.event_id = x) LIMIT 1;
        RAISE EXCEPTION 'duplicate event id' USING ERRCODE = 'TGD01', DETAIL = dup::text, HINT = stream_ids[i];
      END IF;
    END IF;
    first_event := first_event + k;

    ok := CASE expected[i]
      WHEN 'any' THEN true
      WHEN 'no_stream' THEN rev = -1
      WHEN 'stream_exists' THEN rev >= 0
      ELSE rev = expected[i]::bigint
    END;
    IF NOT ok THEN
      o_request := i; o_outcome := 'conflict'; o_revision := rev; o_tx := NULL; o_seq := NULL; o_detail := NULL;
      RETURN NEXT;
    ELSIF k = 0 THEN
      o_request := i; o_outcome := 'empty'; o_revision := rev; o_tx := NULL; o_seq := NULL; o_detail := NULL;
      RETURN NEXT;
    ELSE
      base[i] := rev;
      revs[slot] := rev + k;
      written_requests := written_requests || i;
      written_last_revs := written_last_revs || (rev + k);
    END IF;
  END LOOP;

  IF cardinality(written_requests) > 0 THEN
    UPDATE streams st SET revision = u.rev
      FROM unnest(locked, revs) AS u(id, rev)
      WHERE st.stream_id = u.id AND st.revision <> u.rev;

    RETURN QUERY
      WITH inserted AS (
        INSERT INTO events (event_id, stream_id, stream_revision, type, data, metadata)
        SELECT ev.id, stream_ids[ev.req], base[ev.req] + 1 + (ev.ord - first_events[ev.req]), ev.type, ev.data, ev.metadata
          FROM unnest(event_requests, event_ids, types, data, metadata) WITH ORDINALITY AS ev(req, id, type, data, metadata, ord)
          WHERE base[ev.req] IS NOT NULL
          ORDER BY ev.ord
        RETURNING events.stream_id, events.stream_revision, events.transaction_id, events.global_seq
      )
      SELECT w.req, 'written'::text, w.last_rev, ins.transaction_id::text, ins.global_seq, NULL::text
        FROM unnest(written_requests, written_last_revs) AS w(req, last_rev)
        JOIN inserted ins ON ins.stream_id = stream_ids[w.req] AND ins.stream_revision = w.last_rev;

    IF notify THEN
      PERFORM pg_notify('${EVENTS_CHANNEL}', '');
    END IF;
  END IF;

  IF created THEN
    -- streams this batch created but did not write to must not appear to exist
    DELETE FROM streams st WHERE st.stream_id = ANY (locked) AND st.revision = -1;
  END IF;
END $fn$;
`;

export const eventStoreMigration: Migration = { id: '0001_event_store', sql };

/**
 * Streams with a maximum age (KurrentDB's `$maxAge`), and the scavenge that deletes their expired
 * events. The append-only rule still holds for every other event: a row trigger lets a DELETE
 * through only inside scavenge_expired_events, and only for an event of a max-age stream recorded
 * before the scavenge's horizon. Wallet streams have no max age, so nothing can delete them.
 * The `streams` row stays: revisions never go back, so appends after a scavenge continue.
 */
const maxAgeSql = /* sql */ `
CREATE TABLE stream_max_ages (
  stream_id text COLLATE "C" PRIMARY KEY,
  max_age_seconds bigint NOT NULL CHECK (max_age_seconds > 0)
);

DROP TRIGGER events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();

CREATE FUNCTION events_delete_only_expired() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  horizon timestamptz := nullif(current_setting('tollgate.scavenge_at', true), '')::timestamptz;
BEGIN
  IF horizon IS NULL OR NOT EXISTS (
    SELECT 1 FROM stream_max_ages m
     WHERE m.stream_id = OLD.stream_id AND OLD.recorded_at < horizon - make_interval(secs => m.max_age_seconds)
  ) THEN
    RAISE EXCEPTION 'events are append-only: DELETE refused (only a scavenge deletes, and only expired events of max-age streams)';
  END IF;
  RETURN OLD;
END $fn$;
CREATE TRIGGER events_delete_only_expired BEFORE DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_delete_only_expired();

-- Deletes what expired by 'now' (the caller's clock); one row per stream that lost events.
CREATE FUNCTION scavenge_expired_events(now_at timestamptz) RETURNS TABLE (o_stream text, o_deleted bigint)
LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM set_config('tollgate.scavenge_at', now_at::text, true);
  RETURN QUERY
    WITH gone AS (
      DELETE FROM events e USING stream_max_ages m
       WHERE e.stream_id = m.stream_id AND e.recorded_at < now_at - make_interval(secs => m.max_age_seconds)
      RETURNING e.stream_id
    )
    SELECT g.stream_id::text, count(*) FROM gone g GROUP BY g.stream_id;
  PERFORM set_config('tollgate.scavenge_at', '', true);
END $fn$;
`;

export const streamMaxAgeMigration: Migration = { id: '0042_stream_max_age', sql: maxAgeSql };

/** Every migration of the event store, in order. */
export const eventStoreMigrations: readonly Migration[] = [eventStoreMigration, streamMaxAgeMigration];
