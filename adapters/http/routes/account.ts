import { actorOfKey, type VerifiedKey } from '../../../src/api-keys';
import type { RequestHandler, Router } from 'express';
import { z } from 'zod';
import {
  accountStreamId,
  availableOf,
  balanceOf,
  keySpendInWindow,
  promoBalanceOf,
  spendWindowResetsAt,
  type AccountEvent,
  type AccountState,
  claimableUntilOf,
  claimPeriodOver,
  outstandingClaimOf,
  unclaimedOf,
} from '../../../domain/account';
import {
  apiKeyScopeSchema,
  apiKeyStreamId,
  isApiKeyExpired,
  MAX_ALLOWED_MODELS,
  MICRO_USD_PER_CENT,
  spendLimitPeriodSchema,
  type ApiKeyScope,
  type ApiKeyState,
  type KeyCreator,
  type LimitChanges,
  type SpendLimitPeriod,
} from '../../../domain/api-key';
import type { Rejection } from '../../../domain/decider/decision';
import type { DomainEvent } from '../../../domain/events';
import type { CommandMetadata } from '../../../domain/events/metadata';
import { formatUsd, parseUsd } from '../../../domain/money';
import { isBefore } from '../../../domain/time';
import { PRICE_BOOK_STREAM_ID } from '../../../domain/price-book';
import { requestLogStreamId, type RequestLogEntry } from '../../../domain/request-log';
import { commandMetadata } from '../../../src/command-metadata';
import type { RouteMount } from '../../../src/gateway';
import type { PersonalDataVault } from '../../../src/ports/personal-data-vault';
import { authenticate, keyOf } from '../auth';
import { ApiError, invalidRequest } from '../openai/errors';
import { formatParam } from '../openai/requests';
import { annotateRequest } from '../observability/request-log';
import { requestIdOf } from '../observability/request-id';

/**
 * The customer API: an account-scoped key reads its own account (balance, keys, recent
 * requests' metadata) and manages its own keys. The account is always the key's own; an id in
 * a path that belongs to another account answers 404, as if it did not exist.
 *
 * Also home to what the admin API shares with it: input parsing, refusal mapping, account views.
 */

export type GatewayParts = Parameters<RouteMount>[1];

// ---------------------------------------------------------------------------------------------
// Input

/** Parses a body or query with zod; the first issue becomes a 400 that names the parameter. */
export function parseInput<T>(schema: z.ZodType<T>, input: unknown): T {
  const given = input ?? {};
  const result = schema.safeParse(given);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const param = formatParam(issue.path);
  const quoted = param === null ? 'the request body' : `'${param}'`;
  if (isAbsent(given, issue.path) || (issue.code === 'custom' && issue.params?.['missing'] === true)) {
    return fail(invalidRequest(`Missing required parameter: ${quoted}.`, param, 'missing_required_parameter'));
  }
  if (issue.code === 'unrecognized_keys') {
    return fail(invalidRequest(`Unrecognized parameter in ${quoted}.`, param, 'invalid_value'));
  }
  // The messages are the schema's own words (this file's), never the input.
  return fail(invalidRequest(`Invalid value for ${quoted}: ${issue.message}.`, param, issue.code === 'invalid_type' ? 'invalid_type' : 'invalid_value'));
}

function isAbsent(input: unknown, path: readonly PropertyKey[]): boolean {
  if (path.length === 0) return false;
  let parent: unknown = input;
  for (const key of path.slice(0, -1)) {
    if (typeof parent !== 'object' || parent === null) return false;
    parent = (parent as Record<PropertyKey, unknown>)[key];
  }
  return (
    typeof parent === 'object' && parent !== null && !Array.isArray(parent) && (parent as Record<PropertyKey, unknown>)[path[path.length - 1]!] === undefined
  );
}

function fail(error: ApiError): never {
  throw error;
}

/** A USD amount as a decimal string ("10.50"), never a JSON number; > 0. */
export const positiveUsdSchema = z.string({ error: 'expected a USD amount as a decimal string, such as "10.50"' }).transform((s, ctx) => {
  const parsed = parseUsd(s);
  if (!parsed.ok || parsed.value <= 0n) {
    ctx.addIssue({ code: 'custom', message: 'expected a positive USD amount as a decimal string with at most 6 decimals, such as "10.50"' });
    return z.NEVER;
  }
  return parsed.value;
});

/** A price: USD per million tokens as a decimal string; >= 0. */
export const priceUsdSchema = z.string({ error: 'expected a USD amount as a decimal string, such as "0.50"' }).transform((s, ctx) => {
  const parsed = parseUsd(s);
  if (!parsed.ok || parsed.value < 0n) {
    ctx.addIssue({ code: 'custom', message: 'expected a USD amount of 0 or more as a decimal string with at most 6 decimals, such as "0.50"' });
    return z.NEVER;
  }
  return parsed.value;
});

