import { accountStreamId, balanceOf, maximumBalanceOf, type AccountError, type AccountPolicy } from '../../domain/account';
import type { MicroUsd } from '../../domain/money';
import type { StripeCustomers } from '../../adapters/payments/customers';
import type { StripeClient } from '../../adapters/payments/stripe-client';
import type { Ledger } from '../ledger';
import { centsOf } from './amounts';

export interface CheckoutStarted {
  readonly checkoutSessionId: string;
  readonly url: string;
  readonly customerId: string;
  readonly amount: MicroUsd;
}

export type StartTopUpRefusal = AccountError | { readonly error: 'sub_cent_amount'; readonly amount: MicroUsd };

/**
 * Starts a top-up: checks the amount against the policy now (the decider checks again when
 * the webhook completes it), then a Checkout Session for that amount, net of tax (Stripe Tax
 * adds VAT on top), saving the card for off-session use. Nothing reaches the ledger here:
 * the credit comes only from the webhook.
 */
export async function startTopUp(
  deps: { readonly ledger: Ledger; readonly stripe: StripeClient; readonly customers: StripeCustomers; readonly policy: AccountPolicy },
  input: { readonly accountId: string; readonly amount: MicroUsd; readonly successUrl: string; readonly cancelUrl: string; readonly automaticTax: boolean },
): Promise<{ ok: true; value: CheckoutStarted } | { ok: false; error: StartTopUpRefusal }> {
  const { state } = await deps.ledger.accounts.load(accountStreamId(input.accountId));
  if (state.status === 'not_opened') return { ok: false, error: { error: 'account_not_open' } };
  if (state.status === 'closed') return { ok: false, error: { error: 'account_closed' } };
  const cents = centsOf(input.amount);
  if (cents === null) return { ok: false, error: { error: 'sub_cent_amount', amount: input.amount } };
  if (input.amount < deps.policy.minimumTopUp)
    return { ok: false, error: { error: 'top_up_below_minimum', amount: input.amount, minimum: deps.policy.minimumTopUp } };
  const balance = balanceOf(state);
  const maximum = maximumBalanceOf(state, deps.policy);
  if (balance + input.amount > maximum) return { ok: false, error: { error: 'balance_limit_exceeded', balance, amount: input.amount, maximum } };
  const customerId = await deps.customers.ensureCustomer(input.accountId);
  const metadata = { account_id: input.accountId, credit_cents: String(cents) };
  const session = await deps.stripe.checkout.sessions.create({
    mode: 'payment',
    customer: customerId,
    client_reference_id: input.accountId,
    line_items: [
      {
        quantity: 1,
        price_data: { currency: 'usd', unit_amount: cents, tax_behavior: 'exclusive', product_data: { name: 'Tollgate prepaid credit' } },
      },
    ],
    // Stripe Tax adds VAT on top; a business gives its VAT id at checkout (saved on the customer),
    // and with a valid EU id of another country the reverse charge applies.
    ...(input.automaticTax
      ? { automatic_tax: { enabled: true }, tax_id_collection: { enabled: true }, customer_update: { address: 'auto' as const, name: 'auto' as const } }
      : {}),
    // Every payment is invoiced: Stripe makes the invoice document when the session is paid.
    invoice_creation: { enabled: true, invoice_data: { description: 'Tollgate prepaid credit (net of tax)', metadata } },
    payment_intent_data: { setup_future_usage: 'off_session', metadata },
    metadata,
    success_url: input.successUrl,
    cancel_url: input.cancelUrl,
  });
  if (!session.url) throw new Error(`checkout session ${session.id} came back without a url`);
  return { ok: true, value: { checkoutSessionId: session.id, url: session.url, customerId, amount: input.amount } };
}
