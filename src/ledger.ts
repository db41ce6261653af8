import { accountDecider, type AccountCommand, type AccountError, type AccountEvent, type AccountPolicy, type AccountState } from '../domain/account';
import { apiKeyDecider, type ApiKeyCommand, type ApiKeyError, type ApiKeyEvent, type ApiKeyState } from '../domain/api-key';
import type { DomainEvent } from '../domain/events';
import { priceBookDecider, type PriceBookCommand, type PriceBookError, type PriceBookEvent, type PriceBookState } from '../domain/price-book';
import { createGroupCommitHandler, type GroupCommitHandler, type GroupCommitOptions } from './handlers/group-commit';
import type { EventStore } from './ports/event-store';

/** The command side of Tollgate: one group-commit handler per decider, over one event store. */
export interface Ledger {
  readonly store: EventStore<DomainEvent>;
  readonly accounts: GroupCommitHandler<AccountCommand, AccountState, AccountEvent, AccountError>;
  readonly priceBook: GroupCommitHandler<PriceBookCommand, PriceBookState, PriceBookEvent, PriceBookError>;
  readonly apiKeys: GroupCommitHandler<ApiKeyCommand, ApiKeyState, ApiKeyEvent, ApiKeyError>;
}

export function createLedger(store: EventStore<DomainEvent>, policy: AccountPolicy, options: GroupCommitOptions = {}): Ledger {
  return {
    store,
    accounts: createGroupCommitHandler(store, accountDecider(policy), options),
    priceBook: createGroupCommitHandler(store, priceBookDecider, options),
    apiKeys: createGroupCommitHandler(store, apiKeyDecider, options),
  };
}
