import { Command, InvalidArgumentError } from 'commander';
import type { JsonObject } from '../admin-client';
import { contextOf, pathId, table } from '../context';

const SUSPENSION_REASONS = ['negative_balance', 'auto_top_up_failed', 'payment_dispute', 'terms_violation', 'customer_request'];

/** tollgate accounts create | list | show | suspend | reinstate | claim-refund | forfeit-unclaimed */
export function registerAccounts(program: Command): void {
  const accounts = program.command('accounts').description('open, inspect, suspend and reinstate customer accounts');

  accounts
    .command('create')
    .description('open an account; the name and email are personal data, stored encrypted per account')
    .requiredOption('--name <displayName>', "the account holder's display name")
    .requiredOption('--email <email>', "the account holder's email address")
    .option('--promo-usd <amount>', 'promotional credit to grant at opening, in USD (e.g. 5 or 2.50)')
    .option('--promo-expires <instant>', 'when that promo credit expires (ISO-8601, e.g. 2030-01-31T00:00:00Z); required with --promo-usd')
    .addHelpText(
      'after',
      '\nExample:\n  tollgate accounts create --name "Ada Lovelace" --email ada@example.org --promo-usd 5 --promo-expires 2030-01-01T00:00:00Z',
    )
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
    .command('list')
    .description("list accounts, newest first, as a table (or the API's JSON with --json): id, status, name, email, balance and available credit (USD)")
    .option('--search <text>', 'only accounts whose id, name or email contains this (case-insensitive)')
    .option('--limit <n>', 'accounts per page, 1-200', pageSize, 50)
    .option('--starting-after <accountId>', 'the page after this account (the last id of the previous page)')
    .option('--all', 'every page, not just the first')
    .addHelpText(
      'after',
      '\nExamples:\n  tollgate accounts list --search example.org\n  tollgate accounts list --limit 20 --starting-after acct_3f2a...\n  tollgate accounts list --all --json',
    )
    .action(async (options: { search?: string; limit: number; startingAfter?: string; all?: boolean }, command: Command) => {
      const ctx = contextOf(command);
      const rows: AccountRow[] = [];
      let after = options.startingAfter;
      let hasMore: boolean;
      do {
        const query = new URLSearchParams({ limit: String(options.limit) });
        if (options.search !== undefined) query.set('q', options.search);
        if (after !== undefined) query.set('starting_after', after);
        const page = await ctx.admin.get<{ data: AccountRow[]; has_more: boolean }>(`/admin/accounts?${query}`);
        rows.push(...page.data);
        hasMore = page.has_more;
        after = page.data.at(-1)?.account_id;
      } while (options.all && hasMore && after !== undefined);
      if (ctx.json) {
        ctx.out(`${JSON.stringify({ object: 'list', data: rows, has_more: hasMore }, null, 2)}\n`);
        return;
      }
      ctx.out(
        table(
          ['ACCOUNT', 'STATUS', 'NAME', 'EMAIL', 'BALANCE_USD', 'AVAILABLE_USD'],
          rows.map((a) => [a.account_id, a.status, a.display_name ?? '-', a.email ?? '-', a.balance_usd, a.available_usd]),
        ),
      );
      // On stderr, so that stdout stays the table alone.
      if (hasMore && after !== undefined) process.stderr.write(`more accounts follow: tollgate accounts list --starting-after ${after}\n`);
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

  accounts
    .command('claim-refund')
    .description(
      "claim a closed account's remaining credit for its customer (within 360 days of closure): it is refunded to the cards it came from as far as they take it; what they cannot take is shown as outstanding, to pay with a payout. Claimed credit is never forfeited",
    )
    .argument('<accountId>', 'the account id')
    .requiredOption('--reason <reason>', 'why (recorded in the audit log), e.g. "customer asked by email, ticket 1234"')
    .option('--amount-usd <amount>', 'claim less than all that remains, in USD')
    .action(async (accountId: string, options: { reason: string; amountUsd?: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(
        await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/refund-claims`, {
          reason: options.reason,
          ...(options.amountUsd !== undefined ? { amount_usd: options.amountUsd } : {}),
        }),
      );
    });

  accounts
    .command('forfeit-unclaimed')
    .description(
      "forfeit a closed account's unclaimed credit once 360 days have passed since closure (the gateway does this by itself every day; this does it now for one account). Refused before the period ends",
    )
    .argument('<accountId>', 'the account id')
    .requiredOption('--reason <reason>', 'why now rather than at the next scheduled run')
    .action(async (accountId: string, options: { reason: string }, command: Command) => {
      const ctx = contextOf(command);
      ctx.print(await ctx.admin.post(`/admin/accounts/${pathId(accountId)}/forfeit-unclaimed`, { reason: options.reason }));
    });
}

/** The fields of an account in GET /admin/accounts that the table shows. */
interface AccountRow extends JsonObject {
  readonly account_id: string;
  readonly status: string;
  readonly display_name: string | null;
  readonly email: string | null;
  readonly balance_usd: string;
  readonly available_usd: string;
}

function pageSize(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new InvalidArgumentError('expected an integer from 1 to 200');
  return n;
}