export const instantSchema = z.iso
  .datetime({ offset: true, error: 'expected an ISO-8601 instant such as 2030-01-31T00:00:00Z' })
  .transform((s) => new Date(s).toISOString());

/** Free text an operator gives (a reason, a key name): bounded, never empty. */
export const shortTextSchema = z.string({ error: 'expected a string' }).trim().min(1, 'must not be empty').max(200, 'at most 200 characters');

/** Scopes a customer key may hold: everything but admin. */
export const customerScopesSchema = z
  .array(apiKeyScopeSchema.exclude(['admin'], { error: 'expected scopes among inference, account_read, account_write' }), {
    error: 'expected an array of scopes',
  })
  .min(1, 'at least one scope')
  .transform((scopes) => [...new Set(scopes)] as ApiKeyScope[]);

export const DEFAULT_CUSTOMER_SCOPES: readonly ApiKeyScope[] = ['inference', 'account_read', 'account_write'];

// Ids in paths: anything else is not an id we could have issued, so it is simply not found.
const idPattern = /^[A-Za-z0-9_.:-]{1,128}$/;

export function isId(value: string): boolean {
  return idPattern.test(value);
}

/** authenticate(), then the key's account and prefix go on the request's log line. */
export function authenticated(keys: GatewayParts['keys'], scope: ApiKeyScope): RequestHandler {
  const check = authenticate(keys, scope);
  // authenticate() rejects (express 5 answers the error) or calls this continuation.
  return (req, res, next) =>
    check(req, res, (error?: unknown) => {
      if (error !== undefined) return next(error);
      const key = keyOf(res);
      annotateRequest(res, { accountId: key.accountId, keyPrefix: key.prefix });
      next();
    });
}

// ---------------------------------------------------------------------------------------------
// Refusals

export function accountNotFound(): ApiError {
  return new ApiError(404, 'invalid_request_error', 'account_not_found', null, 'No such account.');
}

export function keyNotFound(): ApiError {
  return new ApiError(404, 'invalid_request_error', 'api_key_not_found', null, 'No such API key.');
}

const NOT_FOUND: Record<string, () => ApiError> = {
  account_not_open: accountNotFound,
  api_key_not_found: keyNotFound,
  unknown_model: () => new ApiError(404, 'invalid_request_error', 'model_not_found', 'model', 'No such model in the price book.'),
  promo_grant_not_found: () => new ApiError(404, 'invalid_request_error', 'promo_grant_not_found', null, 'No such promo grant on this account.'),
};

// Fields of decider errors that are amounts of micro-USD, shown as USD.
const MONEY_FIELDS = new Set([
  'amount',
  'minimum',
  'maximum',
  'balance',
  'available',
  'needed',
  'refundable',
  'requested',
  'threshold',
  'unspent',
  'default',
  'inputPerMillion',
  'outputPerMillion',
]);

/**
 * A decider's refusal as an HTTP answer: 404 when the thing does not exist, otherwise 409 with
 * the decider's error name as `code`. The message is built from the error's own fields
 * (names, amounts, instants), which never hold personal data or content.
 */
export function refused<E extends Rejection>(error: E): ApiError {
  const notFound = NOT_FOUND[error.error];
  if (notFound) return notFound();
  const details = Object.entries(error)
    .filter(([field]) => field !== 'error')
    .map(([field, value]) => `${field} ${typeof value === 'bigint' && MONEY_FIELDS.has(field) ? `USD ${formatUsd(value)}` : String(value)}`);
  const because = details.length > 0 ? ` (${details.join(', ')})` : '';
  return new ApiError(409, 'invalid_request_error', error.error, null, `Refused: ${error.error.replaceAll('_', ' ')}${because}.`);
}

// ---------------------------------------------------------------------------------------------
// Views

export interface AccountView {
  readonly account_id: string;
  readonly status: AccountState['status'];
  readonly suspension_reason: string | null;
  readonly suspension_reasons: readonly string[];
  /** admin view only; null once the personal data has been erased */
  readonly display_name?: string | null;
  readonly email?: string | null;
  readonly balance_usd: string;
  readonly available_usd: string;
  readonly purchased_usd: string;
  readonly promo_usd: string;
  readonly reserved_usd: string;
  readonly promo_grants: readonly {
    grant_id: string;
    granted_usd: string;
    remaining_usd: string;
    expires_at: string;
    expired: boolean;
  }[];
  readonly disputes: readonly { dispute_id: string; payment_intent: string; amount_usd: string; status: string }[];
  readonly disputed_usd: string;
  readonly open_reservations: readonly { request_id: string; model: string; operation: string; amount_usd: string; expires_at: string }[];
  readonly totals: { topped_up_usd: string; refunded_usd: string; usage_cost_usd: string; input_tokens: string; output_tokens: string };
  /** a closed account's refund claim: null while the account is open */
  readonly closure: ClosureView | null;
}

