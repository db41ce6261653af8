import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { registerAccounts } from './commands/accounts';
import { registerAdmins } from './commands/admins';
import { registerCredit } from './commands/credit';
import { registerKeys } from './commands/keys';
import { registerMasterKeyCommands } from './master-key';
import { registerModels } from './commands/models';
import { registerPrices } from './commands/prices';
import { registerComplianceCommands } from './compliance';
import { registerFinanceCommands } from './finance';
import { DEFAULT_URL } from './context';

/**
 * Each group of subcommands lives in its own file under commands/ and registers itself here;
 * further groups (finance: replay, verify, statement, ...) are added to this list.
 */
export const commandGroups: readonly ((program: Command) => void)[] = [
  registerAccounts,
  registerKeys,
  registerCredit,
  registerModels,
  registerPrices,
  registerFinanceCommands,
  registerComplianceCommands,
  registerMasterKeyCommands,
  registerAdmins,
];

export function createProgram(): Command {
  const program = new Command('tollgate')
    .description(
      "Administer Tollgate. accounts, keys, credit, models and prices go through a running gateway's admin API (--url, --admin-key); " +
        'replay, verify, balance, statement, journal, audit, retention and export read the database directly (DATABASE_URL, or the embedded default).',
    )
    .addOption(new Option('--url <url>', 'base URL of the gateway').env('TOLLGATE_URL').default(DEFAULT_URL))
    .addOption(new Option('--admin-key <key>', 'admin API key').env('TOLLGATE_ADMIN_KEY'))
    .option('--json', 'print the raw JSON answer')
    .version(packageVersion(), '-V, --version', "print tollgate's version");
  for (const register of commandGroups) register(program);
  return program;
}

/**
 * The version in the package's package.json: two levels above this file in the sources
 * (src/cli/), three in the compiled code (dist/src/cli/).
 */
export function packageVersion(): string {
  for (const up of ['../..', '../../..']) {
    const file = join(__dirname, up, 'package.json');
    if (!existsSync(file)) continue;
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
    if (manifest.name === 'tollgate' && typeof manifest.version === 'string') return manifest.version;
  }
  throw new Error("tollgate's package.json was not found above " + __dirname);
}
