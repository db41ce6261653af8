import { randomUUID } from 'node:crypto';
import type { Decider, Rejection } from '../../domain/decider/decision';
import {
  VersionConflictError,
  type AppendRequest,
  type AppendResult,
  type EventStore,
  type LogPosition,
  type NewEvent,
  type StreamRevision,
} from '../ports/event-store';

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
  /**
   * Handlers over the same store that share their commits (createCommitGroup): when one flushes,
   * the others' waiting commands, deferrable ones included, are flushed beside it and appended in
   * the same transaction. A ledger's handlers form one group, so a request-log entry rides with
   * the next reservation's commit instead of committing alone.
   */
  group?: CommitGroup;
  newEventId?: () => string;
}

type AppendResults = (AppendResult | VersionConflictError)[];

/** One flush's part in a commit it shares with other handlers' flushes. */
interface Participant {
  /** this flush's appends, sent in one transaction with the other participants' once each has said */
  append(requests: readonly AppendRequest<unknown>[]): Promise<AppendResults>;
  /** this flush appends nothing (or has already appended): the others need not wait for it */
  leave(): void;
}

/** A shared commit being gathered: every participant is registered before any can say. */
interface Round {
  participant(): Participant;
  /** no more participants: the commit goes once the registered ones have said */
  seal(): void;
}

interface Member {
  /** starts a flush of what waits now (deferred or not) as part of `round`, if it can */
  join(round: Round): void;
  /** a reader waits: what waits only for deferral is flushed now */
  hurry(): void;
}

/**
 * The handlers of one store that share their commits (a ledger's: accounts, price book, keys, the
 * request log). A flush of any of them takes the others' waiting commands too, each handler
 * deciding its own, and the appends of all go in one transaction: a command nobody waits on (a
 * settlement, a request-log entry) rides with the next command somebody waits on, whichever
 * handler that is, instead of paying a commit of its own.
 */
export interface CommitGroup {
  /**
   * Someone waits for commands that may be deferred (a read of the account after its requests,
   * the shutdown's drain): while `waiting` runs, nothing is deferred; it is returned.
   */
  hurry<T>(waiting: Promise<T>): Promise<T>;
  /** @internal */
  readonly members: Set<Member>;
  /** @internal */
  readonly store: EventStore<unknown>;
  /** @internal readers waiting (hurry) */
  hurrying: number;
}

export function createCommitGroup(store: EventStore<unknown>): CommitGroup {
  const group: CommitGroup = {
    members: new Set(),
    store,
    hurrying: 0,
    hurry<T>(waiting: Promise<T>): Promise<T> {
      group.hurrying += 1;
      for (const member of group.members) member.hurry();
      return waiting.finally(() => {
        group.hurrying -= 1;
      });
    },
  };
  return group;
}

/**
 * Opens a shared commit. Participants register synchronously (the flush that opens it, then the
 * members that join it, all in the same turn); each then says once, with its appends or by
 * leaving, and once all have said the appends are sent as one appendToStreams (one transaction
 * on PostgreSQL), each participant answered with its own requests' results, in order.
 */
