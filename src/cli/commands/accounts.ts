import { Command } from 'commander';
import { contextOf, pathId } from '../context';

const SUSPENSION_REASONS = ['negative_balance', 'auto_top_up_failed', 'payment_dispute', 'terms_violation', 'customer_request'];

/** tollgate accounts create | show | suspend | reinstate */
export function registerAccounts(program: Command): void {
  const accounts = program.command('accounts').description('open, inspect, suspend and reinstate customer accounts');

  accounts
    .command('create')
    .description('open an account; the name and email are personal data, stored encrypted per account')
    .requiredOption('--name <displayName>', "the account holder's display name")
    .requiredOption('--email <email>', "the account holder's email address")
    .option('--promo-usd <amount>', 'promotional credit to grant at opening, in USD (e.g. 5 or 2.50)')
    .option('--promo-expires <instant>', 'when that promo credit expires (ISO-8601, e.g. 2030-01-31T00:00:00Z); required with --promo-usd')
    .addHelpText('after', '\nExample:\n  tollgate accounts create --name "Ada Lovelace" --email ada@example.org --promo-usd 5 --promo-expires 2030-01-01T00:00:00Z')
    .action(async (options: { name: string; email: string; promoUsd?: string; promoExpires?: string }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.admin.post('/admin/accounts', {
        display_name: options.name,
        email: options.email,
        ...(options.promoUsd !== undefined ? { promo_credit_usd: options.promoUsd } : {}),
        ...(options.promoExpires !== undefined ? { promo_expires_at: options.promoExpires } : {}),
      });
      ctx.print(answer);
    });

  accounts
    .command('show')
    .description('show an account: status, balance breakdown (USD), promo grants, open reservations, name and email')
    .argument('<accountId>', 'the account id (acct_...)')
    .action(async (accountId: string, _options: object, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.get(`/admin/accounts/${pathId(accountId)}`));
    });

  accounts
    .command('suspend')
    .description('suspend an account: it reserves nothing, so its keys are refused inference, until reinstated')
    .argument('<accountId>', 'the account id')
    .requiredOption('--reason <reason>', `why: one of ${SUSPENSION_REASONS.join(', ')}`)
    .action(async (accountId: string, options: { reason: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/suspend`, { reason: options.reason }));
    });

  accounts
    .command('reinstate')
    .description('reinstate a suspended account')
    .argument('<accountId>', 'the account id')
    .action(async (accountId: string, _options: object, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/reinstate`));
    });
}
