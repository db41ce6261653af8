/**
 * Requests whose answer has gone out but whose reservation is still being settled. Settlement
 * runs after the response so it adds nothing to the client's latency; a read of the account
 * in this process (balance, usage) waits for them, so a client that reads its balance right
 * after a request sees that request charged.
 */
export class SettlementTracker {
  private readonly inFlight = new Map<string, Set<Promise<void>>>();

  /** Marks a settlement as started; call the returned function with its promise. */
  begin(accountId: string): (settlement: Promise<void>) => void {
    let resolveGate!: () => void;
    const gate = new Promise<void>((resolve) => (resolveGate = resolve));
    this.track(accountId, gate);
    return (settlement) => {
      void settlement.finally(resolveGate);
    };
  }

  /** Resolves when every settlement of the account that started before this call has ended. */
  async settled(accountId: string): Promise<void> {
    const pending = this.inFlight.get(accountId);
    if (pending) await Promise.allSettled([...pending]);
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
    const outcome = await Promise.race([Promise.allSettled(all).then(() => 'drained' as const), timedOut]);
    clearTimeout(timer);
    return outcome === 'drained' ? 0 : [...this.inFlight.values()].reduce((n, set) => n + set.size, 0);
  }

  private track(accountId: string, promise: Promise<void>): void {
    let set = this.inFlight.get(accountId);
    if (!set) this.inFlight.set(accountId, (set = new Set()));
    set.add(promise);
    void promise.finally(() => {
      set.delete(promise);
      if (set.size === 0 && this.inFlight.get(accountId) === set) this.inFlight.delete(accountId);
    });
  }
}
