import { randomBytes } from 'node:crypto';
import type { DatabaseError, Notification, Pool, PoolClient } from 'pg';
import { concat, defer, filter, map, Observable, of, share } from 'rxjs';
import { z } from 'zod';
import {
  comparePositions,
  DuplicateEventIdError,
  EventDecodeError,
  START,
  VersionConflictError,
  type AppendRequest,
  type AppendResult,
  type EventCodec,
  type EventStore,
  type ExpectedVersion,
  type GlobalLogBlocker,
  type GlobalLogLag,
  type StreamAnnouncement,
  type Json,
  type LogPosition,
  type NewEvent,
  type ReadStreamResult,
  type RecordedEvent,
  type ScavengeResult,
  type StreamRevision,
} from '../../../src/ports/event-store';
import { appendEncoded, appendThroughFunction, DUPLICATE_EVENT_ID_SQLSTATE, type AppendOutcome, type EncodedAppendRequest } from './append';
import { EVENTS_CHANNEL } from './schema';

export interface PostgresEventStoreOptions {
  /** Events per readAll page while a subscription catches up. */
  readonly pageSize?: number;
  /**
   * How often a live subscription re-reads without a notification. Needed because the xmin
   * horizon can be held back by a transaction that never notifies (any writer in the cluster).
   */
  readonly pollIntervalMs?: number;
  /**
   * A subscription that polls and finds nothing, with no notification, doubles its interval up
   * to this (default 2 s): an idle gateway's subscriptions cost a read every few seconds, not
   * four a second each. A notification, or a read that finds events, resets it to
   * `pollIntervalMs`; notifications wake a subscriber at once whatever the interval.
   */
  readonly idlePollMaxMs?: number;
  /**
   * Least time between a subscription's reads that follow notifications (default 25 ms, the
   * spacing of one process's own NOTIFYs): with several instances writing, each subscriber reads
   * at most this often however many notify. Catching up (full pages) is not spaced.
   */
  readonly notifiedReadSpacingMs?: number;
  /**
   * Wake the live subscriptions of other processes after appends with a NOTIFY: the first append
   * after a quiet spell at once, then at most one more per `notifySpacingMs` for all the appends
   * in between (their subscribers space their notified reads at `notifiedReadSpacingMs` anyway).
   * It is sent after the append commits, never inside it: a NOTIFY in the transaction holds
   * PostgreSQL's global notify lock through the commit's WAL flush, which serialized concurrent
   * appends (bench: 100 concurrent streams fell from ~1,140 to ~170 appends/s). This store's own
   * subscriptions need none: they are woken in the process when its append commits, and ignore
   * its own NOTIFYs. False: no NOTIFY (other processes find the appends at their next poll).
   */
  readonly notify?: boolean;
  /** Least time between two of this store's wake-up NOTIFYs (default 25 ms); a clean close sends the one still due. */
  readonly notifySpacingMs?: number;
  /**
   * Event types (as encoded) whose appends are announced to every process at once, whatever
   * holds the global log back: key revocations, account suspensions. An append holding one runs
   * in a transaction of its own that also sends a NOTIFY naming the stream and its revision, so
   * the announcement is delivered exactly when the events commit. These appends are rare; the
   * hot path (reservations, settlements) is untouched. See EventStore.streamAnnouncements.
   */
  readonly announcedTypes?: readonly string[];
}

/** On PostgreSQL nothing expires by itself: the scavenge is always there. */
export type PostgresEventStore<E> = EventStore<E> & { scavenge(now: Date): Promise<ScavengeResult> };

/** How soon a subscriber looks again for an event hidden below the horizon. */
const HIDDEN_RETRY_MS = 20;

interface EventRow {
  event_id: string;
  stream_id: string;
  stream_revision: string;
  tx: string;
  global_seq: string;
  type: string;
  data: Json;
  metadata: Json;
  recorded_at: Date;
}

const EVENT_COLUMNS = 'e.event_id, e.stream_id, e.stream_revision, e.transaction_id::text AS tx, e.global_seq, e.type, e.data, e.metadata, e.recorded_at';

// Only events below the oldest running transaction's id: a slower transaction holding a lower id
// may still commit, and a reader that passed it would never see its events.
const READ_ALL_SQL = `SELECT ${EVENT_COLUMNS} FROM events e
  WHERE (e.transaction_id, e.global_seq) > ($1::text::xid8, $2::bigint)
    AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
  ORDER BY e.transaction_id, e.global_seq
  LIMIT $3`;

