import type { Pool } from 'pg';
import { accountStreamId } from '../../domain/account';
import type { DomainEvent } from '../../domain/events';
import { formatUsd, type MicroUsd } from '../../domain/money';
import { toEpochMs } from '../../domain/time/instant';
import { postingsOf } from '../../projections/journal/journal';
import type { EventStore } from '../ports/event-store';
import { numberColumn, textColumn, toCsv } from './csv';

/** A period: `from` inclusive, `to` exclusive; either may be open. Instants or dates (UTC). */
export interface Period {
  readonly from?: string | undefined;
  readonly to?: string | undefined;
}

function inPeriod(instant: string, period: Period): boolean {
  const t = toEpochMs(instant);
  return (period.from === undefined || t >= toEpochMs(period.from)) && (period.to === undefined || t < toEpochMs(period.to));
}

/** One money movement on a customer's credit. */
export interface StatementLine {
  readonly occurredAt: string;
  readonly eventId: string;
  readonly eventType: string;
  /** the payment, grant, request or refund the movement belongs to */
  readonly reference: string;
  readonly purchasedChange: MicroUsd;
  readonly promoChange: MicroUsd;
  /** purchased + promo change */
  readonly amount: MicroUsd;
  /** the account's balance (purchased + promo) after this movement */
  readonly balance: MicroUsd;
}

export interface Statement {
  readonly accountId: string;
  readonly openingBalance: MicroUsd;
  readonly closingBalance: MicroUsd;
  readonly lines: readonly StatementLine[];
}

function referenceOf(event: DomainEvent): string {
  const data = event.data as Record<string, unknown>;
  for (const field of ['paymentReference', 'grantId', 'requestId', 'refundId', 'payoutId', 'claimId']) {
    if (typeof data[field] === 'string') return data[field];
  }
  // A forfeiture names why: at termination for abuse, or unclaimed after the claim period.
  if (event.type === 'PurchasedCreditForfeited') return event.data.reason;
  return '';
}

/**
 * Every money movement of an account in the period, with the running balance. Computed from the
 * account's own stream through the journal's mapping (so a statement and the journal can never
 * disagree) and never from a projection that may be behind. Reservations are holds, not
 * movements: they are not on a statement.
 */
export async function statementOf(store: EventStore<DomainEvent>, accountId: string, period: Period = {}): Promise<Statement | null> {
  const streamId = accountStreamId(accountId);
  const { revision, events } = await store.readStream(streamId);
  if (revision === null) return null;
  let balance = 0n;
  let openingBalance = 0n;
  const lines: StatementLine[] = [];
  for (const recorded of events) {
    const postings = postingsOf(streamId, recorded.event);
    // A claim after closure moves no money itself (its refunds and payouts do), but the customer
    // sees on the statement that and when it was made.
    if (postings.length === 0 && recorded.event.type !== 'RefundClaimed') continue;
    let purchasedChange = 0n;
    let promoChange = 0n;
    for (const p of postings) {
      if (p.ledgerAccount === 'customer_purchased_credit') purchasedChange -= p.amount;
      if (p.ledgerAccount === 'customer_promo_credit') promoChange -= p.amount;
    }
    balance += purchasedChange + promoChange;
    const occurredAt = recorded.event.metadata.occurredAt;
    if (period.from !== undefined && toEpochMs(occurredAt) < toEpochMs(period.from)) openingBalance = balance;
    if (!inPeriod(occurredAt, period)) continue;
    lines.push({
      occurredAt,
      eventId: recorded.id,
      eventType: recorded.event.type,
      reference: referenceOf(recorded.event),
      purchasedChange,
      promoChange,
      amount: purchasedChange + promoChange,
      balance,
    });
  }
  const closingBalance = lines.length > 0 ? lines[lines.length - 1]!.balance : openingBalance;
  return { accountId, openingBalance, closingBalance, lines };
}

export interface JournalLine {
  readonly tx: bigint;
  readonly seq: bigint;
  readonly line: number;
  readonly occurredAt: string;
  readonly eventType: string;
  readonly accountId: string;
  readonly ledgerAccount: string;
  /** debit > 0, credit < 0 */
  readonly amount: MicroUsd;
}

/** The journal projection's postings in the period, in log order. */
export async function journalLines(pool: Pool, period: Period = {}): Promise<JournalLine[]> {
  const { rows } = await pool.query<{
    tx: string;
    seq: string;
    line: number;
    occurred_at: Date;
    event_type: string;
    account_id: string;
    ledger_account: string;
    amount: string;
  }>(
    `SELECT tx::text, seq::text, line, occurred_at, event_type, account_id, ledger_account, amount::text FROM journal_postings
      WHERE ($1::timestamptz IS NULL OR occurred_at >= $1) AND ($2::timestamptz IS NULL OR occurred_at < $2)
      ORDER BY tx, seq, line`,
    [period.from ?? null, period.to ?? null],
  );
  return rows.map((r) => ({
    tx: BigInt(r.tx),
    seq: BigInt(r.seq),
    line: r.line,
    occurredAt: r.occurred_at.toISOString(),
    eventType: r.event_type,
    accountId: r.account_id,
    ledgerAccount: r.ledger_account,
    amount: BigInt(r.amount),
  }));
}

