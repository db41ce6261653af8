import { randomUUID } from 'node:crypto';
import type { Decider, Rejection } from '../../domain/decider/decision';
import { VersionConflictError, type AppendRequest, type EventStore, type LogPosition, type NewEvent, type StreamRevision } from '../ports/event-store';

/**
 * Runs a decider's commands against the event store with group commit.
 *
 * 1. load (or keep in memory) each stream's state, 2. decide, 3. append at the expected version.
 * Commands are queued; a flush takes everything waiting, decides commands for the same stream in
 * arrival order against the evolving state, and appends all streams in one transaction
 * (EventStore.appendToStreams). A hot account therefore pays one row lock per batch, not per
 * request, and many accounts share one commit. A stream another process wrote meanwhile fails
 * its expected-version check: its state is reloaded and its commands are decided again, a bounded
 * number of times.
 *
 * Flushes are pipelined: while one batch's commit is in flight, the next is collected from the
 * commands of other streams and committed beside it (up to `maxFlushesInFlight`), so a request
 * never waits for another account's commit (a settlement, a reservation). A stream is in at most
 * one flush at a time: its later commands wait for that flush to end and are decided on the state
 * it committed, which keeps each stream's arrival order and its expected versions exact.
 */
export type Handled<State, Event, Err extends Rejection> =
  | {
      readonly ok: true;
      readonly events: readonly NewEvent<Event>[];
      /** the stream's state after this command's events */
      readonly state: State;
      /** position of the batch's last event in this stream; null when the command was a no-op */
      readonly position: LogPosition | null;
    }
  | { readonly ok: false; readonly error: Err };

export interface GroupCommitOptions {
  /** most commands decided and written in one transaction */
  maxBatch?: number;
  /** how often a command is decided again after another writer moved its stream */
  maxConflictRetries?: number;
  /** streams whose state stays in memory (least recently used evicted) */
  cacheSize?: number;
  /** flushes whose commits may be in flight at once, each on streams no other one holds (default 4) */
  maxFlushesInFlight?: number;
  /**
   * Longest that commands nobody waits on (HandleHooks.deferrable: a settlement, whose answer has
   * gone out) wait for a command someone does wait on, to share its commit (default 10 ms).
   */
  deferMs?: number;
  newEventId?: () => string;
}

/**
 * Hooks into one command's attempts, for a caller that starts work on the in-memory decision
 * while its commit is in flight (the request path dispatches to the upstream then, and relays
 * nothing until the commit is durable).
 */
export interface HandleHooks<State, Event> {
  /**
   * A flush accepted the command in memory (decided on the state its stream's previous flush
   * committed) and its append has been sent; the commit is not yet durable. Called once per
   * attempt that accepts it (a conflict makes another attempt).
   */
  readonly decided?: (decision: { readonly events: readonly NewEvent<Event>[]; readonly state: State }) => void;
  /**
   * The attempt announced by `decided` did not commit (another writer moved the stream, or the
   * store failed): whatever was started on it must stop. The command may still be decided again
   * (after a conflict), and the promise of handle() says how it finally ended.
   */
  readonly undone?: () => void;
  /**
   * Nobody waits on this command's commit (a settlement after the answer went out): it may wait
   * up to GroupCommitOptions.deferMs for a command someone waits on (the next reservation) and
   * share its commit, instead of committing alone and holding that command's stream meanwhile.
   */
  readonly deferrable?: boolean;
}

export interface GroupCommitHandler<Command, State, Event, Err extends Rejection> {
  handle(streamId: string, command: Command, hooks?: HandleHooks<State, Event>): Promise<Handled<State, Event, Err>>;
  /** Current state of a stream as this process knows it, loading it if needed. */
  load(streamId: string): Promise<{ state: State; revision: StreamRevision | null }>;
  /** Forget what is cached (another process is known to have written). */
  invalidate(streamId: string): void;
  /**
   * An event at `revision` of `streamId` was seen in the global log: if this process's cached
   * state is older, another process wrote it, so the cache is dropped and reloaded on next use.
   */
  observe(streamId: string, revision: StreamRevision): void;
}

interface Pending<Command, State, Event, Err extends Rejection> {
  readonly streamId: string;
  readonly command: Command;
  readonly resolve: (handled: Handled<State, Event, Err>) => void;
  readonly reject: (error: unknown) => void;
  readonly hooks: HandleHooks<State, Event> | undefined;
  conflicts: number;
  /** a refusal decided on cached state is confirmed once on freshly read state */
  refusalConfirmed: boolean;
}