// A live subscriber's read: READ_ALL_SQL's page, plus the newest committed event in the same
// snapshot (visible or not) on every row, so one statement tells whether events are hidden
// behind the horizon. One row with null event columns when the page is empty; none when the log is.
export const TAIL_SQL = `SELECT l.latest_tx, l.latest_seq, e.event_id, e.stream_id, e.stream_revision, e.tx, e.global_seq, e.type, e.data, e.metadata, e.recorded_at
  FROM (SELECT transaction_id::text AS latest_tx, global_seq::text AS latest_seq FROM events
        ORDER BY transaction_id DESC, global_seq DESC LIMIT 1) l
  LEFT JOIN LATERAL (
    SELECT e.transaction_id AS tx_order, ${EVENT_COLUMNS} FROM events e
    WHERE (e.transaction_id, e.global_seq) > ($1::text::xid8, $2::bigint)
      AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY e.transaction_id, e.global_seq
    LIMIT $3
  ) e ON true
  ORDER BY e.tx_order, e.global_seq`;

const READ_STREAM_SQL = `SELECT s.revision AS head, ${EVENT_COLUMNS} FROM streams s
  LEFT JOIN LATERAL (
    SELECT * FROM events x WHERE x.stream_id = s.stream_id AND x.stream_revision >= $2
    ORDER BY x.stream_revision LIMIT $3
  ) e ON true
  WHERE s.stream_id = $1`;

/**
 * Only the fallback. Measured by bench/event-store.ts (append start to delivery, median):
 * NOTIFY 3.5 ms, polling alone 225 ms at this interval. So NOTIFY wakes, the poll only rescues.
 */
const DEFAULT_POLL_INTERVAL_MS = 250;
/** How far the fallback poll backs off while nothing happens (bench/idle.ts). */
const DEFAULT_IDLE_POLL_MAX_MS = 2_000;

// Under load one NOTIFY per 25 ms covers every append in between; it adds at most 25 ms of latency
// (the first append after a quiet spell notifies at once). Each NOTIFY wakes every subscriber of
// every process for a read of the log, so under load fewer wake-ups are worth a little latency.
const NOTIFY_SPACING_MS = 25;

// Asynchronous commit: a notification needs no durability, so its transaction need not wait for a flush.
// The payload names the store that sent it (a random id), so that its own LISTEN ignores it: its
// own subscribers were woken in the process. Other processes take any payload that is not an
// announcement as a plain wake-up.
const wakeSql = (payload: string) => `BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('${EVENTS_CHANNEL}', '${payload}'); COMMIT`;
const DEFAULT_PAGE_SIZE = 1_000;

// A notification payload that names a stream (announced appends; plain wake-ups carry none).
const announcementSchema = z.object({ stream: z.string().min(1), revision: z.string().regex(/^\d+$/) });
const ANNOUNCE_SQL = `SELECT pg_notify('${EVENTS_CHANNEL}', payload) FROM unnest($1::text[]) AS payload`;

/** Hidden events are counted up to this many: enough to tell "a few" from "a flood", cheap to count. */
const HIDDEN_EVENTS_CAP = 100_000;

// Committed events global-log readers cannot read yet: those at or above the horizon. The first
// in log order is the oldest transaction's: its age is how long readers have been held back.
const LAG_SQL = `WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
  SELECT
    (SELECT count(*) FROM (SELECT 1 FROM events e, horizon h WHERE e.transaction_id >= h.xmin LIMIT ${HIDDEN_EVENTS_CAP}) hidden)::int AS hidden,
    (SELECT extract(epoch FROM clock_timestamp() - e.recorded_at)::float8 FROM events e, horizon h
      WHERE e.transaction_id >= h.xmin ORDER BY e.transaction_id, e.global_seq LIMIT 1) AS seconds`;

// The transaction with the oldest transaction id holds the horizon: a session's, or a prepared one.
// Never the query text: it may hold customer data. Sessions of other roles show their details only
// to a role with pg_read_all_stats (pg_monitor); otherwise those columns are null.
const BLOCKER_SQL = `SELECT * FROM (
    SELECT pid, datname AS database, application_name, state, age(backend_xid) AS xid_age,
      extract(epoch FROM clock_timestamp() - xact_start)::float8 AS transaction_age_s, NULL::text AS prepared
    FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    UNION ALL
    SELECT NULL, database, NULL, 'prepared', age(transaction),
      extract(epoch FROM clock_timestamp() - prepared)::float8, gid
    FROM pg_prepared_xacts
  ) b ORDER BY xid_age DESC LIMIT 1`;
