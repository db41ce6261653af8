import type { Command } from 'commander';
import { fail, withDatabase, write } from './lazy-database-context';

// Loaded when the command runs, not when the CLI starts (`tollgate --help` needs none of them).
const load = {
  progress: () => require('cli-progress') as typeof import('cli-progress'),
  vault: () => require('../../adapters/postgres/personal-data-vault') as typeof import('../../adapters/postgres/personal-data-vault'),
  masterKey: () => require('../master-key') as typeof import('../master-key'),
};

/**
 * `tollgate keys rotate-master --new-key-file F`: re-wraps every account's personal-data key
 * under a new master key, in one transaction (all or nothing), without touching any event.
 * The current master key comes from the usual configuration (and is checked first).
 */
export function registerMasterKeyCommands(program: Command): void {
  const keys = program.commands.find((c) => c.name() === 'keys') ?? program.command('keys').description('API keys');
  keys
    .command('rotate-master')
    .description(
      "re-wrap every account's personal-data key under a new master key (one transaction; events untouched). " +
        'The current key comes from TOLLGATE_MASTER_KEY(_FILE) or the data dir; restart every gateway with the new key afterwards.',
    )
    .requiredOption('--new-key-file <path>', 'a file holding the new master key: 32 bytes, base64 or hex (e.g. `openssl rand -base64 32 > F`)')
    .option('--no-progress', 'no progress bar on stderr')
    .action(async (options: { newKeyFile: string; progress: boolean }) => {
      const { MasterKeyError, rotateMasterKey } = load.vault();
      const { readMasterKeyFile, replaceDataDirMasterKey } = load.masterKey();
      let next;
      try {
        next = readMasterKeyFile(options.newKeyFile, '--new-key-file');
      } catch (error) {
        if (error instanceof MasterKeyError) return fail(error.message);
        throw error;
      }
      await withDatabase(async ({ database, masterKey }) => {
        const current = masterKey.key;
        if (next.id === current.id) return fail(`--new-key-file holds the current master key (${current.id}); nothing to do`);
        const bar = options.progress
          ? new (load.progress().SingleBar)({
              format: 'rotate-master [{bar}] {percentage}% | {value}/{total} account keys | {eta_formatted} left',
              stream: process.stderr,
              hideCursor: true,
            })
          : undefined;
        let started = false;
        let result;
        try {
          result = await rotateMasterKey(database.pool, current, next, (done, total) => {
            if (!started) bar?.start(total, 0);
            started = true;
            bar?.update(done);
          });
        } catch (error) {
          if (error instanceof MasterKeyError) return fail(`${error.message}; nothing was changed`);
          throw error;
        } finally {
          if (started) bar?.stop();
        }
        // The embedded default keeps its key beside the data: it must follow the rotation.
        if (masterKey.source.kind === 'data-dir') replaceDataDirMasterKey(masterKey.source.path, next);
        write(
          `re-wrapped ${result.rewrapped} account key(s) from master key ${current.id} to ${next.id}` +
            (masterKey.source.kind === 'data-dir' ? ` and wrote it to ${masterKey.source.path}` : '') +
            '; restart every gateway with the new key\n',
        );
      });
    });
}
