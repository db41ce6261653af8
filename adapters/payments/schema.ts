import type { Migration } from '../postgres/migrate';

/**
 * Stripe's side of an account, kept beside the ledger:
 * - `stripe_customers`: the account <-> Stripe customer link (one customer per account, made on
 *   the first top-up) and the card saved for off-session charges (auto top-up).
 * - `stripe_webhook_events`: every verified webhook event by id and what came of it, so a replay
 *   of an event already handled is a no-op and an event that credited nothing is on record.
 */
export const paymentsMigration: Migration = {
  id: '0030_stripe_payments',
  sql: `
    CREATE TABLE stripe_customers (
      account_id text PRIMARY KEY,
      customer_id text NOT NULL UNIQUE,
      payment_method_id text,
      created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE stripe_webhook_events (
      event_id text PRIMARY KEY,
      type text NOT NULL,
      account_id text,
      outcome text NOT NULL,
      received_at timestamptz NOT NULL DEFAULT now()
    );
  `,
};