export interface ClosureView {
  readonly closed_at: string;
  /** the last instant of the 360 days in which the remaining credit can be claimed */
  readonly claimable_until: string;
  readonly claim_period_over: boolean;
  /** what can still be claimed now (0 once the period is over or everything is claimed) */
  readonly claimable_usd: string;
  /** claimed in time and not yet paid back (a payout by support) */
  readonly claimed_outstanding_usd: string;
}

export function closureView(state: AccountState, now: string): ClosureView | null {
  const until = claimableUntilOf(state);
  if (state.closedAt === null || until === null) return null;
  const over = claimPeriodOver(state, now);
  return {
    closed_at: state.closedAt,
    claimable_until: until,
    claim_period_over: over,
    claimable_usd: formatUsd(over ? 0n : unclaimedOf(state)),
    claimed_outstanding_usd: formatUsd(outstandingClaimOf(state)),
  };
}

export function balanceView(state: AccountState, now: string) {
  return {
    balance_usd: formatUsd(balanceOf(state, now)),
    available_usd: formatUsd(availableOf(state, now)),
    purchased_usd: formatUsd(state.purchased),
    promo_usd: formatUsd(promoBalanceOf(state, now)),
    reserved_usd: formatUsd(state.reserved),
  };
}

/** One row of the admin account search. */
export interface AccountSummary extends ReturnType<typeof balanceView> {
  readonly account_id: string;
  readonly status: AccountState['status'];
  readonly suspension_reason: string | null;
  readonly display_name: string | null;
  readonly email: string | null;
}

export type KeyCreatorView =
  | { readonly kind: 'operator' }
  | { readonly kind: 'key'; readonly key_id: string }
  | { readonly kind: 'user'; readonly user_id: string };

/** A spend limit and where the key stands in its current window. */
export interface SpendLimitView {
  readonly period: SpendLimitPeriod;
  readonly amount_usd: string;
  /** charged by settled requests decided in the current window */
  readonly spent_usd: string;
  /** held by the key's requests in flight decided in the current window */
  readonly held_usd: string;
  readonly remaining_usd: string;
  /** when the window starts again; null for a total limit */
  readonly resets_at: string | null;
}

export interface KeyView {
  readonly key_id: string;
  readonly prefix: string;
  readonly name: string;
  readonly scopes: readonly ApiKeyScope[];
  readonly status: 'active' | 'revoked';
  readonly created_by: KeyCreatorView | null;
  readonly spend_limit: SpendLimitView | null;
  readonly expires_at: string | null;
  readonly expired: boolean;
  readonly allowed_models: readonly string[] | null;
}

function creatorView(creator: KeyCreator | null): KeyCreatorView | null {
  if (creator === null) return null;
  if (creator.kind === 'key') return { kind: 'key', key_id: creator.keyId };
  if (creator.kind === 'user') return { kind: 'user', user_id: creator.userId };
  return { kind: 'operator' };
}

/** A key as the APIs show it; `account` (its account's state) gives the spend in the limit's window. */
export function keyView(state: Exclude<ApiKeyState, { status: 'not_issued' }>, account: AccountState | null, now: string): KeyView {
  const { spendLimit, expiresAt, allowedModels } = state.limits;
  let spend: SpendLimitView | null = null;
  if (spendLimit !== null) {
    const { spent, held } = account === null ? { spent: 0n, held: 0n } : keySpendInWindow(account, state.keyId, spendLimit.period, now);
    const remaining = spendLimit.amount - spent - held;
    spend = {
      period: spendLimit.period,
      amount_usd: formatUsd(spendLimit.amount),
      spent_usd: formatUsd(spent),
      held_usd: formatUsd(held),
      remaining_usd: formatUsd(remaining > 0n ? remaining : 0n),
      resets_at: spendWindowResetsAt(spendLimit.period, now),
    };
  }
  return {
    key_id: state.keyId,
    prefix: state.prefix,
    name: state.name,
    scopes: state.scopes,
    status: state.status,
    created_by: creatorView(state.createdBy),
    spend_limit: spend,
    expires_at: expiresAt,
    expired: isApiKeyExpired(state.limits, now),
    allowed_models: allowedModels === null ? null : [...allowedModels],
  };
}

