import type { Decider, Rejection } from '../../../domain/decider/decision';

/**
 * given(events).when(command).then(newEvents | namedError): the decider's specification
 * format. `then` with an array expects acceptance with exactly those events; with an
 * object, rejection with exactly that error.
 */
export function deciderSpec<C, S, E, Err extends Rejection>(decider: Decider<C, S, E, Err>) {
  return function given(history: readonly E[]) {
    return {
      when(command: C) {
        const state = history.reduce(decider.evolve, decider.initialState());
        const decision = decider.decide(command, state);
        return {
          // biome-ignore lint/suspicious/noThenProperty: the given/when/then language of the decider tests; nothing awaits it
          then(expected: readonly E[] | Err): void {
            if (Array.isArray(expected)) {
              expect(decision).toEqual({ ok: true, events: expected });
            } else {
              expect(decision).toEqual({ ok: false, error: expected });
            }
          },
          /** for rules where only the error's name matters */
          thenRejectedWith(name: Err['error']): void {
            expect(decision.ok ? 'accepted' : decision.error.error).toBe(name);
          },
          /** state after the command's events, to assert on what they change */
          thenState(): S {
            if (!decision.ok) throw new Error(`expected acceptance, got ${decision.error.error}`);
            return decision.events.reduce(decider.evolve, state);
          },
        };
      },
    };
  };
}
