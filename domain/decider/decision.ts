/**
 * How every decider in domain/ answers: accepted with events (possibly none, for an
 * idempotent no-op) or rejected with one named error, TigerBeetle style. Refusals are
 * values, not exceptions, so a handler matches on `error` exhaustively and nothing is
 * thrown for a business rule.
 */
export type Rejection = { readonly error: string };

export type Decision<E, Err extends Rejection> = { readonly ok: true; readonly events: readonly E[] } | { readonly ok: false; readonly error: Err };

export function accept<E>(...events: E[]): { readonly ok: true; readonly events: readonly E[] } {
  return { ok: true, events };
}

export function reject<Err extends Rejection>(error: Err): { readonly ok: false; readonly error: Err } {
  return { ok: false, error };
}

/** A value or a named error: for queries (price in force, parsing) that can refuse. */
export type Result<T, Err extends Rejection> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: Err };

export function ok<T>(value: T): { readonly ok: true; readonly value: T } {
  return { ok: true, value };
}

/**
 * Thrown only where a caller chose to assume success (e.g. `usd("10.00")` in code and tests);
 * carries the named error so nothing is lost.
 */
export class RejectedError<Err extends Rejection = Rejection> extends Error {
  override readonly name = 'RejectedError';
  constructor(readonly rejection: Err) {
    super(`rejected: ${rejection.error}`);
  }
}

export interface Decider<Command, State, Event, Err extends Rejection> {
  decide(command: Command, state: State): Decision<Event, Err>;
  evolve(state: State, event: Event): State;
  initialState(): State;
}

/** Folds a stream into state: step 1 of every command handler. */
export function fold<State, Event>(decider: Pick<Decider<unknown, State, Event, Rejection>, 'evolve' | 'initialState'>, events: readonly Event[]): State {
  return events.reduce(decider.evolve, decider.initialState());
}
