import { accountStreamId, decideAccount, evolveAccount, initialAccountState, type AccountCommand, type AccountPolicy } from '../../../domain/account';
import type { Ledger } from '../../../src/ledger';
import { sampleAccountScript } from '../../../src/finance/sample-history';

/**
 * Writes sample histories for `accounts` accounts through the real ledger (group commit).
 * Each account's script is first played against the decider in memory to learn which commands
 * it proposes (the script reads state to choose); then every command of every account is
 * queued at once, so the group commit fills its batches, and decides them again for real.
 * Returns the number of events written.
 */
export async function writeSampleHistories(
  ledger: Ledger,
  policy: AccountPolicy,
  options: { accounts: number; steps: number; prefix: string; startAt?: string },
): Promise<number> {
  const handled: Promise<number>[] = [];
  for (let i = 0; i < options.accounts; i++) {
    const accountId = `${options.prefix}${String(i).padStart(5, '0')}`;
    const script = sampleAccountScript(accountId, { seed: i + 1, steps: options.steps, startAt: options.startAt ?? '2025-01-01T00:00:00.000Z' });
    const accepted: AccountCommand[] = [];
    let state = initialAccountState();
    let refusedInARow = 0;
    for (let command = script.next(state); command !== null && refusedInARow < 20; command = script.next(state)) {
      const decision = decideAccount(command, state, policy);
      if (!decision.ok) {
        refusedInARow += 1;
        continue;
      }
      refusedInARow = 0;
      accepted.push(command);
      state = decision.events.reduce(evolveAccount, state);
    }
    const stream = accountStreamId(accountId);
    for (const command of accepted) {
      handled.push(
        ledger.accounts.handle(stream, command).then((result) => {
          if (!result.ok) throw new Error(`${command.type} on ${accountId} refused by the ledger: ${result.error.error}`);
          return result.events.length;
        }),
      );
    }
  }
  return (await Promise.all(handled)).reduce((a, b) => a + b, 0);
}
