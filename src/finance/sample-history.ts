import type { AccountCommand, AccountEvent, AccountState } from '../../domain/account';
import { refundableOf } from '../../domain/account';
import type { ReleaseReason, SettledOutcome } from '../../domain/charge-policy/outcome-names';
import type { CommandMetadata } from '../../domain/events/metadata';
import type { Operation } from '../../domain/price-book/operation';
import { addMs, isAtOrAfter } from '../../domain/time/instant';

/**
 * Realistic account histories for tests and benchmarks: top-ups, promo grants and their lapse,
 * reservations settled (sometimes short), released or expired, refunds. The script only proposes
 * commands; the decider (in memory or through the ledger) decides, and a refused proposal is
 * simply dropped, so every event written is one the domain accepted.
 */

/** Small deterministic PRNG (mulberry32): the same seed gives the same history. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const SAMPLE_PRICE = { version: 1, inputPerMillion: 2_000_000n, outputPerMillion: 6_000_000n };
const OPERATIONS: readonly Operation[] = ['chat', 'completion', 'embedding'];
const SETTLED: readonly SettledOutcome[] = [
  'completed',
  'completed',
  'completed',
  'completed',
  'completed_after_disconnect',
  'client_disconnected',
  'moderation_refusal',
  'upstream_error',
];
const RELEASED: readonly ReleaseReason[] = ['gateway_error', 'upstream_error_no_tokens', 'moderation_refusal_no_tokens_reported'];

export interface AccountScript {
  readonly accountId: string;
  /** The next command given the account's current state, or null when the history is complete. */
  next(state: AccountState): AccountCommand | null;
}

/**
 * About `steps` commands after opening, then every open reservation is ended (settled or
 * released) so the history leaves no hold behind. Time moves forward from `startAt` by a few
 * minutes per command; reservations expire when ten minutes (the default TTL) have passed.
 */