export interface UsageLine {
  readonly day: string;
  readonly keyId: string;
  readonly model: string;
  readonly operation: string;
  readonly requests: bigint;
  readonly inputTokens: bigint;
  readonly outputTokens: bigint;
  /** seconds of audio charged, in milliseconds (transcription, translation) */
  readonly audioMilliseconds: bigint;
  /** input characters charged (speech) */
  readonly inputCharacters: bigint;
  readonly cost: MicroUsd;
  readonly errors: bigint;
  /** whole milliseconds, rounded down; null when no request reported a latency */
  readonly averageLatencyMs: number | null;
}

/** An account's usage per day, key, model and operation from the usage projection; days in [from, to). */
export async function usageOf(pool: Pool, accountId: string, period: Period = {}): Promise<UsageLine[]> {
  const { rows } = await pool.query<{
    day: string;
    key_id: string;
    model: string;
    operation: string;
    requests: string;
    input_tokens: string;
    output_tokens: string;
    audio_ms: string;
    input_characters: string;
    cost: string;
    errors: string;
    latency_ms_sum: string;
    latency_count: string;
  }>(
    `SELECT to_char(day, 'YYYY-MM-DD') AS day, key_id, model, operation, requests::text, input_tokens::text, output_tokens::text,
            audio_ms::text, input_characters::text, cost::text, errors::text, latency_ms_sum::text, latency_count::text
       FROM usage_daily
      WHERE account_id = $1 AND ($2::date IS NULL OR day >= $2::date) AND ($3::date IS NULL OR day < $3::date)
      ORDER BY day, key_id, model, operation`,
    [accountId, period.from ? dayOf(period.from) : null, period.to ? dayOf(period.to) : null],
  );
  return rows.map((r) => ({
    day: r.day,
    keyId: r.key_id,
    model: r.model,
    operation: r.operation,
    requests: BigInt(r.requests),
    inputTokens: BigInt(r.input_tokens),
    outputTokens: BigInt(r.output_tokens),
    audioMilliseconds: BigInt(r.audio_ms),
    inputCharacters: BigInt(r.input_characters),
    cost: BigInt(r.cost),
    errors: BigInt(r.errors),
    averageLatencyMs: BigInt(r.latency_count) === 0n ? null : Number(BigInt(r.latency_ms_sum) / BigInt(r.latency_count)),
  }));
}

function dayOf(instant: string): string {
  return new Date(toEpochMs(instant)).toISOString().slice(0, 10);
}

// ---------------------------------------------------------------------------------------------
// CSV (RFC 4180, see ./csv): amounts as exact decimal USD strings in number columns, never
// floats; text cells neutralised so a spreadsheet cannot run them as formulas.

export function statementCsv(statement: Statement): string {
  return toCsv(
    [
      textColumn('occurred_at'),
      textColumn('event_id'),
      textColumn('event_type'),
      textColumn('reference'),
      numberColumn('purchased_change_usd'),
      numberColumn('promo_change_usd'),
      numberColumn('amount_usd'),
      numberColumn('balance_usd'),
    ],
    statement.lines.map((l) => [
      l.occurredAt,
      l.eventId,
      l.eventType,
      l.reference,
      formatUsd(l.purchasedChange),
      formatUsd(l.promoChange),
      formatUsd(l.amount),
      formatUsd(l.balance),
    ]),
  );
}

export function journalCsv(lines: readonly JournalLine[]): string {
  return toCsv(
    [
      numberColumn('log_tx'),
      numberColumn('log_seq'),
      numberColumn('line'),
      textColumn('occurred_at'),
      textColumn('event_type'),
      textColumn('customer_account'),
      textColumn('ledger_account'),
      numberColumn('debit_usd'),
      numberColumn('credit_usd'),
    ],
    lines.map((l) => [
      l.tx.toString(),
      l.seq.toString(),
      String(l.line),
      l.occurredAt,
      l.eventType,
      l.accountId,
      l.ledgerAccount,
      l.amount > 0n ? formatUsd(l.amount) : '',
      l.amount < 0n ? formatUsd(-l.amount) : '',
    ]),
  );
}

/** JSON views: money as decimal USD strings (JSON has no bigint). */
export function statementJson(statement: Statement) {
  return {
    object: 'statement',
    account_id: statement.accountId,
    opening_balance: formatUsd(statement.openingBalance),
    closing_balance: formatUsd(statement.closingBalance),
    data: statement.lines.map((l) => ({
      occurred_at: l.occurredAt,
      event_id: l.eventId,
      type: l.eventType,
      reference: l.reference,
      purchased_change: formatUsd(l.purchasedChange),
      promo_change: formatUsd(l.promoChange),
      amount: formatUsd(l.amount),
      balance: formatUsd(l.balance),
    })),
  };
}