/** Decoded events kept for the next subscriber: a few pages' worth. */
const DECODED_CACHE_SIZE = 4_096;
/**
 * How long a finished tail read still serves another live subscriber at the same position (one
 * whose timer fired a moment after the first's): it then reads nothing twice and stays in step.
 */
const TAIL_SHARE_MS = 10;
/** Tail reads remembered at most (in flight, or finished within TAIL_SHARE_MS), one per position. */
const TAIL_READS_KEPT = 16;

interface TailPage {
  readonly rows: EventRow[];
  /** the newest committed event in the read's snapshot, visible or hidden behind the horizon */
  readonly latest: LogPosition;
}

/** One read of the log after a position, shared by every live subscriber of the store there. */
interface TailRead {
  /** increasing in the order reads are sent */
  readonly id: number;
  /** notifications the store had heard when the read was sent: a later one may not be in it */
  readonly heardBefore: number;
  readonly sentAt: number;
  readonly page: Promise<TailPage>;
  /** performance.now() when it finished, undefined while in flight */
  finishedAt?: number;
}

export function createPostgresEventStore<E>(pool: Pool, codec: EventCodec<E>, options: PostgresEventStoreOptions = {}): PostgresEventStore<E> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const pollIntervalMs = options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS;
  const idlePollMaxMs = options.idlePollMaxMs ?? DEFAULT_IDLE_POLL_MAX_MS;
  const notifiedReadSpacingMs = options.notifiedReadSpacingMs ?? NOTIFY_SPACING_MS;
  const notify = options.notify ?? true;
  const announcedTypes = new Set(options.announcedTypes ?? []);
  const activeSubscriptions = new Set<() => void>();
  /** Notifications heard on this store's LISTEN connection (and LISTEN coming into force). */
  let heard = 0;

  // Wake-ups for other processes: the first append after a quiet spell notifies at once; appends
  // while a NOTIFY is in flight or within notifySpacingMs of the last one share one trailing
  // NOTIFY at the end of that window. Never two in flight.
  const notifySpacingMs = options.notifySpacingMs ?? NOTIFY_SPACING_MS;
  const ownWake = `wake:${randomBytes(8).toString('hex')}`;
  const NOTIFY_SQL = wakeSql(ownWake);
  let announcing: Promise<void> | undefined;
  let spacing: NodeJS.Timeout | undefined;
  let trailing = false;
  function announceAppend(): void {
    if (!notify) return;
    if (announcing || spacing) {
      trailing = true;
      return;
    }
    sendWake();
  }
  function sendWake(): void {
    trailing = false;
    announcing = pool
      .query(NOTIFY_SQL)
      .then(
        () => undefined,
        // A lost notification only delays other processes' subscribers until their next poll.
        () => undefined,
      )
      .finally(() => {
        announcing = undefined;
        if (trailing && !spacing) sendWake();
      });
    spacing = setTimeout(() => {
      spacing = undefined;
      if (trailing && !announcing) sendWake();
    }, notifySpacingMs);
  }

  // This process's own live subscribers are woken when its append commits: no round trip
  // through PostgreSQL's notifications for what the process itself wrote.
  const ownWakers = new Set<() => void>();
  function wakeOwnSubscribers(): void {
    heard += 1;
    for (const wakeOne of ownWakers) wakeOne();
  }

  // Every live subscriber of a process (the live log, the projections) reads the same fresh
  // events moments apart: each is decoded once. Stored events never change, so an event id
  // always decodes to the same value.
  const recentlyDecoded = new Map<string, E>();
  function rememberDecoded(id: string, event: E): void {
    recentlyDecoded.set(id, event);
    if (recentlyDecoded.size > DECODED_CACHE_SIZE) recentlyDecoded.delete(recentlyDecoded.keys().next().value!);
  }
  function decodeRow(row: EventRow): RecordedEvent<E> {
    const revision = BigInt(row.stream_revision);
    const position: LogPosition = { tx: BigInt(row.tx), seq: BigInt(row.global_seq) };
    let event = recentlyDecoded.get(row.event_id);
    if (event === undefined) {
      try {
        event = codec.decode({ type: row.type, data: row.data, metadata: row.metadata });
      } catch (cause) {
        throw new EventDecodeError(row.stream_id, revision, position, row.type, cause);
      }
      rememberDecoded(row.event_id, event);
    }
    return { id: row.event_id, streamId: row.stream_id, revision, position, type: row.type, event, recordedAt: row.recorded_at };
  }

  /** The newest committed event, visible to readers or not yet (an older transaction is open). */
  async function latestCommitted(): Promise<LogPosition> {
    const result = await pool.query<{ tx: string; global_seq: string }>(
      'SELECT transaction_id::text AS tx, global_seq FROM events ORDER BY transaction_id DESC, global_seq DESC LIMIT 1',
    );
    const row = result.rows[0];
    return row ? { tx: BigInt(row.tx), seq: BigInt(row.global_seq) } : START;
  }

  async function readAllRows(from: LogPosition, maxCount: number | null): Promise<EventRow[]> {
    const result = await pool.query<EventRow>({
      name: 'tollgate_read_all',
      text: READ_ALL_SQL,
      values: [from.tx.toString(), from.seq.toString(), maxCount],
    });
    return result.rows;
  }

  // Every live subscriber of a process (the live log, the projections) follows the tail of the log,
  // mostly at the same position: one read serves all of them there. A subscriber takes only a
  // read sent after its previous one (never an older answer than it already had), and one still in
  // flight or just finished; a notification heard after the read was sent makes it read again.
  let tailReadsSent = 0;
  const tailReads = new Map<string, TailRead>();
  const tailKey = (position: LogPosition) => `${position.tx}:${position.seq}`;

  function shareableTailRead(position: LogPosition, after: number): TailRead | undefined {
    const read = tailReads.get(tailKey(position));
    if (!read || read.id <= after) return undefined;
    return read.finishedAt === undefined || performance.now() - read.finishedAt <= TAIL_SHARE_MS ? read : undefined;
  }

  function tailRead(position: LogPosition, after: number): TailRead {
    const shared = shareableTailRead(position, after);
    if (shared) return shared;
    const key = tailKey(position);
    const page = pool
      .query<EventRow & { latest_tx: string; latest_seq: string }>({
        name: 'tollgate_read_tail',
        text: TAIL_SQL,
        values: [position.tx.toString(), position.seq.toString(), pageSize],
      })
      .then(({ rows }): TailPage => {
        const first = rows[0];
        if (!first) return { rows: [], latest: START };
        const latest = { tx: BigInt(first.latest_tx), seq: BigInt(first.latest_seq) };
        return { rows: first.event_id === null ? [] : rows, latest };
      });
    const read: TailRead = { id: ++tailReadsSent, heardBefore: heard, sentAt: performance.now(), page };
    page.then(
      () => {
        read.finishedAt = performance.now();
      },
      // Each subscriber that took the read sees the failure; none other is given it.
      () => {
        if (tailReads.get(key) === read) tailReads.delete(key);
      },
    );
    // Finished reads no subscriber can take any more are let go (catching up, pages are large).
    const now = performance.now();
    for (const [k, r] of tailReads) if (r.finishedAt !== undefined && now - r.finishedAt > TAIL_SHARE_MS) tailReads.delete(k);
    tailReads.delete(key);
    tailReads.set(key, read);
    if (tailReads.size > TAIL_READS_KEPT) tailReads.delete(tailReads.keys().next().value!);
    return read;
  }

  async function append(requests: readonly AppendRequest<E>[]): Promise<AppendOutcome[]> {
    const encoded: EncodedAppendRequest[] = requests.map((request) => ({
      streamId: request.streamId,
      expectedVersion: request.expectedVersion,
      events: request.events.map((e) => ({ id: e.id, encoded: codec.encode(e.event) })),
    }));
    const outcomes = await appendAllowingOneRace(encoded);
    // This process's own subscribers read these events back moments later: they are decoded
    // already (they are the values that were encoded), so the subscribers skip the decoding.
    outcomes.forEach((outcome, index) => {
      if (outcome.outcome === 'written') for (const e of requests[index]!.events) rememberDecoded(e.id, e.event);
    });
    if (outcomes.some((o) => o.outcome === 'written')) {
      wakeOwnSubscribers();
      announceAppend();
    }
    return outcomes;
  }

  const isAnnounced = (request: EncodedAppendRequest) => request.events.some((e) => announcedTypes.has(e.encoded.type));

  /**
   * The append and its announcement in one transaction: PostgreSQL delivers a NOTIFY when (and
   * only if) its transaction commits, so no process hears of events that did not commit, and
   * none misses events that did because this process died between commit and notify.
   */
  async function appendAnnouncing(encoded: EncodedAppendRequest[]): Promise<AppendOutcome[]> {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      const outcomes = await appendThroughFunction(client, encoded, { notify: false });
      const payloads = encoded.flatMap((request, index) => {
        const outcome = outcomes[index]!;
        return outcome.outcome === 'written' && isAnnounced(request)
          ? [JSON.stringify({ stream: request.streamId, revision: outcome.revision.toString() })]
          : [];
      });
      if (payloads.length > 0) await client.query(ANNOUNCE_SQL, [payloads]);
      await client.query('COMMIT');
      client.release();
      return outcomes;
    } catch (error) {
      // A connection that cannot even roll back is not given back to the pool.
      const rolledBack = await client.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      client.release(!rolledBack);
      throw error;
    }
  }

  async function appendAllowingOneRace(encoded: EncodedAppendRequest[], raced = false): Promise<AppendOutcome[]> {
    try {
      if (announcedTypes.size > 0 && encoded.some(isAnnounced)) return await appendAnnouncing(encoded);
      return await appendEncoded(pool, encoded);
    } catch (error) {
      const pgError = error as DatabaseError;
      if (pgError.code === DUPLICATE_EVENT_ID_SQLSTATE) {
        throw new DuplicateEventIdError(pgError.hint ?? '?', pgError.detail ?? '?');
      }
      // The same ids raced in from a concurrent append (usually a retry of this one). It has
      // committed by now, so a second attempt sees its events and reports them precisely.
      if (!raced && pgError.code === '23505' && pgError.constraint === 'events_pkey') {
        return appendAllowingOneRace(encoded, true);
      }
      throw error;
    }
  }

  function toResult(request: AppendRequest<E>, outcome: AppendOutcome): AppendResult | VersionConflictError {
    switch (outcome.outcome) {
      case 'written':
      case 'already_written':
        return { nextExpectedVersion: outcome.revision, lastPosition: outcome.position, written: outcome.outcome === 'written' };
      case 'empty':
        // An empty append only checks the version; -1 says the stream still does not exist.
        return { nextExpectedVersion: outcome.revision ?? -1n, lastPosition: START, written: false };
      case 'conflict':
        return new VersionConflictError(request.streamId, request.expectedVersion, outcome.actual);
    }
  }

  // One LISTEN connection shared by every live subscription of this store, released by the last.
  // It emits each notification's payload, and null once LISTEN is in force (from then on nothing
  // is missed; a subscriber that wakes on it merely reads once more).
  let listeningNow = false;
  const notifications$ = new Observable<string | null>((subscriber) => {
    let client: PoolClient | undefined;
    let ended = false;
    const onNotification = (message: Notification) => {
      // Our own wake-up: our subscribers were woken when the append committed.
      if (message.payload === ownWake) return;
      heard += 1;
      subscriber.next(message.payload ?? '');
    };
    const onError = (error: Error) => {
      listeningNow = false;
      subscriber.error(error);
    };
    pool
      .connect()
      .then(async (connected) => {
        if (ended) {
          connected.release();
          return;
        }
        client = connected;
        client.on('notification', onNotification);
        client.on('error', onError);
        await client.query(`LISTEN ${EVENTS_CHANNEL}`);
        if (ended) return;
        listeningNow = true;
        heard += 1;
        subscriber.next(null);
      })
      .catch((error: unknown) => {
        listeningNow = false;
        subscriber.error(error);
      });
    return () => {
      ended = true;
      listeningNow = false;
      const listening = client;
      if (!listening) return;
      listening.off('notification', onNotification);
      listening.query(`UNLISTEN ${EVENTS_CHANNEL}`).then(
        () => {
          listening.off('error', onError);
          listening.release();
        },
        (error: Error) => listening.release(error),
      );
    };
  }).pipe(share());

  const store: PostgresEventStore<E> = {
    async appendToStream(streamId: string, events: readonly NewEvent<E>[], options: { expectedVersion: ExpectedVersion }) {
      const request: AppendRequest<E> = { streamId, events, expectedVersion: options.expectedVersion };
      const [outcome] = await append([request]);
      const result = toResult(request, outcome!);
      if (result instanceof VersionConflictError) throw result;
      return result;
    },

    async appendToStreams(requests) {
      const outcomes = await append(requests);
      return outcomes.map((outcome, index) => toResult(requests[index]!, outcome));
    },

    async readStream(streamId: string, options: { fromRevision?: StreamRevision; maxCount?: number } = {}): Promise<ReadStreamResult<E>> {
      const result = await pool.query<EventRow & { head: string }>({
        name: 'tollgate_read_stream',
        text: READ_STREAM_SQL,
        values: [streamId, (options.fromRevision ?? 0n).toString(), options.maxCount ?? null],
      });
      if (result.rows.length === 0) return { revision: null, events: [] };
      const events = result.rows.filter((row) => row.event_id !== null).map(decodeRow);
      return { revision: BigInt(result.rows[0]!.head), events };
    },

    async headPosition() {
      // The same visibility rule as readAll: nothing a slower transaction may still precede.
      const result = await pool.query<{ tx: string; global_seq: string }>(
        `SELECT transaction_id::text AS tx, global_seq FROM events
          WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY transaction_id DESC, global_seq DESC LIMIT 1`,
      );
      const row = result.rows[0];
      return row ? { tx: BigInt(row.tx), seq: BigInt(row.global_seq) } : START;
    },

    latestPosition: latestCommitted,

    streamAnnouncements(): Observable<StreamAnnouncement> {
      // A subscriber joining a connection already listening is told so at once.
      const shared = defer(() => (listeningNow ? concat(of(null), notifications$) : notifications$));
      return shared.pipe(
        map((payload): StreamAnnouncement | undefined => {
          if (payload === null) return { kind: 'listening' };
          if (payload === '') return undefined;
          let parsed: unknown;
          try {
            parsed = JSON.parse(payload);
          } catch {
            return undefined;
          }
          const announcement = announcementSchema.safeParse(parsed);
          return announcement.success ? { kind: 'appended', streamId: announcement.data.stream, revision: BigInt(announcement.data.revision) } : undefined;
        }),
        filter((announcement): announcement is StreamAnnouncement => announcement !== undefined),
      );
    },

    async globalLogLag(): Promise<GlobalLogLag> {
      const lag = await pool.query<{ hidden: number; seconds: number | null }>(LAG_SQL);
      const { hidden, seconds } = lag.rows[0]!;
      if (hidden === 0) return { hiddenEvents: 0, seconds: 0, blocker: null };
      const found = await pool.query<{
        pid: number | null;
        database: string | null;
        application_name: string | null;
        state: string | null;
        transaction_age_s: number | null;
        prepared: string | null;
      }>(BLOCKER_SQL);
      const row = found.rows[0];
      const blocker: GlobalLogBlocker | null = row
        ? {
            pid: row.pid,
            database: row.database,
            applicationName: row.application_name,
            state: row.state,
            transactionAgeSeconds: row.transaction_age_s,
            preparedTransaction: row.prepared,
          }
        : null;
      return { hiddenEvents: hidden, seconds: Math.max(0, seconds ?? 0), blocker };
    },

    async setStreamMaxAge(streamId: string, maxAgeSeconds: number) {
      if (!Number.isSafeInteger(maxAgeSeconds) || maxAgeSeconds <= 0)
        throw new RangeError(`a maximum age is a whole number of seconds above 0, got ${maxAgeSeconds}`);
      await pool.query(
        `INSERT INTO stream_max_ages (stream_id, max_age_seconds) VALUES ($1, $2)
           ON CONFLICT (stream_id) DO UPDATE SET max_age_seconds = EXCLUDED.max_age_seconds`,
        [streamId, maxAgeSeconds],
      );
    },

    async streamMaxAge(streamId: string) {
      const result = await pool.query<{ max_age_seconds: string }>('SELECT max_age_seconds FROM stream_max_ages WHERE stream_id = $1', [streamId]);
      const row = result.rows[0];
      return row ? Number(row.max_age_seconds) : null;
    },

    async scavenge(now: Date): Promise<ScavengeResult> {
      const result = await pool.query<{ o_stream: string; o_deleted: string }>('SELECT o_stream, o_deleted FROM scavenge_expired_events($1)', [now]);
      return { deletedEvents: result.rows.reduce((n, row) => n + Number(row.o_deleted), 0), streams: result.rows.length };
    },

    async readAll(from: LogPosition, options: { maxCount?: number } = {}) {
      const rows = await readAllRows(from, options.maxCount ?? null);
      return rows.map(decodeRow);
    },

    subscribe(from: LogPosition): Observable<RecordedEvent<E>> {
      return new Observable<RecordedEvent<E>>((subscriber) => {
        let stopped = false;
        let wake: (() => void) | undefined;
        const stop = () => {
          stopped = true;
          wake?.();
        };
        const closeFromStore = () => {
          stop();
          subscriber.complete();
        };
        activeSubscriptions.add(closeFromStore);
        const listening = notifications$.subscribe({
          next: () => wake?.(),
          error: (error: unknown) => subscriber.error(error),
        });
        const wakeMe = () => wake?.();
        ownWakers.add(wakeMe);

        (async () => {
          let position = from;
          // Whether this read follows a notification (or is the first).
          let notified = true;
          let hidden = false;
          // Reads in a row that found nothing without a notification: the poll backs off.
          let idle = 0;
          let lastReadAt: number | undefined;
          // Only reads sent after this subscriber began (or after its previous read) serve it.
          let lastRead = tailReadsSent;
          while (!stopped) {
            // Every instance's appends notify every subscriber of every instance: reads after
            // notifications are spaced, so N busy instances cost each subscriber at most one read
            // per spacing, not one per notification (what made PostgreSQL's CPU grow with N).
            // A read another subscriber has just sent from here costs nothing more: it is taken.
            if (notified && lastReadAt !== undefined && !shareableTailRead(position, lastRead)) {
              const since = performance.now() - lastReadAt;
              if (since < notifiedReadSpacingMs) await new Promise((resolve) => setTimeout(resolve, notifiedReadSpacingMs - since));
              if (stopped) return;
            }
            const read = tailRead(position, lastRead);
            lastRead = read.id;
            // The read's own time: subscribers that shared it wait alike for their next one.
            lastReadAt = read.sentAt;
            const { rows, latest } = await read.page;
            // Decode one by one so the events before an undecodable one are still delivered.
            for (const row of rows) {
              if (stopped) return;
              const event = decodeRow(row);
              subscriber.next(event);
              position = event.position;
            }
            // A notification heard after the read was sent may be for events it did not see.
            const woken = heard > read.heardBefore;
            if (rows.length > 0 || notified) idle = 0;
            if (rows.length === pageSize || woken || stopped) {
              notified = woken;
              continue;
            }
            // A notification can arrive while an older transaction (in any database of the
            // cluster) still holds the horizon below the new event: no further notification will
            // come for it, so look again soon instead of at the next poll. The read itself says
            // whether anything committed lies beyond what it could see.
            hidden = comparePositions(latest, position) > 0;
            const waitMs = hidden ? Math.min(HIDDEN_RETRY_MS, pollIntervalMs) : Math.max(pollIntervalMs, Math.min(idlePollMaxMs, pollIntervalMs * 2 ** idle));
            if (!hidden) idle = Math.min(idle + 1, 20);
            notified = await new Promise<boolean>((resolve) => {
              const timer = setTimeout(() => resolve(false), waitMs);
              wake = () => {
                clearTimeout(timer);
                resolve(true);
              };
            });
            wake = undefined;
          }
        })().catch((error: unknown) => {
          if (!stopped) subscriber.error(error);
        });

        return () => {
          stop();
          activeSubscriptions.delete(closeFromStore);
          ownWakers.delete(wakeMe);
          listening.unsubscribe();
        };
      });
    },

    async close() {
      for (const closeSubscription of [...activeSubscriptions]) closeSubscription();
      // The caller ends the pool next: the wake-up still due for other processes goes now, and
      // the last one finishes before the pool ends.
      clearTimeout(spacing);
      spacing = undefined;
      await announcing;
      if (trailing) {
        sendWake();
        clearTimeout(spacing);
        spacing = undefined;
        await announcing;
      }
      trailing = false;
    },
  };
  return store;
}
