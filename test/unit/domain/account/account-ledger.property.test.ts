import fc from 'fast-check';
import type { AccountCommand } from '../../../../domain/account/commands';
import { decideAccount } from '../../../../domain/account/decide';
import type { AccountEvent } from '../../../../domain/account/events';
import { evolveAccount } from '../../../../domain/account/evolve';
import type { AccountPolicy } from '../../../../domain/account/policy';
import { availableOf, balanceOf, initialAccountState, type AccountState } from '../../../../domain/account/state';
import { domainEventCodec } from '../../../../domain/events/codec';
import { usd } from '../../../../domain/money/money';
import { addMs, toEpochMs } from '../../../../domain/time/instant';
import { PRICE_V1, T0, cmd, opened } from './fixtures';

/**
 * Model-based: random sequences of ledger commands run against the decider and, side by side,
 * against a deliberately naive reference model of the money. After every step the two must
 * agree, and the ledger's invariants must hold.
 */

const POLICY: AccountPolicy = { minimumTopUp: usd('10'), maximumBalance: usd('100'), reservationTtlMs: 10 * 60_000 };
const MINUTE = 60_000;

type Action =
  | { kind: 'topUp'; ref: number; amount: bigint }
  | { kind: 'grant'; id: number; amount: bigint; minutes: number }
  | { kind: 'expirePromo'; id: number }
  | { kind: 'place'; req: number; amount: bigint }
  | { kind: 'settle'; req: number; input: bigint; output: bigint }
  | { kind: 'release'; req: number }
  | { kind: 'expireReservation'; req: number }
  | { kind: 'refund'; id: number; amount: bigint }
  | { kind: 'wait'; minutes: number };

const micro = (min: string, max: string) => fc.bigInt(usd(min), usd(max));
const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('topUp' as const), ref: fc.nat(5), amount: micro('5', '40') }),
  fc.record({ kind: fc.constant('grant' as const), id: fc.nat(3), amount: micro('0.01', '5'), minutes: fc.integer({ min: 1, max: 60 }) }),
  fc.record({ kind: fc.constant('expirePromo' as const), id: fc.nat(3) }),
  fc.record({ kind: fc.constant('place' as const), req: fc.nat(6), amount: fc.oneof(micro('0', '8'), micro('0', '0.5')) }),
  fc.record({
    kind: fc.constant('settle' as const),
    req: fc.nat(6),
    input: fc.oneof(fc.bigInt(0n, 3_000_000n), fc.bigInt(0n, 40_000_000n)),
    output: fc.bigInt(0n, 2_000_000n),
  }),
  fc.record({ kind: fc.constant('release' as const), req: fc.nat(6) }),
  fc.record({ kind: fc.constant('expireReservation' as const), req: fc.nat(6) }),
  fc.record({ kind: fc.constant('refund' as const), id: fc.nat(3), amount: micro('0.000001', '30') }),
  fc.record({ kind: fc.constant('wait' as const), minutes: fc.integer({ min: 1, max: 15 }) }),
);

interface ModelGrant {
  remaining: bigint;
  expiresAtMs: number;
  expired: boolean;
}
interface Model {
  nowMs: number;
  purchased: bigint;
  grants: Map<string, ModelGrant>;
  open: Map<string, { amount: bigint; expiresAtMs: number }>;
  ended: Set<string>;
  payments: Set<string>;
  refunds: Set<string>;
}

function toCommand(action: Action, now: string): AccountCommand | null {
  switch (action.kind) {
    case 'topUp':
      return cmd('CompleteTopUp', { paymentReference: `pay-${action.ref}`, amount: action.amount }, now);
    case 'grant':
      return cmd('GrantPromoCredit', { grantId: `g${action.id}`, amount: action.amount, expiresAt: addMs(now, action.minutes * MINUTE), reason: 'promo' }, now);
    case 'expirePromo':
      return cmd('ExpirePromoCredit', { grantId: `g${action.id}` }, now);
    case 'place':
      return cmd('PlaceReservation', { requestId: `r${action.req}`, keyId: 'k', model: 'm', operation: 'chat', amount: action.amount, priceVersion: 1 }, now);
    case 'settle':
      return cmd(
        'SettleReservation',
        {
          requestId: `r${action.req}`,
          usage: { inputTokens: action.input, outputTokens: action.output, estimated: false },
          price: PRICE_V1,
          outcome: 'completed',
        },
        now,
      );
    case 'release':
      return cmd('ReleaseReservation', { requestId: `r${action.req}`, reason: 'gateway_error' }, now);
    case 'expireReservation':
      return cmd('ExpireReservation', { requestId: `r${action.req}` }, now);
    case 'refund':
      return cmd('IssueRefund', { refundId: `refund-${action.id}`, amount: action.amount, paymentReferences: ['pay-0'] }, now);
    case 'wait':
      return null;
  }
}

