/**
 * Polls `probe` until it returns something other than undefined, and returns that; fails after
 * `timeoutMs`, naming `what`. For work that finishes after the call that started it (a
 * subscriber, a process manager, a child process's output).
 */
export async function until<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  options: { what?: string; timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  // The deadline is a safety net for work that never finishes, never the verdict: generous, so a
  // loaded machine is not mistaken for a broken one.
  const { what = 'the condition', timeoutMs = 20_000, intervalMs = 50 } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * Awaits `promise`, failing after `timeoutMs` with a message naming `what`. A safety net for
 * an event that must come, so a missing one fails clearly instead of at the test's timeout;
 * never a verdict on how fast it came (make it generous).
 */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs = 15_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
