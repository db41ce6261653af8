import { SettlementTracker } from '../../src/settlements';

test('drain waits for every settlement that has begun', async () => {
  const tracker = new SettlementTracker();
  let finish!: () => void;
  tracker.begin('acct-1')(new Promise<void>((resolve) => (finish = resolve)));
  let drained: number | undefined;
  const draining = tracker.drain(5_000).then((left) => (drained = left));
  await new Promise((r) => setTimeout(r, 20));
  expect(drained).toBeUndefined();
  finish();
  await draining;
  expect(drained).toBe(0);
});

test('drain gives up after its timeout and says how many are still under way', async () => {
  const tracker = new SettlementTracker();
  tracker.begin('acct-1')(new Promise<void>(() => {}));
  tracker.begin('acct-2')(new Promise<void>(() => {}));
  tracker.begin('acct-2')(Promise.resolve());
  const started = performance.now();
  expect(await tracker.drain(100)).toBe(2);
  expect(performance.now() - started).toBeLessThan(2_000);
});