const reservedOf = (m: Model) => [...m.open.values()].reduce((s, r) => s + r.amount, 0n);
const spendable = (m: Model) =>
  [...m.grants.entries()]
    .filter(([, g]) => !g.expired && g.remaining > 0n && g.expiresAtMs > m.nowMs)
    .sort(([a, ga], [b, gb]) => ga.expiresAtMs - gb.expiresAtMs || (a < b ? -1 : 1));
const modelAvailable = (m: Model) => m.purchased + spendable(m).reduce((s, [, g]) => s + g.remaining, 0n) - reservedOf(m);

/** What the runs explored: asserted at the end so a generator that drifts cannot pass vacuously. */
const seen = {
  shortfall: 0,
  promoDraw: 0,
  promoThenPurchased: 0,
  refund: 0,
  refundRefused: 0,
  duplicateTopUp: 0,
  expiredReservation: 0,
  endTwiceRefused: 0,
  promoExpired: 0,
  declined: 0,
};

/** Runs one action; checks it against the model; returns the new state and the events. */
function step(state: AccountState, model: Model, action: Action): { state: AccountState; events: readonly AccountEvent[] } {
  if (action.kind === 'wait') {
    model.nowMs += action.minutes * MINUTE;
    return { state, events: [] };
  }
  const now = new Date(model.nowMs).toISOString();
  const command = toCommand(action, now)!;
  const availableBefore = availableOf(state);
  const decision = decideAccount(command, state, POLICY);
  const events = decision.ok ? decision.events : [];
  const next = events.reduce(evolveAccount, state);
  const availableAfter = availableOf(next);

  switch (action.kind) {
    case 'topUp': {
      const ref = `pay-${action.ref}`;
      if (model.payments.has(ref)) {
        expect(decision).toEqual({ ok: true, events: [] }); // never credits twice
        seen.duplicateTopUp++;
      } else if (decision.ok) {
        model.payments.add(ref);
        model.purchased += action.amount;
      }
      break;
    }
    case 'grant':
      if (decision.ok) model.grants.set(`g${action.id}`, { remaining: action.amount, expiresAtMs: model.nowMs + action.minutes * MINUTE, expired: false });
      else expect(['promo_grant_already_exists', 'balance_limit_exceeded']).toContain(decision.error.error);
      break;
    case 'expirePromo': {
      const g = model.grants.get(`g${action.id}`);
      const due = g !== undefined && !g.expired && g.expiresAtMs <= model.nowMs;
      expect(decision.ok).toBe(due);
      if (due) {
        expect(events[0]).toMatchObject({ type: 'PromoCreditExpired', data: { amount: g.remaining } });
        g.remaining = 0n;
        g.expired = true;
        seen.promoExpired++;
      }
      break;
    }
    case 'place': {
      const id = `r${action.req}`;
      const fits = !model.open.has(id) && model.purchased >= 0n && modelAvailable(model) >= action.amount;
      expect(decision.ok).toBe(fits);
      if (!fits && !model.open.has(id)) seen.declined++;
      if (fits) {
        model.open.set(id, { amount: action.amount, expiresAtMs: model.nowMs + POLICY.reservationTtlMs });
        model.ended.delete(id); // request ids are reused by the generator once ended
      }
      break;
    }
    case 'settle': {
      const id = `r${action.req}`;
      // No reservation ends twice: only an open one can be settled.
      expect(decision.ok).toBe(model.open.has(id));
      if (decision.ok) {
        const cost = (action.input * PRICE_V1.inputPerMillion + action.output * PRICE_V1.outputPerMillion + 999_999n) / 1_000_000n;
        // Promo first, soonest expiry first: the model draws grant by grant.
        let left = cost;
        const draws: { grantId: string; amount: bigint }[] = [];
        for (const [grantId, g] of spendable(model)) {
          if (left === 0n) break;
          const take = g.remaining < left ? g.remaining : left;
          draws.push({ grantId, amount: take });
          g.remaining -= take;
          left -= take;
        }
        model.purchased -= left;
        if (draws.length > 0) seen.promoDraw++;
        if (draws.length > 0 && left > 0n) seen.promoThenPurchased++;
        if (model.purchased < 0n) seen.shortfall++;
        expect(events[0]).toMatchObject({ type: 'ReservationSettled', data: { actualCost: cost, fromPromo: draws, fromPurchased: left } });
        model.open.delete(id);
        model.ended.add(id);
      }
      break;
    }
    case 'release':
    case 'expireReservation': {
      const id = `r${action.req}`;
      const r = model.open.get(id);
      const may = r !== undefined && (action.kind === 'release' || r.expiresAtMs <= model.nowMs);
      expect(decision.ok).toBe(may);
      if (!decision.ok && (r === undefined || model.ended.has(id))) expect(decision.error.error).toBe('reservation_not_found');
      if (!decision.ok && model.ended.has(id)) seen.endTwiceRefused++;
      if (may && action.kind === 'expireReservation') seen.expiredReservation++;
      if (may) {
        model.open.delete(id);
        model.ended.add(id);
      }
      break;
    }
    case 'refund': {
      const id = `refund-${action.id}`;
      const refundable = model.purchased - reservedOf(model);
      if (model.refunds.has(id)) expect(decision).toEqual({ ok: true, events: [] });
      else if (!model.payments.has('pay-0')) expect(decision.ok).toBe(false);
      else {
        // Refunds never exceed refundable credit, and are refused only when they would.
        expect(decision.ok).toBe(action.amount <= refundable);
        if (decision.ok) seen.refund++;
        else seen.refundRefused++;
        if (decision.ok) {
          model.refunds.add(id);
          model.purchased -= action.amount;
        }
      }
      break;
    }
  }

  // Only a settlement shortfall (or promo lapsing under open holds) can push available down below zero.
  if (action.kind !== 'settle' && action.kind !== 'expirePromo' && availableAfter < 0n) {
    expect(availableAfter).toBeGreaterThanOrEqual(availableBefore);
  }
  // The decider's folded balance equals the model's.
  expect(next.purchased).toBe(model.purchased);
  expect(next.reserved).toBe(reservedOf(model));
  expect(new Set(next.openReservations.keys())).toEqual(new Set(model.open.keys()));
  for (const [grantId, g] of model.grants) expect(next.promoGrants.get(grantId)?.remaining).toBe(g.remaining);
  return { state: next, events };
}

