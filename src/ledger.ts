import { accountDecider, type AccountCommand, type AccountError, type AccountEvent, type AccountPolicy, type AccountState } from '../domain/account';
import { apiKeyDecider, type ApiKeyCommand, type ApiKeyError, type ApiKeyEvent, type ApiKeyState } from '../domain/api-key';
import type { DomainEvent } from '../domain/events';
import { priceBookDecider, type PriceBookCommand, type PriceBookError, type PriceBookEvent, type PriceBookState } from '../domain/price-book';
import { createCommitGroup, createGroupCommitHandler, type GroupCommitHandler, type GroupCommitOptions } from './handlers/group-commit';
import type { EventStore } from './ports/event-store';
import { createRequestLogWriter, type RequestLogWriter } from './request-log';

/** The command side of Tollgate: one group-commit handler per decider, over one event store. */
export interface Ledger {
  readonly store: EventStore<DomainEvent>;
  readonly accounts: GroupCommitHandler<AccountCommand, AccountState, AccountEvent, AccountError>;
  readonly priceBook: GroupCommitHandler<PriceBookCommand, PriceBookState, PriceBookEvent, PriceBookError>;
  readonly apiKeys: GroupCommitHandler<ApiKeyCommand, ApiKeyState, ApiKeyEvent, ApiKeyError>;
  /** the request log: per-request metadata, apart from the wallet, kept for the retention days */
  readonly requestLog: RequestLogWriter;
  /**
   * Someone waits for what may be deferred (settlements, request-log entries: a read of the
   * account right after its requests, the shutdown's drain): nothing is deferred while `waiting` runs.
   */
  hurry<T>(waiting: Promise<T>): Promise<T>;
}

export function createLedger(
  store: EventStore<DomainEvent>,
  policy: AccountPolicy,
  options: Omit<GroupCommitOptions, 'group'> & { requestLogRetentionDays?: number; requestLogDeferMs?: number } = {},
): Ledger {
  const { requestLogRetentionDays, requestLogDeferMs, ...handlerOptions } = options;
  // One commit group: a command nobody waits on (a settlement, a request-log entry) rides with
  // the next one somebody waits on (a reservation), whichever handler decides it.
  const group = createCommitGroup(store);
  const groupCommit = { ...handlerOptions, group };
  return {
    store,
    accounts: createGroupCommitHandler(store, accountDecider(policy), groupCommit),
    priceBook: createGroupCommitHandler(store, priceBookDecider, groupCommit),
    apiKeys: createGroupCommitHandler(store, apiKeyDecider, groupCommit),
    requestLog: createRequestLogWriter(store, {
      ...groupCommit,
      deferMs: requestLogDeferMs,
      ...(requestLogRetentionDays ? { retentionDays: requestLogRetentionDays } : {}),
    }),
    hurry: (waiting) => group.hurry(waiting),
  };
}