function openRound(store: EventStore<unknown>): Round {
  type Said = { requests: readonly AppendRequest<unknown>[]; resolve: (r: AppendResults) => void; reject: (e: unknown) => void };
  let registered = 0;
  let said = 0;
  let sealed = false;
  const appends: Said[] = [];
  function maybeSend(): void {
    if (!sealed || said < registered || appends.length === 0) return;
    const all = appends.flatMap((a) => a.requests);
    let sending: Promise<AppendResults>;
    try {
      sending = store.appendToStreams(all);
    } catch (error) {
      sending = Promise.reject(error);
    }
    sending.then(
      (results) => {
        let offset = 0;
        for (const a of appends) {
          a.resolve(results.slice(offset, offset + a.requests.length));
          offset += a.requests.length;
        }
      },
      // One transaction: it failed for every participant alike.
      (error: unknown) => {
        for (const a of appends) a.reject(error);
      },
    );
  }
  return {
    participant() {
      registered += 1;
      let done = false;
      return {
        append(requests) {
          if (done) return Promise.reject(new Error('a participant appends once'));
          done = true;
          said += 1;
          const answer = new Promise<AppendResults>((resolve, reject) => appends.push({ requests, resolve, reject }));
          maybeSend();
          return answer;
        },
        leave() {
          if (done) return;
          done = true;
          said += 1;
          maybeSend();
        },
      };
    },
    seal() {
      sealed = true;
      maybeSend();
    },
  };
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
  const group = options.group;
  if (group && group.store !== (store as EventStore<unknown>)) throw new Error('a commit group shares the commits of handlers over one store');

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
    // A flush (or another read) may have remembered a newer state meanwhile: never go back.
    const now = cache.get(streamId);
    if (now && now !== hit && !behind.has(streamId) && (now.revision ?? -1n) >= (entry.revision ?? -1n)) return now;
    remember(streamId, entry);
    return entry;
  }

  /**
   * A deferrable command's stream is read while the command waits: joining another handler's
   * flush takes only streams already in memory, and this one then is.
   */
  function prefetch(streamId: string): void {
    if (!group || busy.has(streamId) || (cache.has(streamId) && !behind.has(streamId))) return;
    load(streamId).catch(() => undefined);
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
    if (!overdue && deferMs > 0 && !(group && group.hurrying > 0) && pending.every((p) => p.hooks?.deferrable === true)) {
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
   * and flushes them; commands of busy streams keep their place in the queue. In a commit group,
   * the group's other handlers flush what waits with them beside it, in the same transaction.
   */
  function startFlush(): void {
    scheduled = false;
    if (!group) {
      takeAndFlush(undefined, false);
      return;
    }
    const round = openRound(group.store);
    if (takeAndFlush(round, false)) for (const member of group.members) if (member !== self) member.join(round);
    round.seal();
  }

  /**
   * Flushes what can be taken now, as part of `round` when given; false when nothing was taken.
   * `cachedOnly` (joining another handler's commit): only commands whose stream's state is in
   * memory and current, so that joining adds no read to the commit of the flush it joins.
   */
  function takeAndFlush(round: Round | undefined, cachedOnly: boolean): boolean {
    if (flushesInFlight >= maxFlushesInFlight) return false;
    const batch: P[] = [];
    const rest: P[] = [];
    for (const p of pending) {
      if (batch.length < maxBatch && !busy.has(p.streamId) && (!cachedOnly || (cache.has(p.streamId) && !behind.has(p.streamId)))) batch.push(p);
      else rest.push(p);
    }
    // Everything waits for streams in flight: the flush that holds them schedules the next.
    if (batch.length === 0) return false;
    // A deferral running for what is now taken would, when it fires, leave the next command
    // nobody waits on undeferred: what is left gets a deferral of its own (schedule below).
    clearTimeout(deferral);
    deferral = undefined;
    overdue = false;
    pending = rest;
    const streams = new Set(batch.map((p) => p.streamId));
    for (const streamId of streams) busy.add(streamId);
    flushesInFlight += 1;
    const participant = round?.participant();
    void flush(batch, participant)
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
    return true;
  }

  /**
   * One batch: group its commands by stream, load each stream, decide, confirm refusals that
   * wrote nothing, append everything in one transaction, then route each stream's result.
   * Returns whether another writer moved a stream under this batch (its commands are retried).
   */
  async function flush(batch: P[], participant: Participant | undefined): Promise<boolean> {
    try {
      return await flushBatch(batch, participant);
    } finally {
      // A flush that appended nothing (all refused, no-ops, or its streams unreadable) must not
      // hold up the commit it shares.
      participant?.leave();
    }
  }

  async function flushBatch(batch: P[], participant: Participant | undefined): Promise<boolean> {
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
      const results = await appendPlans(plans, participant);
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
  async function appendPlans(plans: readonly Plan[], participant: Participant | undefined): Promise<AppendResults | undefined> {
    const requests: AppendRequest<Stored>[] = plans.map((plan) => ({
      streamId: plan.streamId,
      events: plan.events,
      expectedVersion: plan.cached.revision ?? 'no_stream',
    }));
    let appending: Promise<AppendResults>;
    try {
      appending = participant ? participant.append(requests) : store.appendToStreams(requests);
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

  const self: Member = {
    join(round) {
      // What is not taken waits for its streams' flushes, or for its own deferral as before.
      takeAndFlush(round, true);
    },
    hurry() {
      if (deferral === undefined) return;
      clearTimeout(deferral);
      deferral = undefined;
      overdue = true;
      schedule();
    },
  };
  group?.members.add(self);

  return {
    handle(streamId, command, hooks) {
      return new Promise((resolve, reject) => {
        pending.push({ streamId, command, resolve, reject, hooks, conflicts: 0, refusalConfirmed: false });
        if (hooks?.deferrable) prefetch(streamId);
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
