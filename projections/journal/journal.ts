import type { DomainEvent } from '../../domain/events';
import type { MicroUsd } from '../../domain/money';
import { accountIdOfStream } from '../balances/balances';

/**
 * The double-entry journal. Every money event of an account becomes postings between named
 * ledger accounts whose amounts sum to exactly zero.
 *
 * Sign convention: a posting's amount is signed, debit > 0, credit < 0. The customer credit
 * accounts are liabilities (credit-normal): what Tollgate owes a customer is the negated sum of
 * their `customer_purchased_credit` and `customer_promo_credit` postings, and equals the
 * domain's `balanceOf(state)`.
 *
 * | event                | debit                                              | credit                        |
 * |----------------------|----------------------------------------------------|-------------------------------|
 * | TopUpCompleted       | payment_clearing                                   | customer_purchased_credit     |
 * | PromoCreditGranted   | promo_expense                                      | customer_promo_credit         |
 * | ReservationSettled   | customer_promo_credit (fromPromo), customer_purchased_credit (fromPurchased) | revenue (actualCost) |
 * | PromoCreditExpired   | customer_promo_credit                              | promo_expense                 |
 * | PromoCreditRevoked   | customer_promo_credit                              | promo_expense                 |
 * | RefundIssued         | customer_purchased_credit                          | refunds_payable               |
 * | PurchasedCreditForfeited | customer_purchased_credit                      | forfeited_credit_income       |
 * | PayoutRecorded       | customer_purchased_credit                          | refunds_payable               |
 * | RefundShortfall      | customer_purchased_credit                          | refunds_payable               |
 * | DisputeClosed (lost) | customer_purchased_credit (debited)                | dispute_losses                |
 *
 * Reservations (placed, released, expired) post nothing: a reservation is a hold on the
 * customer's credit, not a movement of money; only its settlement moves money. Zero-amount lines
 * are left out (a settlement that cost nothing, a promo that lapsed fully spent).
 * Every posting names the customer account the event belongs to, including company-side lines,
 * so revenue and expense can be broken down per customer.
 */

export const LEDGER_ACCOUNTS = [
  'customer_purchased_credit',
  'customer_promo_credit',
  'payment_clearing',
  'revenue',
  'promo_expense',
  'refunds_payable',
  /** purchased credit no longer owed to the customer (termination for abuse): income, not revenue from usage */
  'forfeited_credit_income',
  /**
   * money a cardholder took back through a lost dispute. The customer's credit is debited by it
   * (into debt where they had spent it); what the customer never pays back is the loss.
   */
  'dispute_losses',
] as const;
export type LedgerAccount = (typeof LEDGER_ACCOUNTS)[number];

/** The ledger accounts holding what is owed to the customer (their balance, negated). */
export const CUSTOMER_CREDIT_ACCOUNTS: readonly LedgerAccount[] = ['customer_purchased_credit', 'customer_promo_credit'];

export interface Posting {
  readonly accountId: string;
  readonly ledgerAccount: LedgerAccount;
  /** debit > 0, credit < 0 */
  readonly amount: MicroUsd;
}

/** The postings of one event, in a fixed order (debits first); [] for events that move no money. */
export function postingsOf(streamId: string, event: DomainEvent): Posting[] {
  const accountId = accountIdOfStream(streamId);
  if (accountId === null) return [];
  const lines: [LedgerAccount, MicroUsd][] = [];
  const transfer = (debit: LedgerAccount, credit: LedgerAccount, amount: MicroUsd) => lines.push([debit, amount], [credit, -amount]);
  switch (event.type) {
    case 'TopUpCompleted':
      transfer('payment_clearing', 'customer_purchased_credit', event.data.amount);
      break;
    case 'PromoCreditGranted':
      transfer('promo_expense', 'customer_promo_credit', event.data.amount);
      break;
    case 'ReservationSettled': {
      const fromPromo = event.data.fromPromo.reduce((sum, draw) => sum + draw.amount, 0n);
      lines.push(['customer_promo_credit', fromPromo], ['customer_purchased_credit', event.data.fromPurchased], ['revenue', -event.data.actualCost]);
      break;
    }
    case 'PromoCreditExpired':
    case 'PromoCreditRevoked':
      transfer('customer_promo_credit', 'promo_expense', event.data.amount);
      break;
    case 'RefundIssued':
    case 'RefundShortfall':
    case 'PayoutRecorded':
      transfer('customer_purchased_credit', 'refunds_payable', event.data.amount);
      break;
    case 'PurchasedCreditForfeited':
      transfer('customer_purchased_credit', 'forfeited_credit_income', event.data.amount);
      break;
    case 'DisputeClosed':
      transfer('customer_purchased_credit', 'dispute_losses', event.data.debited);
      break;
    default:
      break;
  }
  return lines.filter(([, amount]) => amount !== 0n).map(([ledgerAccount, amount]) => ({ accountId, ledgerAccount, amount }));
}

export function sumOfPostings(postings: readonly Posting[]): MicroUsd {
  return postings.reduce((sum, p) => sum + p.amount, 0n);
}

/** What the journal says a customer is owed after these postings: the negated customer credit lines. */
export function customerBalanceOf(postings: readonly Posting[], accountId: string): MicroUsd {
  return -postings.filter((p) => p.accountId === accountId && CUSTOMER_CREDIT_ACCOUNTS.includes(p.ledgerAccount)).reduce((sum, p) => sum + p.amount, 0n);
}
