import { startPollLoop } from '../../../src/process-managers/poll-loop';

/** A promise the test resolves when it chooses. */
function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

beforeEach(() => jest.useFakeTimers());
afterEach(() => jest.useRealTimers());

test('a pass every interval', async () => {
  let passes = 0;
  const loop = startPollLoop(
    async () => {
      passes += 1;
    },
    { intervalMs: 100, onError: () => {} },
  );
  await jest.advanceTimersByTimeAsync(350);
  expect(passes).toBe(3);
  await loop.stop();
  await jest.advanceTimersByTimeAsync(1_000);
  expect(passes).toBe(3);
});

test('no overlapping passes: ticks while a pass runs are skipped, not queued', async () => {
  let started = 0;
  let active = 0;
  let mostActive = 0;
  let blocker = gate();
  const loop = startPollLoop(
    async () => {
      started += 1;
      active += 1;
      mostActive = Math.max(mostActive, active);
      await blocker.promise;
      active -= 1;
    },
    { intervalMs: 100, onError: () => {} },
  );
  await jest.advanceTimersByTimeAsync(1_050); // ten ticks, the first pass still running
  expect(started).toBe(1);
  const done = blocker;
  blocker = gate();
  done.open();
  await jest.advanceTimersByTimeAsync(100); // the next tick starts one pass, not nine
  expect(started).toBe(2);
  expect(mostActive).toBe(1);
  blocker.open();
  await loop.stop();
});

test('stop waits for the running pass, and no pass starts after it', async () => {
  const order: string[] = [];
  const blocker = gate();
  let started = 0;
  const loop = startPollLoop(
    async () => {
      started += 1;
      order.push('pass started');
      await blocker.promise;
      order.push('pass ended');
    },
    { intervalMs: 100, onError: () => {} },
  );
  await jest.advanceTimersByTimeAsync(100);
  expect(order).toEqual(['pass started']);
  const stopped = loop.stop().then(() => order.push('stopped'));
  await jest.advanceTimersByTimeAsync(500);
  expect(order).toEqual(['pass started']);
  blocker.open();
  await stopped;
  expect(order).toEqual(['pass started', 'pass ended', 'stopped']);
  await jest.advanceTimersByTimeAsync(500);
  expect(started).toBe(1);
});

test('a failed pass is reported and the loop goes on', async () => {
  const errors: unknown[] = [];
  let passes = 0;
  const loop = startPollLoop(
    async () => {
      passes += 1;
      if (passes === 1) throw new Error('database unreachable');
    },
    { intervalMs: 100, onError: (error) => errors.push(error) },
  );
  await jest.advanceTimersByTimeAsync(300);
  expect(passes).toBe(3);
  expect(errors).toHaveLength(1);
  expect((errors[0] as Error).message).toBe('database unreachable');
  await loop.stop();
});

test('a pass that throws before its first await is reported too, and does not wedge the loop', async () => {
  const errors: unknown[] = [];
  let passes = 0;
  const loop = startPollLoop(
    () => {
      passes += 1;
      throw new Error('at once');
    },
    { intervalMs: 100, onError: (error) => errors.push(error) },
  );
  await jest.advanceTimersByTimeAsync(300);
  expect(passes).toBe(3);
  expect(errors).toHaveLength(3);
  await loop.stop();
});

test('runNow runs a pass at once, or joins the running one', async () => {
  let passes = 0;
  const blocker = gate();
  const loop = startPollLoop(
    async () => {
      passes += 1;
      await blocker.promise;
    },
    { intervalMs: 10_000, onError: () => {} },
  );
  const first = loop.runNow();
  const second = loop.runNow();
  expect(passes).toBe(1);
  blocker.open();
  await Promise.all([first, second]);
  expect(passes).toBe(1);
  await loop.runNow();
  expect(passes).toBe(2);
  await loop.stop();
});
