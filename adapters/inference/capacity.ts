import type { ModelSpec, UpstreamSpec } from './models-file';

/**
 * In-process concurrency slots per upstream. The gateway asks for a slot before dispatch and
 * answers 429 with Retry-After when none is free, rather than queueing behind a busy GPU.
 * Counts are per gateway instance: with N instances, size capacities for 1/N of the GPU.
 */

export interface UpstreamSlot {
  readonly model: ModelSpec;
  readonly upstream: UpstreamSpec;
  /** Index of the upstream in the model's list. */
  readonly index: number;
}

/** A held slot. Release it exactly once; releasing twice is harmless. */
export interface Lease {
  readonly model: ModelSpec;
  /** The slot currently held; dispatch may move the lease to another upstream on failover. */
  readonly slot: UpstreamSlot;
  release(): void;
}

export type AcquireResult =
  | { readonly kind: 'acquired'; readonly lease: Lease }
  | { readonly kind: 'at_capacity'; readonly retryAfterSeconds: number }
  | { readonly kind: 'unknown_model' };

// An upstream that refused a connection is tried last for this long, so one dead GPU does
// not cost every request a failed connect.
const refusedCooldownMs = 5_000;

interface SlotState {
  inFlight: number;
  refusedUntil: number;
}

export class CapacityTable {
  private readonly models = new Map<string, ModelSpec>();
  private readonly states = new Map<string, SlotState[]>();
  private readonly rotation = new Map<string, number>();

  constructor(
    models: readonly ModelSpec[],
    private readonly now: () => number = Date.now,
  ) {
    for (const model of models) {
      this.models.set(model.id, model);
      this.states.set(
        model.id,
        model.upstreams.map(() => ({ inFlight: 0, refusedUntil: 0 })),
      );
      this.rotation.set(model.id, 0);
    }
  }

  model(id: string): ModelSpec | undefined {
    return this.models.get(id);
  }

  /** Takes a slot on the least-loaded upstream with room, or says why not, without waiting. */
  tryAcquire(modelId: string): AcquireResult {
    const model = this.models.get(modelId);
    if (!model) return { kind: 'unknown_model' };
    const index = this.pick(model, new Set());
    if (index === undefined) return { kind: 'at_capacity', retryAfterSeconds: 1 };
    return { kind: 'acquired', lease: this.lease(model, index) };
  }

  /** In-flight requests per upstream of a model, for metrics and tests. */
  inFlight(modelId: string): number[] {
    return (this.states.get(modelId) ?? []).map((state) => state.inFlight);
  }

  /** Marks an upstream as refusing connections, so picks prefer the others for a while. */
  markRefused(slot: UpstreamSlot): void {
    const state = this.states.get(slot.model.id)?.[slot.index];
    if (state) state.refusedUntil = this.now() + refusedCooldownMs;
  }

  /**
   * Moves a lease to another upstream with room, skipping `tried`; the old slot is freed.
   * Returns false (holding nothing) when no other upstream has room.
   */
  moveLease(lease: Lease, tried: ReadonlySet<number>): boolean {
    return (lease as MovableLease).move(tried);
  }

  private pick(model: ModelSpec, skip: ReadonlySet<number>): number | undefined {
    const states = this.states.get(model.id)!;
    const start = this.rotation.get(model.id)!;
    const now = this.now();
    let best: number | undefined;
    let bestScore = Infinity;
    // Round-robin start breaks ties between equally loaded upstreams.
    for (let offset = 0; offset < states.length; offset++) {
      const index = (start + offset) % states.length;
      if (skip.has(index)) continue;
      const state = states[index]!;
      const capacity = model.upstreams[index]!.capacity;
      if (state.inFlight >= capacity) continue;
      const score = state.inFlight / capacity + (state.refusedUntil > now ? 1 : 0);
      if (score < bestScore) {
        best = index;
        bestScore = score;
      }
    }
    if (best !== undefined) this.rotation.set(model.id, (best + 1) % states.length);
    return best;
  }

  private lease(model: ModelSpec, index: number): Lease {
    const states = this.states.get(model.id)!;
    states[index]!.inFlight++;
    const table = this;
    let current: number | undefined = index;
    const lease: MovableLease = {
      model,
      get slot(): UpstreamSlot {
        const at = current ?? index;
        return { model, upstream: model.upstreams[at]!, index: at };
      },
      release() {
        if (current === undefined) return;
        states[current]!.inFlight--;
        current = undefined;
      },
      move(tried) {
        lease.release();
        const next = table.pick(model, tried);
        if (next === undefined) return false;
        states[next]!.inFlight++;
        current = next;
        return true;
      },
    };
    return lease;
  }
}

interface MovableLease extends Lease {
  move(tried: ReadonlySet<number>): boolean;
}
