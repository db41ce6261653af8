/**
 * A clock that moves only when the test moves it: for limits that refill with time, so a test
 * can count to the limit and step past the advertised wait however slow the machine is.
 */
export interface ManualClock {
  /** Milliseconds; pass as a `now` / admission clock. */
  readonly now: () => number;
  advance(milliseconds: number): void;
}

export function manualClock(start = 1_000_000): ManualClock {
  let current = start;
  return {
    now: () => current,
    advance(milliseconds) {
      if (!(milliseconds >= 0)) throw new RangeError('a clock only moves forward');
      current += milliseconds;
    },
  };
}
