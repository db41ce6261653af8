import type { Decider } from '../decider/decision';
import type { AccountCommand } from './commands';
import { decideAccount } from './decide';
import type { AccountError } from './errors';
import type { AccountEvent } from './events';
import { evolveAccount } from './evolve';
import { DEFAULT_ACCOUNT_POLICY, type AccountPolicy } from './policy';
import { initialAccountState, type AccountState } from './state';

/** The account decider with its limits bound: what a command handler uses. */
export function accountDecider(policy: AccountPolicy = DEFAULT_ACCOUNT_POLICY): Decider<AccountCommand, AccountState, AccountEvent, AccountError> {
  return {
    decide: (command, state) => decideAccount(command, state, policy),
    evolve: evolveAccount,
    initialState: initialAccountState,
  };
}

/** Stream name for an account: one stream per account. */
export function accountStreamId(accountId: string): string {
  return `account-${accountId}`;
}