export function sampleAccountScript(accountId: string, options: { seed: number; steps: number; startAt: string }): AccountScript {
  const rng = seededRandom(options.seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rng() * items.length)]!;
  const between = (lo: number, hi: number) => lo + Math.floor(rng() * (hi - lo + 1));
  let now = options.startAt;
  let step = 0;
  let counter = 0;
  const keys = [`${accountId}-k1`, `${accountId}-k2`];
  const models = ['llama-3-8b', 'qwen-2.5-72b'];

  const meta = (): CommandMetadata => {
    counter += 1;
    const id = `${accountId}-c${counter}`;
    return { now, correlationId: id, causationId: id, actor: { kind: 'system', process: 'sample-history' } };
  };
  const requestMetadata = () => ({ upstream: 'gpu-1', httpStatus: 200, stream: rng() < 0.5, latencyMs: between(20, 4000), timeToFirstTokenMs: null });

  const settle = (state: AccountState, requestId: string): AccountCommand => {
    const shortfall = rng() < 0.03;
    const reservation = state.openReservations.get(requestId)!;
    const usage = shortfall
      ? { inputTokens: BigInt(between(100_000, 2_000_000)), outputTokens: BigInt(between(100_000, 3_000_000)), estimated: false }
      : { inputTokens: BigInt(between(0, 4000)), outputTokens: BigInt(between(0, 2000)), estimated: rng() < 0.1 };
    const outcome = pick(SETTLED);
    // Request metadata left the wallet events (it is the request log's); drawn still, so the
    // sample's random sequence, and every history generated from a seed, stays as it was.
    if (rng() < 0.9) requestMetadata();
    return {
      type: 'SettleReservation',
      data: {
        requestId,
        usage,
        price: { ...SAMPLE_PRICE, version: reservation.priceVersion },
        outcome,
      },
      metadata: meta(),
    };
  };

  const releaseOf = (requestId: string): AccountCommand => {
    const reason = pick(RELEASED);
    requestMetadata(); // drawn and dropped, as in settle
    return { type: 'ReleaseReservation', data: { requestId, reason }, metadata: meta() };
  };

  return {
    accountId,
    next(state) {
      if (state.status === 'not_opened') {
        return { type: 'OpenAccount', data: { accountId, displayNameCiphertext: 'sample', emailCiphertext: 'sample' }, metadata: meta() };
      }
      const open = [...state.openReservations.values()];
      if (step >= options.steps) {
        // Wind down: every hold ends, so the history leaves nothing open.
        const r = open[0];
        if (!r) return null;
        return rng() < 0.8
          ? settle(state, r.requestId)
          : { type: 'ReleaseReservation', data: { requestId: r.requestId, reason: pick(RELEASED) }, metadata: meta() };
      }
      step += 1;
      now = addMs(now, between(5, 240) * 1000);

      const due = open.find((r) => isAtOrAfter(now, r.expiresAt));
      if (due && rng() < 0.5) return { type: 'ExpireReservation', data: { requestId: due.requestId }, metadata: meta() };
      const lapsed = [...state.promoGrants.values()].find((g) => !g.expired && isAtOrAfter(now, g.expiresAt));
      if (lapsed) return { type: 'ExpirePromoCredit', data: { grantId: lapsed.grantId }, metadata: meta() };

      const roll = rng();
      if (state.totalToppedUp === 0n || (state.purchased < 0n && roll < 0.5) || roll < 0.05) {
        return {
          type: 'CompleteTopUp',
          data: { paymentReference: `${accountId}-pay${counter}`, amount: BigInt(between(10, 200)) * 1_000_000n },
          metadata: meta(),
        };
      }
      if (roll < 0.08) {
        return {
          type: 'GrantPromoCredit',
          data: {
            grantId: `${accountId}-grant${counter}`,
            amount: BigInt(between(1, 10)) * 1_000_000n,
            expiresAt: addMs(now, between(20, 240) * 60_000),
            reason: 'sample',
          },
          metadata: meta(),
        };
      }
      if (roll < 0.1 && state.appliedPaymentReferences.size > 0) {
        const refundable = refundableOf(state);
        if (refundable > 0n) {
          const amount = 1n + BigInt(Math.floor(rng() * Number(refundable > 50_000_000n ? 50_000_000n : refundable)));
          return {
            type: 'IssueRefund',
            data: { refundId: `${accountId}-refund${counter}`, amount, paymentReferences: [pick([...state.appliedPaymentReferences])] },
            metadata: meta(),
          };
        }
      }
      if (open.length > 0 && (roll < 0.55 || open.length > 4)) {
        const r = pick(open);
        return rng() < 0.85 ? settle(state, r.requestId) : releaseOf(r.requestId);
      }
      return {
        type: 'PlaceReservation',
        data: {
          requestId: `${accountId}-req${counter}`,
          keyId: pick(keys),
          model: pick(models),
          operation: pick(OPERATIONS),
          amount: BigInt(between(1_000, 60_000)),
          priceVersion: 1,
        },
        metadata: meta(),
      };
    },
  };
}

/**
 * Runs a script against the decider in memory: the accepted events, in order, and the final state.
 * Used where the events are written directly (the replay benchmark) or never written (property tests).
 */
export function runScriptInMemory(
  script: AccountScript,
  decide: (command: AccountCommand, state: AccountState) => { ok: true; events: readonly AccountEvent[] } | { ok: false },
  evolve: (state: AccountState, event: AccountEvent) => AccountState,
  initial: AccountState,
): { events: AccountEvent[]; state: AccountState } {
  const events: AccountEvent[] = [];
  let state = initial;
  let refusedInARow = 0;
  for (let command = script.next(state); command !== null && refusedInARow < 20; command = script.next(state)) {
    const decision = decide(command, state);
    if (!decision.ok) {
      refusedInARow += 1;
      continue;
    }
    refusedInARow = 0;
    for (const event of decision.events) {
      state = evolve(state, event);
      events.push(event);
    }
  }
  return { events, state };
}
