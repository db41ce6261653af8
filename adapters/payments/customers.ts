import type { Pool } from 'pg';
import type { StripeClient } from './stripe-client';

/** The account <-> Stripe customer link (table stripe_customers), and the saved card. */
export class StripeCustomers {
  constructor(
    private readonly pool: Pool,
    private readonly stripe: StripeClient,
  ) {}

  async customerOf(accountId: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ customer_id: string }>('SELECT customer_id FROM stripe_customers WHERE account_id = $1', [accountId]);
    return rows[0]?.customer_id ?? null;
  }

  async accountOf(customerId: string): Promise<string | null> {
    const { rows } = await this.pool.query<{ account_id: string }>('SELECT account_id FROM stripe_customers WHERE customer_id = $1', [customerId]);
    return rows[0]?.account_id ?? null;
  }

  /**
   * The account's customer, made at Stripe on first use. The idempotency key is the account,
   * so two concurrent first top-ups (or a crash before the insert) still make one customer.
   */
  async ensureCustomer(accountId: string): Promise<string> {
    const known = await this.customerOf(accountId);
    if (known !== null) return known;
    const customer = await this.stripe.customers.create({ metadata: { account_id: accountId } }, { idempotencyKey: `tollgate-customer-${accountId}` });
    await this.pool.query('INSERT INTO stripe_customers (account_id, customer_id) VALUES ($1, $2) ON CONFLICT (account_id) DO NOTHING', [
      accountId,
      customer.id,
    ]);
    return (await this.customerOf(accountId))!;
  }

  /** The card saved by the last paid Checkout (setup_future_usage=off_session), for auto top-up. */
  async savedPaymentMethodOf(accountId: string): Promise<{ customerId: string; paymentMethodId: string } | null> {
    const { rows } = await this.pool.query<{ customer_id: string; payment_method_id: string | null }>(
      'SELECT customer_id, payment_method_id FROM stripe_customers WHERE account_id = $1',
      [accountId],
    );
    const row = rows[0];
    return row && row.payment_method_id !== null ? { customerId: row.customer_id, paymentMethodId: row.payment_method_id } : null;
  }

  async rememberPaymentMethod(customerId: string, paymentMethodId: string): Promise<void> {
    await this.pool.query('UPDATE stripe_customers SET payment_method_id = $2 WHERE customer_id = $1', [customerId, paymentMethodId]);
  }
}
