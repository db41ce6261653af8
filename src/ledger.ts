import { accountDecider, type AccountCommand, type AccountError, type AccountEvent, type AccountPolicy, type AccountState } from '../domain/account';
import { apiKeyDecider, type ApiKeyCommand, type ApiKeyError, type ApiKeyEvent, type ApiKeyState } from '../domain/api-key';
import type { DomainEvent } from '../domain/events';
import { priceBookDecider, type PriceBookCommand, type PriceBookError, type PriceBookEvent, type PriceBookState } from '../domain/price-book';
import { createGroupCommitHandler, type GroupCommitHandler, type GroupCommitOptions } from './handlers/group-commit';
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
}

export function createLedger(
  store: EventStore<DomainEvent>,
  policy: AccountPolicy,
  options: GroupCommitOptions & { requestLogRetentionDays?: number } = {},
): Ledger {
  const { requestLogRetentionDays, ...groupCommit } = options;
  return {
    store,
    accounts: createGroupCommitHandler(store, accountDecider(policy), groupCommit),
    priceBook: createGroupCommitHandler(store, priceBookDecider, groupCommit),
    apiKeys: createGroupCommitHandler(store, apiKeyDecider, groupCommit),
    requestLog: createRequestLogWriter(store, { ...groupCommit, ...(requestLogRetentionDays ? { retentionDays: requestLogRetentionDays } : {}) }),
  };
}