export interface RequestView {
  readonly request_id: string;
  readonly status: 'settled' | 'released' | 'expired';
  readonly at: string;
  readonly key_id: string | null;
  readonly model: string | null;
  readonly operation: string | null;
  /** settled: the charged outcome; released: why nothing was charged */
  readonly outcome: string | null;
  readonly reserved_usd: string;
  readonly cost_usd: string;
  readonly usage: { input_tokens: string; output_tokens: string; audio_seconds?: string; input_characters?: string; estimated: boolean } | null;
  readonly upstream: string | null;
  readonly http_status: number | null;
  readonly stream: boolean | null;
  readonly latency_ms: number | null;
  readonly time_to_first_token_ms: number | null;
}

/**
 * Reads accounts for both APIs. Reads wait for this process's settlements already under way
 * (answers that have gone out), so a client sees the request it just made charged; they never
 * wait for a request still being served: its reservation is committed and shows as held.
 */
export class AccountReader {
  readonly vault: PersonalDataVault;

  constructor(private readonly gateway: GatewayParts) {
    this.vault = gateway.vault;
  }

  async state(accountId: string): Promise<{ state: AccountState; revision: bigint | null } | null> {
    if (!isId(accountId)) return null;
    await this.gateway.settlements.answersSettled(accountId);
    const loaded = await this.gateway.ledger.accounts.load(accountStreamId(accountId));
    return loaded.state.status === 'not_opened' ? null : loaded;
  }

  /** The account as the admin API shows it; the customer API leaves out the personal data. */
  async view(accountId: string, options: { personalData: boolean }): Promise<AccountView | null> {
    const loaded = await this.state(accountId);
    if (!loaded) return null;
    const { state } = loaded;
    const now = new Date().toISOString();
    const personal = options.personalData ? await this.personalData(accountId, state) : {};
    return {
      account_id: accountId,
      status: state.status,
      suspension_reason: state.suspensionReason,
      suspension_reasons: [...state.suspensionReasons],
      ...personal,
      ...balanceView(state, now),
      promo_grants: [...state.promoGrants.values()].map((g) => ({
        grant_id: g.grantId,
        granted_usd: formatUsd(g.granted),
        remaining_usd: formatUsd(g.expired || !isBefore(now, g.expiresAt) ? 0n : g.remaining),
        expires_at: g.expiresAt,
        expired: g.expired || !isBefore(now, g.expiresAt),
      })),
      // Card disputes: an open one holds its amount (not available, not refundable); a lost one was debited.
      disputes: [...state.disputes].map(([disputeId, d]) => ({
        dispute_id: disputeId,
        payment_intent: d.paymentReference,
        amount_usd: formatUsd(d.amount),
        status: d.status,
      })),
      disputed_usd: formatUsd(state.disputeHeld),
      open_reservations: [...state.openReservations.values()].map((r) => ({
        request_id: r.requestId,
        model: r.model,
        operation: r.operation,
        amount_usd: formatUsd(r.amount),
        expires_at: r.expiresAt,
      })),
      totals: {
        topped_up_usd: formatUsd(state.totalToppedUp),
        refunded_usd: formatUsd(state.totalRefunded),
        usage_cost_usd: formatUsd(state.totalUsage.cost),
        input_tokens: state.totalUsage.inputTokens.toString(),
        output_tokens: state.totalUsage.outputTokens.toString(),
      },
      closure: closureView(state, now),
    };
  }

  /**
   * Decrypted from AccountOpened and any later PersonalDataCorrected; null once erased (the
   * vault's key is gone). The account directory finds those events (see src/ports/account-directory.ts).
   */
  private async personalData(accountId: string, state: AccountState): Promise<{ display_name: string | null; email: string | null }> {
    if (state.personalDataErased) return { display_name: null, email: null };
    let displayName: string | null = null;
    let email: string | null = null;
    const apply = (data: unknown) => {
      const fields = personalFieldsSchema.parse(data);
      displayName = fields.displayNameCiphertext ?? displayName;
      email = fields.emailCiphertext ?? email;
    };
    for (const record of await this.gateway.accountDirectory.personalDataRecords(accountId)) apply(record);
    return {
      display_name: displayName === null ? null : await this.vault.decrypt(accountId, displayName),
      email: email === null ? null : await this.vault.decrypt(accountId, email),
    };
  }

  /** Ids of every key ever issued to the account (there is no keys-per-account projection yet). */
  async keyIdsOf(accountId: string): Promise<string[]> {
    return await this.gateway.accountDirectory.keyIdsOf(accountId);
  }

