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

  /** Resolves when every settlement in this process has ended (shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()].flatMap((set) => [...set]));
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
