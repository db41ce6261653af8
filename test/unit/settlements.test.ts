import { SettlementTracker } from '../../src/settlements';

test('drain waits for every settlement that has begun', async () => {
  // Fake timers: the test steps to just before the drain's timeout, on a machine of any speed.
  jest.useFakeTimers();
  try {
    const tracker = new SettlementTracker();
    let finish!: () => void;
    tracker.begin('acct-1')(new Promise<void>((resolve) => (finish = resolve)));
    let drained: number | undefined;
    const draining = tracker.drain(5_000).then((left) => (drained = left));
    await jest.advanceTimersByTimeAsync(4_999);
    expect(drained).toBeUndefined();
    finish();
    await draining;
    expect(drained).toBe(0);
  } finally {
    jest.useRealTimers();
  }
});

test('drain gives up after its timeout and says how many are still under way', async () => {
  // Fake timers: it gives up exactly at its timeout (not before), whatever the machine's speed.
  jest.useFakeTimers();
  try {
    const tracker = new SettlementTracker();
    tracker.begin('acct-1')(new Promise<void>(() => {}));
    tracker.begin('acct-2')(new Promise<void>(() => {}));
    tracker.begin('acct-2')(Promise.resolve());
    let left: number | undefined;
    const draining = tracker.drain(100).then((n) => (left = n));
    await jest.advanceTimersByTimeAsync(99);
    expect(left).toBeUndefined();
    await jest.advanceTimersByTimeAsync(1);
    await draining;
    expect(left).toBe(2);
  } finally {
    jest.useRealTimers();
  }
});
