import { Command } from 'commander';
import { commaList, contextOf, pathId } from '../context';

/** tollgate keys issue | revoke | list */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('issue, list and revoke customer API keys');

  keys
    .command('issue')
    .description('issue an API key for an account; the key is printed once and never stored in the clear')
    .argument('<accountId>', 'the account the key belongs to')
    .option('--name <name>', 'a name to recognise the key by', 'key issued by an admin')
    .option('--scopes <scopes>', 'comma-separated: inference, account_read, account_write (default: all three)', commaList)
    .action(async (accountId: string, options: { name: string; scopes?: string[] }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/keys`, {
        name: options.name,
        ...(options.scopes ? { scopes: options.scopes } : {}),
      });
      ctx.print(answer, 'The key is shown only this once: store it now.');
    });

  keys
    .command('list')
    .description("list an account's keys (id, prefix, name, scopes, status)")
    .argument('<accountId>', 'the account id')
    .action(async (accountId: string, _options: object, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.get(`/admin/accounts/${pathId(accountId)}/keys`));
    });

  keys
    .command('revoke')
    .description('revoke a key at once, on every gateway instance')
    .argument('<keyId>', 'the key id (the part after tg_ in its prefix)')
    .option('--reason <reason>', 'why it is revoked (recorded on the event)')
    .action(async (keyId: string, options: { reason?: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.delete(`/admin/keys/${pathId(keyId)}`, options.reason ? { reason: options.reason } : {}));
    });
}