describe('account ledger (model-based)', () => {
  it('agrees with a reference model of the balance and keeps the ledger invariants', () => {
    fc.assert(
      fc.property(fc.array(actionArb, { minLength: 5, maxLength: 80, size: 'max' }), (actions) => {
        const model: Model = {
          nowMs: toEpochMs(T0),
          purchased: 0n,
          grants: new Map(),
          open: new Map(),
          ended: new Set(),
          payments: new Set(),
          refunds: new Set(),
        };
        let state = evolveAccount(initialAccountState(), opened);
        const log: AccountEvent[] = [opened];
        for (const action of actions) {
          const r = step(state, model, action);
          state = r.state;
          log.push(...r.events);
        }
        // The balance is the fold of the events, whether folded step by step or from scratch,
        // and from events that went through the codec (as they do through the store).
        const replayed = log.map((e) => domainEventCodec.decode(domainEventCodec.encode(e)) as AccountEvent).reduce(evolveAccount, initialAccountState());
        expect(replayed).toEqual(state);
        expect(balanceOf(replayed)).toBe(balanceOf(state));
        // Every reservation ends exactly once: placed = ended + still open.
        const placed = log.filter((e) => e.type === 'ReservationPlaced').length;
        const ended = log.filter((e) => e.type === 'ReservationSettled' || e.type === 'ReservationReleased' || e.type === 'ReservationExpired').length;
        expect(placed).toBe(ended + state.openReservations.size);
      }),
      { numRuns: 100 },
    );
    for (const [what, count] of Object.entries(seen)) expect([what, count > 0]).toEqual([what, true]);
  });
});
