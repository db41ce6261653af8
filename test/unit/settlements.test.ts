import { SettlementTracker } from '../../src/settlements';

// The drain's timeout is a timer: fake timers let the tests step to either side of it, so the
// verdicts are about what the drain waits for, not how fast this machine is.
beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('drain waits for every settlement that has begun', async () => {
  const tracker = new SettlementTracker();
  let finish!: () => void;
  tracker.begin('acct-1')(new Promise<void>((resolve) => (finish = resolve)));
  let drained: number | undefined;
  const draining = tracker.drain(5_000).then((left) => (drained = left));
  await jest.advanceTimersByTimeAsync(4_999);
  expect(drained).toBeUndefined(); // still waiting, just before its timeout
  finish();
  await draining;
  expect(drained).toBe(0);
});

test('drain gives up after its timeout and says how many are still under way', async () => {
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
});
