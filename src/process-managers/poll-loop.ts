/**
 * The polling loop the background workers share (expiry, auto top-up, low-balance alerts, the
 * historical costs, the instance lease): a pass every `intervalMs`, never two at once (a tick
 * that comes while a pass still runs is skipped, not queued behind it, so a slow database does
 * not build a backlog of passes), a failed pass reported and the loop going on, and a stop that
 * waits for the pass in hand.
 */
export interface PollLoop {
  /** Runs a pass now unless one is running; resolves when that pass (or the running one) ends. */
  runNow(): Promise<void>;
  /** No new pass starts; resolves once the running one (if any) has ended. Idempotent. */
  stop(): Promise<void>;
}

export interface PollLoopOptions {
  readonly intervalMs: number;
  /** told of a pass that threw or rejected; the loop goes on */
  readonly onError: (error: unknown) => void;
}

export function startPollLoop(pass: () => Promise<unknown>, options: PollLoopOptions): PollLoop {
  let current: Promise<void> | undefined;
  let stopped = false;
  const runNow = (): Promise<void> => {
    if (stopped) return current ?? Promise.resolve();
    if (current !== undefined) return current;
    const running = (async () => {
      try {
        await pass();
      } catch (error) {
        options.onError(error);
      }
    })();
    // Cleared in a callback, so always after the assignment (even when the pass throws at once).
    current = running.then(() => {
      current = undefined;
    });
    return current;
  };
  const timer = setInterval(() => void runNow(), options.intervalMs);
  timer.unref();
  return {
    runNow,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await current;
    },
  };
}