  /**
   * Accounts for the admin search, newest first: those whose id contains `query`, or whose name
   * or email does (case-insensitive). Names and emails are encrypted per account, so matching
   * them decrypts each account's in turn: fine for thousands of accounts; a plaintext search
   * index would outlive erasure, which crypto-shredding exists to prevent.
   * `startingAfter` (an account id from a previous page) pages on: the accounts after it in that
   * order; a page is followed by another when `hasMore`.
   */
  async searchAccounts(query: string | undefined, limit: number, startingAfter?: string): Promise<{ accounts: AccountSummary[]; hasMore: boolean }> {
    const needle = query?.toLowerCase();
    const found: AccountSummary[] = [];
    let ids = await this.accountIds();
    if (startingAfter !== undefined) {
      const at = ids.indexOf(startingAfter);
      ids = at < 0 ? [] : ids.slice(at + 1);
    }
    for (const accountId of ids) {
      if (found.length > limit) break;
      const loaded = await this.state(accountId);
      if (!loaded) continue;
      const personal = await this.personalData(accountId, loaded.state);
      const matches =
        needle === undefined ||
        accountId.toLowerCase().includes(needle) ||
        (personal.display_name?.toLowerCase().includes(needle) ?? false) ||
        (personal.email?.toLowerCase().includes(needle) ?? false);
      if (!matches) continue;
      const now = new Date().toISOString();
      found.push({
        account_id: accountId,
        status: loaded.state.status,
        suspension_reason: loaded.state.suspensionReason,
        ...personal,
        ...balanceView(loaded.state, now),
      });
    }
    // One more than the page was looked for: it says whether another page follows.
    return { accounts: found.slice(0, limit), hasMore: found.length > limit };
  }

  /** Every opened account's id, newest first. */
  private async accountIds(): Promise<string[]> {
    return await this.gateway.accountDirectory.accountIdsNewestFirst();
  }

  async keysOf(accountId: string): Promise<KeyView[]> {
    const keys: KeyView[] = [];
    const account = (await this.state(accountId))?.state ?? null;
    const now = new Date().toISOString();
    for (const keyId of await this.keyIdsOf(accountId)) {
      const { state } = await this.gateway.ledger.apiKeys.load(apiKeyStreamId(keyId));
      if (state.status !== 'not_issued' && state.accountId === accountId) keys.push(keyView(state, account, now));
    }
    return keys;
  }

  /** One key's view with its spend (the key must exist). */
  async keyViewOf(state: Exclude<ApiKeyState, { status: 'not_issued' }>): Promise<KeyView> {
    const account = (await this.state(state.accountId))?.state ?? null;
    return keyView(state, account, new Date().toISOString());
  }

  /** The key, if it exists and belongs to the account; otherwise null (the caller answers 404). */
  async keyOfAccount(accountId: string, keyId: string): Promise<Exclude<ApiKeyState, { status: 'not_issued' }> | null> {
    if (!isId(keyId)) return null;
    const { state } = await this.gateway.ledger.apiKeys.load(apiKeyStreamId(keyId));
    return state.status !== 'not_issued' && state.accountId === accountId ? state : null;
  }

  /**
   * The account's most recent ended requests, newest first, read backwards from the end of its
   * own stream in pages (a request is two events, placed then ended). Metadata only.
   */
  async recentRequests(accountId: string, limit: number): Promise<RequestView[] | null> {
    const loaded = await this.state(accountId);
    if (!loaded) return null;
    const stream = accountStreamId(accountId);
    const placed = new Map<string, { keyId: string; model: string; operation: string }>();
    const ended: { event: AccountEvent; recordedAt: Date }[] = [];
    const pageSize = BigInt(Math.max(100, limit * 3));
    let end = loaded.revision ?? -1n;
    while (end >= 0n && ended.length < limit) {
      const from = end - pageSize + 1n > 0n ? end - pageSize + 1n : 0n;
      const { events } = await this.gateway.store.readStream(stream, { fromRevision: from, maxCount: Number(end - from + 1n) });
      for (let i = events.length - 1; i >= 0; i--) {
        const event = events[i]!.event as DomainEvent as AccountEvent;
        if (event.type === 'ReservationPlaced') placed.set(event.data.requestId, event.data);
        else if ((event.type === 'ReservationSettled' || event.type === 'ReservationReleased' || event.type === 'ReservationExpired') && ended.length < limit) {
          ended.push({ event, recordedAt: events[i]!.recordedAt });
        }
      }
      end = from - 1n;
    }
    const observed = await this.requestLogEntries(
      accountId,
      ended.map(({ event }) => event),
    );
    return ended.map(({ event }) => requestView(event, placed, observed));
  }