interface Cached<State> {
  state: State;
  revision: StreamRevision | null;
}

/**
 * `Stored` is everything the store holds; `Event` is this decider's part of it. Streams are named
 * per aggregate (account-…, price-book), so a stream read here holds only this decider's events.
 */
export function createGroupCommitHandler<Command, State, Event extends Stored, Stored, Err extends Rejection>(
  store: EventStore<Stored>,
  decider: Decider<Command, State, Event, Err>,
  options: GroupCommitOptions = {},
): GroupCommitHandler<Command, State, Event, Err> {
  const maxBatch = options.maxBatch ?? 1_000;
  const maxConflictRetries = options.maxConflictRetries ?? 20;
  const cacheSize = options.cacheSize ?? 50_000;
  const maxFlushesInFlight = Math.max(1, options.maxFlushesInFlight ?? 4);
  const newEventId = options.newEventId ?? randomUUID;
  const deferMs = options.deferMs ?? 10;

  type P = Pending<Command, State, Event, Err>;
  type Accepted = { p: P; events: NewEvent<Event>[]; state: State };
  type Refused = { p: P; error: Err };
  /** What a batch decided for one stream. */
  type Plan = {
    streamId: string;
    /** the state the decisions started from */
    cached: Cached<State>;
    finalState: State;
    /** every accepted command's events, in order: what is appended */
    events: NewEvent<Event>[];
    accepted: Accepted[];
    refused: Refused[];
  };
  type AppendResults = Awaited<ReturnType<EventStore<Stored>['appendToStreams']>>;
  const cache = new Map<string, Cached<State>>();
  // Cached streams another writer may have moved. Their state is still a true prefix of the
  // stream (streams are append-only), so load() reads only the events after it: a hot stream
  // that conflicts is caught up in one short read, not read again from its first event.
  const behind = new Set<string>();
  let pending: P[] = [];
  /** streams in a flush now: their commands wait in `pending` until it ends */
  const busy = new Set<string>();
  let flushesInFlight = 0;
  let scheduled = false;
  let conflictedInARow = 0;

  function remember(streamId: string, entry: Cached<State>): void {
    cache.delete(streamId); // re-insert: Map order is our recency order
    cache.set(streamId, entry);
    behind.delete(streamId);
    if (cache.size > cacheSize) {
      const oldest = cache.keys().next().value as string;
      cache.delete(oldest);
      behind.delete(oldest);
    }
  }

  function markBehind(streamId: string): void {
    if (cache.has(streamId)) behind.add(streamId);
  }

  async function load(streamId: string): Promise<Cached<State>> {
    const hit = cache.get(streamId);
    if (hit && !behind.has(streamId)) return hit;
    const from = hit && hit.revision !== null ? hit.revision + 1n : 0n;
    const { revision, events } = await store.readStream(streamId, from > 0n ? { fromRevision: from } : {});
    const base = from > 0n ? hit!.state : decider.initialState();
    const entry = { state: events.reduce((s, e) => decider.evolve(s, e.event as Event), base), revision: revision ?? (from > 0n ? hit!.revision : null) };
    remember(streamId, entry);
    return entry;
  }

  /** set while only deferrable commands wait: when it fires they are flushed on their own */
  let deferral: NodeJS.Timeout | undefined;
  /** deferrable commands have waited deferMs: the next chance to flush takes them */
  let overdue = false;

  function schedule(): void {
    if (scheduled || flushesInFlight >= maxFlushesInFlight || pending.length === 0) return;
    // Only commands nobody waits on: give the next command somebody waits on (at one connection,
    // the next request's reservation) the chance to share their commit. Without this, that
    // reservation arrives while the previous request's settlement commits on its own, and waits
    // for that whole commit before its own begins: two commits in the path of every request.
    if (!overdue && deferMs > 0 && pending.every((p) => p.hooks?.deferrable === true)) {
      deferral ??= setTimeout(() => {
        deferral = undefined;
        overdue = true;
        schedule();
      }, deferMs);
      return;
    }
    clearTimeout(deferral);
    deferral = undefined;
    scheduled = true;
    // setImmediate lets every request that arrived in this turn join the batch.
    setImmediate(startFlush);
  }

  /**
   * Takes the waiting commands of every stream not in a flush (up to maxBatch, in arrival order)
   * and flushes them; commands of busy streams keep their place in the queue.
   */
  function startFlush(): void {
    scheduled = false;
    if (flushesInFlight >= maxFlushesInFlight) return;
    overdue = false;
    const batch: P[] = [];
    const rest: P[] = [];
    for (const p of pending) {
      if (batch.length < maxBatch && !busy.has(p.streamId)) batch.push(p);
      else rest.push(p);
    }
    pending = rest;
    // Everything waits for streams in flight: the flush that holds them schedules the next.
    if (batch.length === 0) return;
    const streams = new Set(batch.map((p) => p.streamId));
    for (const streamId of streams) busy.add(streamId);
    flushesInFlight += 1;
    void flush(batch)
      .then(async (conflicted) => {
        conflictedInARow = conflicted ? conflictedInARow + 1 : 0;
        // Two processes flushing the same hot stream in lockstep conflict again and again; a
        // short random pause (growing while conflicts repeat) before its streams are taken
        // again lets one of them through.
        if (conflicted) await new Promise((resolve) => setTimeout(resolve, Math.random() * 2 ** Math.min(conflictedInARow, 6)));
      })
      .catch((error: unknown) => {
        // Not expected (each step answers its own failures), but no command may wait forever:
        // those of this batch still unanswered fail (an answered promise ignores it).
        const mine = new Set(batch);
        pending = pending.filter((p) => !mine.has(p));
        for (const p of batch) p.reject(error);
      })
      .finally(() => {
        for (const streamId of streams) busy.delete(streamId);
        flushesInFlight -= 1;
        schedule();
      });
    // Commands of other streams need not wait for this commit.
    schedule();
  }

  /**
   * One batch: group its commands by stream, load each stream, decide, confirm refusals that
   * wrote nothing, append everything in one transaction, then route each stream's result.
   * Returns whether another writer moved a stream under this batch (its commands are retried).
   */
  async function flush(batch: P[]): Promise<boolean> {
    const byStream = groupByStream(batch);
    const loaded = await loadStreams(byStream);
    const retry: P[] = [];
    const plans: Plan[] = [];
    for (const [streamId, commands] of byStream) {
      const plan = decideStream(streamId, commands, loaded.get(streamId)!);
      if (plan.events.length === 0) confirmWithoutWriting(plan, retry);
      else plans.push(plan);
    }
    let conflicted = false;
    if (plans.length > 0) {
      const results = await appendPlans(plans);
      if (results === undefined) {
        pending = [...retry, ...pending];
        return false;
      }
      conflicted = routeResults(plans, results, retry);
    }
    // Retried commands go first, so a stream's commands keep their arrival order.
    pending = [...retry.sort((a, b) => batch.indexOf(a) - batch.indexOf(b)), ...pending];
    return conflicted;
  }

  /** The batch's commands per stream, each stream's in arrival order. */
  function groupByStream(batch: readonly P[]): Map<string, P[]> {
    const byStream = new Map<string, P[]>();
    for (const p of batch) {
      const list = byStream.get(p.streamId);
      if (list) list.push(p);
      else byStream.set(p.streamId, [p]);
    }
    return byStream;
  }

  /**
   * Loads (or finds cached) every stream; a stream that cannot be read fails its commands and
   * leaves the batch. Returns what was loaded: another flush may evict it from the cache meanwhile.
   */
  async function loadStreams(byStream: Map<string, P[]>): Promise<Map<string, Cached<State>>> {
    const streamIds = [...byStream.keys()];
    const loaded = await Promise.allSettled(streamIds.map((id) => load(id)));
    const entries = new Map<string, Cached<State>>();
    loaded.forEach((result, i) => {
      if (result.status === 'rejected') {
        for (const p of byStream.get(streamIds[i]!)!) p.reject(result.reason);
        byStream.delete(streamIds[i]!);
      } else entries.set(streamIds[i]!, result.value);
    });
    return entries;
  }

  /** Decides a stream's commands in order against its evolving state (a decider that throws fails only its command). */
  function decideStream(streamId: string, commands: readonly P[], cached: Cached<State>): Plan {
    let state = cached.state;
    const events: NewEvent<Event>[] = [];
    const accepted: Accepted[] = [];
    const refused: Refused[] = [];
    for (const p of commands) {
      let decision;
      try {
        decision = decider.decide(p.command, state);
      } catch (error) {
        p.reject(error);
        continue;
      }
      if (!decision.ok) {
        refused.push({ p, error: decision.error });
        continue;
      }
      const decided = decision.events.map((event) => ({ id: newEventId(), event }));
      for (const e of decision.events) state = decider.evolve(state, e);
      events.push(...decided);
      accepted.push({ p, events: decided, state });
    }
    return { streamId, cached, finalState: state, events, accepted, refused };
  }

  /**
   * A stream with nothing to write: nothing proved the cached state current, so refusals are
   * confirmed once on a fresh read, since another process may have credited this account.
   */
  function confirmWithoutWriting(plan: Plan, retry: P[]): void {
    for (const { p } of plan.accepted) p.resolve({ ok: true, events: [], state: plan.cached.state, position: null });
    const unconfirmed = plan.refused.filter(({ p }) => !p.refusalConfirmed);
    for (const { p, error } of plan.refused) if (p.refusalConfirmed) p.resolve({ ok: false, error });
    if (unconfirmed.length > 0) {
      markBehind(plan.streamId);
      for (const { p } of unconfirmed) {
        p.refusalConfirmed = true;
        retry.push(p);
      }
    }
  }

  /**
   * Appends every plan's events in one transaction, each at its expected version. Undefined when
   * the transaction did not commit (or we cannot know): the optimistic states are forgotten and
   * the plans' commands fail.
   */
  async function appendPlans(plans: readonly Plan[]): Promise<AppendResults | undefined> {
    const requests: AppendRequest<Stored>[] = plans.map((plan) => ({
      streamId: plan.streamId,
      events: plan.events,
      expectedVersion: plan.cached.revision ?? 'no_stream',
    }));
    let appending: Promise<AppendResults>;
    try {
      appending = store.appendToStreams(requests);
    } catch (error) {
      appending = Promise.reject(error);
    }
    // The append is on its way: callers may start work on the decisions while it commits.
    for (const plan of plans) for (const accepted of plan.accepted) announceDecided(accepted);
    try {
      return await appending;
    } catch (error) {
      for (const plan of plans) {
        markBehind(plan.streamId);
        for (const { p } of plan.accepted) announceUndone(p);
        for (const { p } of plan.accepted) p.reject(error);
        for (const { p } of plan.refused) p.reject(error);
      }
      return undefined;
    }
  }

  /** Answers each stream's commands, or sends them round again when another writer moved it. Returns whether one did. */
  function routeResults(plans: readonly Plan[], results: AppendResults, retry: P[]): boolean {
    let conflicted = false;
    results.forEach((result, i) => {
      const plan = plans[i]!;
      if (result instanceof VersionConflictError) {
        conflicted = true;
        markBehind(plan.streamId);
        for (const { p } of plan.accepted) announceUndone(p);
        for (const { p } of [...plan.accepted, ...plan.refused]) {
          if (++p.conflicts > maxConflictRetries) p.reject(result);
          else retry.push(p);
        }
        return;
      }
      // The append succeeded at the expected version, so every decision in this plan,
      // refusals included, was made on the stream's current state.
      remember(plan.streamId, { state: plan.finalState, revision: result.nextExpectedVersion });
      for (const { p, events, state } of plan.accepted) p.resolve({ ok: true, events, state, position: result.lastPosition });
      for (const { p, error } of plan.refused) p.resolve({ ok: false, error });
    });
    return conflicted;
  }

  // A caller's hook must not break the flush it is told about.
  function announceDecided({ p, events, state }: Accepted): void {
    if (!p.hooks?.decided) return;
    try {
      p.hooks.decided({ events, state });
    } catch {
      // the caller's own failure; its command commits regardless
    }
  }

  function announceUndone(p: P): void {
    if (!p.hooks?.undone) return;
    try {
      p.hooks.undone();
    } catch {
      // as above
    }
  }

  return {
    handle(streamId, command, hooks) {
      return new Promise((resolve, reject) => {
        pending.push({ streamId, command, resolve, reject, hooks, conflicts: 0, refusalConfirmed: false });
        schedule();
      });
    },
    load: async (streamId) => {
      const { state, revision } = await load(streamId);
      return { state, revision };
    },
    invalidate(streamId) {
      cache.delete(streamId);
      behind.delete(streamId);
    },
    observe(streamId, revision) {
      const cached = cache.get(streamId);
      if (cached && (cached.revision === null || cached.revision < revision)) markBehind(streamId);
    },
  };
}
