import { Command } from 'commander';
import { contextOf, pathId } from '../context';

/** tollgate credit grant | top-up */
export function registerCredit(program: Command): void {
  const credit = program.command('credit').description('add credit to an account: promotional grants and manual top-ups');

  credit
    .command('grant')
    .description('grant promotional credit: spent before purchased credit, never refundable, expires')
    .argument('<accountId>', 'the account id')
    .requiredOption('--usd <amount>', 'amount in USD, e.g. 5 or 2.50')
    .requiredOption('--expires <instant>', 'expiry, ISO-8601, e.g. 2030-01-31T00:00:00Z')
    .requiredOption('--reason <reason>', 'why it is granted (recorded on the event)')
    .action(async (accountId: string, options: { usd: string; expires: string; reason: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(
        await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/promo-grants`, {
          amount_usd: options.usd,
          expires_at: options.expires,
          reason: options.reason,
        }),
      );
    });

  credit
    .command('top-up')
    .description('record a payment received outside Stripe (bank transfer, invoice); the same reference is credited once')
    .argument('<accountId>', 'the account id')
    .requiredOption('--usd <amount>', 'amount in USD, e.g. 100 or 20.50')
    .requiredOption('--reference <reference>', 'the payment reference (recorded as manual:<reference>)')
    .requiredOption('--reason <reason>', 'why it is recorded by hand')
    .action(async (accountId: string, options: { usd: string; reference: string; reason: string }, command: Command) => {
      const ctx = contextOf(command);
      const answer = await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/top-ups`, {
        amount_usd: options.usd,
        reference: options.reference,
        reason: options.reason,
      });
      ctx.print(answer, answer['applied'] === false ? 'This reference was already applied: nothing was credited.' : undefined);
    });
}
