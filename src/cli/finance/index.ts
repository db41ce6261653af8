import { InvalidArgumentError, Option, type Command } from 'commander';
import { formatUsd } from '../../../domain/money';
import { fail, parseInstant, withFinance, write } from './context';

// What the commands do is loaded when one runs, not when the CLI starts: these modules bring
// pg, the event store and zod, which `tollgate --help` does not need (bench/cli-startup.ts).
const load = {
  progress: () => require('cli-progress') as typeof import('cli-progress'),
  balance: () => require('../../finance/balance') as typeof import('../../finance/balance'),
  replay: () => require('../../finance/replay') as typeof import('../../finance/replay'),
  statements: () => require('../../finance/statements') as typeof import('../../finance/statements'),
  verify: () => require('../../finance/verify') as typeof import('../../finance/verify'),
  registry: () => require('../../read-models/registry') as typeof import('../../read-models/registry'),
};

/**
 * The names of the projections in src/read-models/registry.ts, for `replay --projection`'s
 * help; written out so that the help does not load the projections (a unit test keeps the two
 * lists equal).
 */
export const PROJECTION_NAMES = ['expiries', 'balances', 'usage', 'journal', 'audit', 'retention', 'notices', 'status', 'memberships', 'admin-roles'] as const;

/**
 * The finance commands of the `tollgate` CLI: replay, verify, balance, statement, journal.
 * Each talks to the database directly (DATABASE_URL, or the embedded default).
 */
export function registerFinanceCommands(program: Command): void {
  program
    .command('replay')
    .description('rebuild projections from the beginning of the event log (stop the gateway first)')
    .addOption(new Option('--projection <name>', 'the projection to rebuild').choices([...PROJECTION_NAMES, 'all']).default('all'))
    .option('--page-size <events>', 'events read and applied per transaction', (v) => positiveInt(v), 5_000)
    .option('--no-progress', 'no progress bar (for logs and scripts)')
    .action(async (options: { projection: string; pageSize: number; progress: boolean }) => {
      const { projections } = load.registry();
      const { ProjectionBusyError, replayProjections } = load.replay();
      const chosen = options.projection === 'all' ? projections : projections.filter((p) => p.name === options.projection);
      await withFinance(async ({ database, store }) => {
        const bar = options.progress
          ? new (load.progress().SingleBar)({
              format: 'replay [{bar}] {percentage}% | {value}/{total} events | {rate} events/s | {eta_formatted} left',
              stream: process.stderr,
              hideCursor: true,
            })
          : undefined;
        let started = false;
        try {
          const result = await replayProjections(database.pool, store, chosen, {
            pageSize: options.pageSize,
            onProgress: ({ events, total, elapsedMs }) => {
              const rate = Math.round(events / Math.max(elapsedMs / 1_000, 0.001));
              if (!started) bar?.start(Math.max(total, events), 0, { rate: '0' });
              started = true;
              bar?.setTotal(Math.max(total, events));
              bar?.update(events, { rate: rate.toLocaleString('en-US') });
            },
          });
          bar?.stop();
          write(
            `replayed ${result.events} events into ${result.projections.join(', ')} in ${result.seconds.toFixed(1)} s (${Math.round(result.eventsPerSecond).toLocaleString('en-US')} events/s)\n`,
          );
        } catch (error) {
          bar?.stop();
          if (error instanceof ProjectionBusyError) return fail(error.message);
          throw error;
        }
      });
    });

  program
    .command('verify')
    .description(
      "recompute every account's balance from its events and compare with the projections; check the journal's trial balance and reservations past their deadline; exits 1 listing the differences",
    )
    .option('--grace-seconds <s>', 'how long past its deadline a reservation may stay open (the expiry process runs periodically)', (v) => positiveInt(v), 60)
    .action(async (options: { graceSeconds: number }) => {
      await withFinance(async ({ database, store }) => {
        const report = await load.verify().verifyFinance(database.pool, store, { graceMs: options.graceSeconds * 1_000 });
        if (report.ok) {
          write(`ok: ${report.accounts} accounts, ${report.events} events: balances, journal and reservations agree\n`);
          return;
        }
        for (const d of report.differences) write(`${d.check}\t${d.accountId ?? '-'}\t${d.detail}\n`);
        fail(`${report.differences.length} difference(s) found over ${report.accounts} accounts and ${report.events} events`);
      });
    });

  program
    .command('balance')
    .description("an account's balance as of an instant, computed from its events")
    .requiredOption('--account <id>', 'account id')
    .option('--as-of <instant>', 'ISO-8601 instant or date (UTC); default now', parseInstant)
    .action(async (options: { account: string; asOf?: string }) => {
      await withFinance(async ({ store }) => {
        const balance = await load.balance().balanceAsOf(store, options.account, options.asOf ?? new Date().toISOString());
        if (!balance) return fail(`no account ${options.account}`);
        write(
          [
            `account    ${balance.accountId}`,
            `as of      ${balance.asOf}`,
            `purchased  ${formatUsd(balance.purchased)}`,
            `promo      ${formatUsd(balance.promo)}`,
            `balance    ${formatUsd(balance.balance)}`,
            `reserved   ${formatUsd(balance.reserved)}`,
            `available  ${formatUsd(balance.available)}`,
            `negative   ${balance.negative ? 'yes' : 'no'}`,
            '',
          ].join('\n'),
        );
      });
    });

  program
    .command('statement')
    .description("CSV of every money movement on an account's credit in [from, to), with the running balance")
    .requiredOption('--account <id>', 'account id')
    .option('--from <instant>', 'ISO-8601 instant or date, inclusive', parseInstant)
    .option('--to <instant>', 'ISO-8601 instant or date, exclusive', parseInstant)
    .action(async (options: { account: string; from?: string; to?: string }) => {
      await withFinance(async ({ store }) => {
        const { statementCsv, statementOf } = load.statements();
        const statement = await statementOf(store, options.account, { from: options.from, to: options.to });
        if (!statement) return fail(`no account ${options.account}`);
        write(statementCsv(statement));
      });
    });

  program
    .command('journal')
    .description('CSV of the double-entry journal postings in [from, to) (debit and credit columns, USD)')
    .option('--from <instant>', 'ISO-8601 instant or date, inclusive', parseInstant)
    .option('--to <instant>', 'ISO-8601 instant or date, exclusive', parseInstant)
    .action(async (options: { from?: string; to?: string }) => {
      await withFinance(async ({ database }) => {
        const { journalCsv, journalLines } = load.statements();
        write(journalCsv(await journalLines(database.pool, { from: options.from, to: options.to })));
      });
    });
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}
