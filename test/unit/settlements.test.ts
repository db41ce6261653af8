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

test('a read waits for settlements already under way, never for a request still being served', async () => {
  const tracker = new SettlementTracker();
  // A long stream: begun (its reservation committed) but its answer has not gone out.
  const streaming = tracker.begin('acct-1');
  const order: string[] = [];
  await tracker.answersSettled('acct-1').then(() => order.push('read answered while the request is served'));
  expect(order).toEqual(['read answered while the request is served']);

  // The answer went out and its settlement is being written: a read now waits for it.
  let finish!: () => void;
  streaming(new Promise<void>((resolve) => (finish = resolve)));
  const read = tracker.answersSettled('acct-1').then(() => order.push('read answered'));
  await new Promise((r) => setImmediate(r));
  order.push('settlement ended');
  finish();
  await read;
  expect(order).toEqual(['read answered while the request is served', 'settlement ended', 'read answered']);
});

test('drain still waits for a request whose answer has not gone out yet', async () => {
  const tracker = new SettlementTracker();
  const streaming = tracker.begin('acct-1');
  let drained: number | undefined;
  const draining = tracker.drain(5_000).then((left) => (drained = left));
  await new Promise((r) => setTimeout(r, 20));
  expect(drained).toBeUndefined();
  streaming(Promise.resolve());
  await draining;
  expect(drained).toBe(0);
});

test('settled (for tests and tools) waits for the whole request, answer and settlement', async () => {
  const tracker = new SettlementTracker();
  const streaming = tracker.begin('acct-1');
  const order: string[] = [];
  const waited = tracker.settled('acct-1').then(() => order.push('settled'));
  await new Promise((r) => setImmediate(r));
  order.push('answer sent');
  let finish!: () => void;
  streaming(new Promise<void>((resolve) => (finish = resolve)));
  await new Promise((r) => setImmediate(r));
  order.push('settlement ended');
  finish();
  await waited;
  expect(order).toEqual(['answer sent', 'settlement ended', 'settled']);
});