  /**
   * What the request log still holds of these requests (its entries expire after the retention
   * days; the wallet events keep only the money): one read per day the requests ended on.
   */
  private async requestLogEntries(accountId: string, events: readonly AccountEvent[]): Promise<Map<string, RequestLogEntry>> {
    const days = new Set(events.map((event) => new Date(event.metadata.occurredAt).toISOString().slice(0, 10)));
    const entries = new Map<string, RequestLogEntry>();
    for (const day of days) {
      const { events: logged } = await this.gateway.store.readStream(requestLogStreamId(accountId, day));
      for (const { event } of logged) if (event.type === 'RequestLogged') entries.set(event.data.requestId, event.data);
    }
    return entries;
  }
}

function requestView(
  event: AccountEvent,
  placed: ReadonlyMap<string, { keyId: string; model: string; operation: string }>,
  log: ReadonlyMap<string, RequestLogEntry>,
): RequestView {
  const none = { upstream: null, http_status: null, stream: null, latency_ms: null, time_to_first_token_ms: null };
  const observed = (requestId: string) => {
    const entry = log.get(requestId);
    return entry
      ? {
          upstream: entry.upstream,
          http_status: entry.httpStatus,
          stream: entry.stream,
          latency_ms: entry.latencyMs,
          time_to_first_token_ms: entry.timeToFirstTokenMs,
        }
      : none;
  };
  const at = event.metadata.occurredAt;
  switch (event.type) {
    case 'ReservationSettled': {
      const d = event.data;
      return {
        request_id: d.requestId,
        status: 'settled',
        at,
        key_id: d.keyId,
        model: d.model,
        operation: d.operation,
        outcome: d.outcome,
        reserved_usd: formatUsd(d.reservedAmount),
        cost_usd: formatUsd(d.actualCost),
        usage: {
          input_tokens: d.usage.inputTokens.toString(),
          output_tokens: d.usage.outputTokens.toString(),
          ...(d.usage.audioMilliseconds === undefined ? {} : { audio_seconds: audioSeconds(d.usage.audioMilliseconds) }),
          ...(d.usage.inputCharacters === undefined ? {} : { input_characters: d.usage.inputCharacters.toString() }),
          estimated: d.usage.estimated,
        },
        ...observed(d.requestId),
      };
    }
    case 'ReservationReleased':
    case 'ReservationExpired': {
      const d = event.data;
      const origin = placed.get(d.requestId);
      return {
        request_id: d.requestId,
        status: event.type === 'ReservationReleased' ? 'released' : 'expired',
        at,
        key_id: origin?.keyId ?? null,
        model: origin?.model ?? null,
        operation: origin?.operation ?? null,
        outcome: event.type === 'ReservationReleased' ? event.data.reason : null,
        reserved_usd: formatUsd(d.amount),
        cost_usd: formatUsd(0n),
        usage: null,
        ...(event.type === 'ReservationReleased' ? observed(d.requestId) : none),
      };
    }
    default:
      throw new Error(`not an ended reservation: ${event.type}`);
  }
}

const personalFieldsSchema = z.object({
  displayNameCiphertext: z.string().nullable().optional(),
  emailCiphertext: z.string().nullable().optional(),
});

// ---------------------------------------------------------------------------------------------
// Keys, shared by both APIs

export async function issueKey(
  gateway: GatewayParts,
  reader: AccountReader,
  input: { accountId: string; name: string; scopes: readonly ApiKeyScope[]; metadata: CommandMetadata; createdBy?: KeyCreator; limits?: LimitChanges },
): Promise<KeyView & { key: string }> {
  const loaded = await reader.state(input.accountId);
  if (!loaded) throw accountNotFound();
  if (loaded.state.status === 'closed') throw refused({ error: 'account_closed' });
  if (input.limits?.allowedModels) await checkModelsKnown(gateway, input.limits.allowedModels);
  const issued = await gateway.keys.issue(input);
  if (!issued.ok) throw refusedLimits(issued.error);
  const { state } = await gateway.ledger.apiKeys.load(apiKeyStreamId(issued.key.keyId));
  if (state.status === 'not_issued') throw keyNotFound();
  return { ...keyView(state, loaded.state, new Date().toISOString()), key: issued.key.secret };
}

/** An allowlist names only models the price book knows (a typo would silently allow nothing). */
export async function checkModelsKnown(gateway: GatewayParts, models: readonly string[]): Promise<void> {
  const { state: book } = await gateway.ledger.priceBook.load(PRICE_BOOK_STREAM_ID);
  const index = models.findIndex((m) => !book.models.has(m));
  if (index >= 0) {
    throw invalidRequest(
      `Invalid value for 'allowed_models[${index}]': no such model in the price book (see GET /v1/models).`,
      `allowed_models[${index}]`,
      'invalid_value',
    );
  }
}

