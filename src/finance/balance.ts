import { accountStreamId, evolveAccount, initialAccountState, promoBalanceOf, type AccountEvent } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import { toEpochMs, type IsoInstant } from '../../domain/time/instant';
import type { EventStore } from '../ports/event-store';

export interface BalanceAsOf {
  readonly accountId: string;
  readonly asOf: IsoInstant;
  readonly purchased: MicroUsd;
  /** promo granted, less spent, still unexpired at `asOf` (lapsed promo counts for nothing, recorded or not) */
  readonly promo: MicroUsd;
  readonly reserved: MicroUsd;
  readonly balance: MicroUsd;
  readonly available: MicroUsd;
  readonly negative: boolean;
  /** events of the account that occurred at or before `asOf` */
  readonly events: number;
}

/**
 * The balance of an account as it stood at `asOf`, from its events: the ones that occurred at or
 * before that instant, folded with the domain's evolve, and the domain's balance rules applied
 * at that instant. null when the account has no events.
 */
export async function balanceAsOf(store: EventStore<DomainEvent>, accountId: string, asOf: IsoInstant): Promise<BalanceAsOf | null> {
  const at = toEpochMs(asOf);
  const { revision, events } = await store.readStream(accountStreamId(accountId));
  if (revision === null) return null;
  let state = initialAccountState();
  let counted = 0;
  for (const recorded of events) {
    const event = recorded.event as AccountEvent;
    // Appends are in time order per stream, but compare every event: the log order is the truth.
    if (toEpochMs(event.metadata.occurredAt) > at) continue;
    state = evolveAccount(state, event);
    counted += 1;
  }
  const instant = new Date(at).toISOString();
  const promo = promoBalanceOf(state, instant);
  const balance = state.purchased + promo;
  return {
    accountId,
    asOf: instant,
    purchased: state.purchased,
    promo,
    reserved: state.reserved,
    balance,
    available: balance - state.reserved,
    negative: state.purchased < 0n,
    events: counted,
  };
}
