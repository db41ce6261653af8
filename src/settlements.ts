/**
 * Requests under way in this process, and the settlements of those whose answer has gone out.
 * Settlement runs after the response so it adds nothing to the client's latency; a read of the
 * account in this process (balance, usage) waits for the settlements already started
 * (`answersSettled`), so a client that reads its balance right after a request sees that
 * request charged.
 *
 * A read never waits for a request still being served: a stream may run for minutes, and its
 * reservation is already committed, so the read shows it as held (issue 12, part 5). Shutdown
 * (`drain`) and `settled` wait for both.
 */
export class SettlementTracker {
  /**
   * `hurry` (Ledger.hurry): settlements and request-log entries may wait a moment to share a
   * commit with the next reservation; a reader (or the drain) waiting for them ends that wait.
   */
  constructor(private readonly options: { readonly hurry?: <T>(waiting: Promise<T>) => Promise<T> } = {}) {}

  private hurried<T>(waiting: Promise<T>): Promise<T> {
    return this.options.hurry ? this.options.hurry(waiting) : waiting;
  }

  /** per account: each request from admission until its settlement ends (for drain) */
  private readonly inFlight = new Map<string, Set<Promise<void>>>();
  /** per account: each settlement from the moment the answer went out until it ends (for reads) */
  private readonly settling = new Map<string, Set<Promise<void>>>();

  /**
   * Marks a request as under way; call the returned function with its settlement's promise
   * once the answer has gone out.
   */
  begin(accountId: string): (settlement: Promise<void>) => void {
    let resolveGate!: () => void;
    const gate = new Promise<void>((resolve) => (resolveGate = resolve));
    track(this.inFlight, accountId, gate);
    return (settlement) => {
      const ended = settlement.then(
        () => undefined,
        () => undefined,
      );
      track(this.settling, accountId, ended);
      void ended.finally(resolveGate);
    };
  }

  /**
   * Resolves when every settlement of the account that started before this call has ended:
   * what a read waits for (read-your-writes). Requests still being served are not waited for:
   * their reservations are already committed and show as held.
   */
  async answersSettled(accountId: string): Promise<void> {
    const pending = this.settling.get(accountId);
    if (pending) await this.hurried(Promise.allSettled([...pending]));
  }

  /**
   * Resolves when every request of the account under way before this call has ended and been
   * settled, however long it is still served (for tests and tools; never for a client's read).
   */
  async settled(accountId: string): Promise<void> {
    const pending = this.inFlight.get(accountId);
    if (pending) await this.hurried(Promise.allSettled([...pending]));
  }

  /**
   * Resolves when every settlement in this process has ended (shutdown), or after `timeoutMs`
   * with the number still under way. A settlement retries until its reservation expires (the
   * database may be down), and shutdown must not wait that long: what is left is returned by the
   * reservation-expiry process, uncharged.
   */
  async drain(timeoutMs = 20_000): Promise<number> {
    const all = [...this.inFlight.values()].flatMap((set) => [...set]);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const outcome = await this.hurried(Promise.race([Promise.allSettled(all).then(() => 'drained' as const), timedOut]));
    clearTimeout(timer);
    return outcome === 'drained' ? 0 : [...this.inFlight.values()].reduce((n, set) => n + set.size, 0);
  }
}

function track(byAccount: Map<string, Set<Promise<void>>>, accountId: string, promise: Promise<void>): void {
  let set = byAccount.get(accountId);
  if (!set) {
    set = new Set();
    byAccount.set(accountId, set);
  }
  set.add(promise);
  void promise.finally(() => {
    set.delete(promise);
    if (set.size === 0 && byAccount.get(accountId) === set) byAccount.delete(accountId);
  });
}