/** A key decider's refusal; those of limits are 400s naming the parameter. */
export function refusedLimits(error: { readonly error: string }): ApiError {
  switch (error.error) {
    case 'spend_limit_negative':
      return invalidRequest("Invalid value for 'spend_limit.amount_usd': must not be negative.", 'spend_limit.amount_usd', 'invalid_value');
    case 'spend_limit_not_whole_cents':
      return invalidRequest('Invalid value for \'spend_limit.amount_usd\': must be whole cents, such as "25.50".', 'spend_limit.amount_usd', 'invalid_value');
    case 'expiry_not_in_future':
      return invalidRequest("Invalid value for 'expires_at': must be in the future.", 'expires_at', 'invalid_value');
    case 'allowed_models_invalid':
      return invalidRequest(
        `Invalid value for 'allowed_models': 1 to ${MAX_ALLOWED_MODELS} distinct model ids (null allows every model).`,
        'allowed_models',
        'invalid_value',
      );
    case 'no_limit_given':
      return invalidRequest('Name at least one of spend_limit, expires_at, allowed_models (null clears one).', null, 'missing_required_parameter');
    default:
      return refused(error);
  }
}

/**
 * Closing an account revokes every key it has: called by each handler that closes one, right
 * after AccountClosed is recorded. The closure stands whatever happens here; a revocation that
 * fails is logged, and the key is unusable anyway because authentication refuses every key of a
 * closed account (src/api-keys.ts). Returns the keys revoked and those whose revocation failed.
 */
export async function revokeKeysOfClosedAccount(
  gateway: GatewayParts,
  reader: AccountReader,
  accountId: string,
  metadata: CommandMetadata,
): Promise<{ revoked: string[]; failed: string[] }> {
  const revoked: string[] = [];
  const failed: string[] = [];
  let keyIds: string[];
  try {
    keyIds = await reader.keyIdsOf(accountId);
  } catch (error) {
    gateway.log.error({ accountId, err: error }, 'account closed but its keys could not be listed for revocation; authentication refuses them');
    return { revoked, failed };
  }
  for (const keyId of keyIds) {
    try {
      const { state } = await gateway.ledger.apiKeys.load(apiKeyStreamId(keyId));
      if (state.status !== 'active' || state.accountId !== accountId) continue;
      const result = await gateway.keys.revoke(keyId, 'account_closed', metadata);
      if (result.ok) revoked.push(keyId);
      else failed.push(keyId);
    } catch (error) {
      gateway.log.error({ accountId, keyId, err: error }, 'account closed but a key revocation failed; authentication refuses the key');
      failed.push(keyId);
    }
  }
  return { revoked, failed };
}

// ---------------------------------------------------------------------------------------------
// Routes

/** A spend limit: whole cents, at least 0 (0 stops the key spending), at most USD 10,000,000. */
export const spendLimitAmountSchema = z.string({ error: 'expected a USD amount as a decimal string, such as "25.00"' }).transform((s, ctx) => {
  const parsed = parseUsd(s);
  if (!parsed.ok) {
    ctx.addIssue({ code: 'custom', message: 'expected a USD amount as a decimal string, such as "25.00"' });
    return z.NEVER;
  }
  if (parsed.value < 0n) {
    ctx.addIssue({ code: 'custom', message: 'must not be negative' });
    return z.NEVER;
  }
  if (parsed.value % MICRO_USD_PER_CENT !== 0n) {
    ctx.addIssue({ code: 'custom', message: 'must be whole cents, such as "25.50"' });
    return z.NEVER;
  }
  if (parsed.value > 10_000_000n * 1_000_000n) {
    ctx.addIssue({ code: 'custom', message: 'at most "10000000.00"' });
    return z.NEVER;
  }
  return parsed.value;
});

export const spendLimitInputSchema = z.strictObject({
  period: spendLimitPeriodSchema.meta({ description: "day and month are UTC calendar days and months; total is the key's whole life" }),
  amount_usd: spendLimitAmountSchema,
});

const modelIdSchema = z.string({ error: 'expected a model id' }).min(1, 'must not be empty').max(200, 'at most 200 characters');

/** The limit fields, each optional (unchanged) or null (cleared). */
export const keyLimitFields = {
  spend_limit: spendLimitInputSchema.nullable().optional(),
  expires_at: instantSchema.nullable().optional(),
  allowed_models: z
    .array(modelIdSchema, { error: 'expected an array of model ids, or null' })
    .min(1, 'at least one model (null allows every model)')
    .max(MAX_ALLOWED_MODELS, `at most ${MAX_ALLOWED_MODELS} models`)
    .refine((models) => new Set(models).size === models.length, 'each model at most once')
    .nullable()
    .optional(),
};
export const keyLimitsSchema = z.strictObject(keyLimitFields);

