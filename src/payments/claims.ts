import { randomBytes } from 'node:crypto';
import { accountStreamId, outstandingClaimOf, type AccountError } from '../../domain/account';
import type { Actor, CommandMetadata } from '../../domain/events/metadata';
import type { MicroUsd } from '../../domain/money';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import type { Ledger } from '../ledger';
import { refundCredit, type RefundOutcome } from './refunds';
import { wholeCentsOf } from './amounts';

/**
 * Who may claim a closed account's credit: the seam for the customer's claim route. A closed
 * account's API keys are revoked, so the claimant needs another identity: the owner's or a billing
 * member's session (issue 14, users with passwords and sessions, supplies the implementation).
 * Answers the account and the acting person, or null when the request carries no such authority.
 */
export interface RefundClaimAuthoriser {
  authorise(request: {
    readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  }): Promise<{ readonly accountId: string; readonly actor: Actor } | null>;
}

export interface ClaimOutcome {
  readonly claimId: string;
  /** what this claim asked for (0 when the claim id was already recorded) */
  readonly claimed: MicroUsd;
  /** the card refunds made for it (null when no card could take any, or payments are off) */
  readonly refund: RefundOutcome | null;
  /** claimed in time and still unpaid after the card refunds: an operator pays it out (bank transfer) */
  readonly outstanding: MicroUsd;
}

/**
 * A refund claim after closure (by the customer, or an operator for them), within 360 days of
 * closure. The claim is recorded first (RefundClaimed: from then on the amount is never
 * forfeited, even if paying it takes longer than the period), then paid to the cards it came from
 * as far as they can take it, in whole cents (card refunds draw on the same refundable amount as
 * the claim, so nothing is paid twice). What no card can take (credit bought by bank transfer, a
 * fraction of a cent) stays outstanding for an operator's payout. The same `claimId` records once
 * and its card refunds carry idempotency keys derived from it, so a retry pays nothing twice.
 */
export async function claimRefund(
  deps: { readonly ledger: Ledger; readonly stripe: StripeClient | null },
  input: { readonly accountId: string; readonly amount: MicroUsd | null; readonly metadata: CommandMetadata; readonly claimId?: string },
): Promise<{ ok: true; value: ClaimOutcome } | { ok: false; error: AccountError | { readonly error: 'sub_cent_amount'; readonly amount: MicroUsd } }> {
  const stream = accountStreamId(input.accountId);
  const claimId = input.claimId ?? `cl_${randomBytes(10).toString('hex')}`;
  const claimed = await deps.ledger.accounts.handle(stream, { type: 'ClaimRefund', data: { claimId, amount: input.amount }, metadata: input.metadata });
  if (!claimed.ok) return claimed;
  const asked = claimed.events.reduce((sum, { event }) => sum + (event.type === 'RefundClaimed' ? event.data.amount : 0n), 0n);
  let refund: RefundOutcome | null = null;
  const toCards = wholeCentsOf(outstandingClaimOf(claimed.state));
  if (deps.stripe && toCards > 0n) {
    // What the cards can take, at most the outstanding claim; refundCredit caps at what they can give back.
    const refunded = await refundCredit(
      { ledger: deps.ledger, stripe: deps.stripe },
      { accountId: input.accountId, amount: null, metadata: input.metadata, refundId: `rf_${claimId}`, closedAccount: true, cap: toCards },
    );
    if (refunded.ok && refunded.value.parts.length > 0) refund = refunded.value;
  }
  const { state } = await deps.ledger.accounts.load(stream);
  return { ok: true, value: { claimId, claimed: asked, refund, outstanding: outstandingClaimOf(state) } };
}