/** The domain's limit changes from parsed input (absent stays absent, null stays null). */
export function limitChangesOf(input: z.output<typeof keyLimitsSchema>): LimitChanges {
  return {
    ...(input.spend_limit === undefined
      ? {}
      : { spendLimit: input.spend_limit === null ? null : { period: input.spend_limit.period, amount: input.spend_limit.amount_usd } }),
    ...(input.expires_at === undefined ? {} : { expiresAt: input.expires_at }),
    ...(input.allowed_models === undefined ? {} : { allowedModels: input.allowed_models }),
  };
}

export const newKeySchema = z.object({ name: shortTextSchema, scopes: customerScopesSchema.optional(), ...keyLimitFields });
export const renameKeySchema = z.strictObject({ name: shortTextSchema });
export const requestsQuerySchema = z.object({
  limit: z.coerce.number({ error: 'expected an integer' }).int('expected an integer').min(1, 'at least 1').max(500, 'at most 500').default(50),
});

/** GET /v1/account, GET|POST /v1/account/keys, PATCH|DELETE /v1/account/keys/:keyId, GET /v1/account/requests. */
export const mountAccountRoutes: RouteMount = (router: Router, gateway) => {
  const reader = new AccountReader(gateway);
  const read = authenticated(gateway.keys, 'account_read');
  const write = authenticated(gateway.keys, 'account_write');
  const metadataOf = (key: VerifiedKey, correlationId: string): CommandMetadata => commandMetadata(actorOfKey(key), correlationId);

  router.get('/v1/account', read, async (_req, res) => {
    const view = await reader.view(keyOf(res).accountId, { personalData: false });
    if (!view) throw accountNotFound();
    res.json(view);
  });

  router.get('/v1/account/keys', read, async (_req, res) => {
    res.json({ object: 'list', data: await reader.keysOf(keyOf(res).accountId) });
  });

  router.post('/v1/account/keys', write, async (req, res) => {
    const key = keyOf(res);
    const body = parseInput(newKeySchema, req.body);
    const issued = await issueKey(gateway, reader, {
      accountId: key.accountId,
      name: body.name,
      scopes: body.scopes ?? DEFAULT_CUSTOMER_SCOPES,
      metadata: metadataOf(key, requestIdOf(res)),
      createdBy: key.userId !== undefined ? { kind: 'user', userId: key.userId } : { kind: 'key', keyId: key.keyId },
      limits: limitChangesOf(body),
    });
    res.status(201).json(issued);
  });

  router.patch('/v1/account/keys/:keyId', write, async (req, res) => {
    const key = keyOf(res);
    const keyId = String(req.params['keyId']);
    const { name } = parseInput(renameKeySchema, req.body);
    const state = await reader.keyOfAccount(key.accountId, keyId);
    if (!state) throw keyNotFound();
    const renamed = await gateway.ledger.apiKeys.handle(apiKeyStreamId(keyId), {
      type: 'RenameApiKey',
      data: { name },
      metadata: metadataOf(key, requestIdOf(res)),
    });
    if (!renamed.ok) throw refused(renamed.error);
    if (renamed.state.status === 'not_issued') throw keyNotFound();
    res.json(await reader.keyViewOf(renamed.state));
  });

  router.delete('/v1/account/keys/:keyId', write, async (req, res) => {
    const key = keyOf(res);
    const keyId = String(req.params['keyId']);
    // Another account's key is answered exactly like a key that does not exist.
    if (!(await reader.keyOfAccount(key.accountId, keyId))) throw keyNotFound();
    const revoked = await gateway.keys.revoke(keyId, 'revoked by the account holder', metadataOf(key, requestIdOf(res)));
    if (!revoked.ok) throw refused(revoked.error);
    res.json({ key_id: keyId, status: 'revoked' });
  });

  router.get('/v1/account/requests', read, async (req, res) => {
    const { limit } = parseInput(requestsQuerySchema, req.query);
    const requests = await reader.recentRequests(keyOf(res).accountId, limit);
    if (!requests) throw accountNotFound();
    res.json({ object: 'list', data: requests });
  });
};

/** Milliseconds of audio as exact decimal seconds: 1686n -> "1.686". */
function audioSeconds(ms: bigint): string {
  return `${ms / 1_000n}.${(ms % 1_000n).toString().padStart(3, '0')}`;
}
