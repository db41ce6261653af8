import { randomUUID } from 'node:crypto';
import { Command } from 'commander';
import { fail, parseInstant, parsePositiveInt, table, wantsJson, withCompliance, withJsonOption, write, type ComplianceContext } from './context';

// What the commands do is loaded when one runs, not when the CLI starts: these modules bring
// pg, the event store and zod, which `tollgate --help` does not need (bench/cli-startup.ts).
const load = {
  auditLog: () => require('../../compliance/audit-log') as typeof import('../../compliance/audit-log'),
  catchUp: () => require('../../compliance/catch-up') as typeof import('../../compliance/catch-up'),
  export: () => require('../../compliance/export') as typeof import('../../compliance/export'),
  personalData: () => require('../../compliance/personal-data') as typeof import('../../compliance/personal-data'),
  retention: () => require('../../compliance/retention') as typeof import('../../compliance/retention'),
  retentionSchedule: () => require('../../compliance/retention-schedule') as typeof import('../../compliance/retention-schedule'),
  auditProjection: () => (require('../../read-models/audit') as typeof import('../../read-models/audit')).auditProjection,
  retentionProjection: () => (require('../../read-models/retention') as typeof import('../../read-models/retention')).retentionProjection,
  zod: () => require('zod') as typeof import('zod'),
};

/** Audit and retention read the projections; bring them to the head of the log first. */
async function catchUp({ database, store }: ComplianceContext): Promise<void> {
  const { catchUpProjection } = load.catchUp();
  await catchUpProjection(database.pool, store, load.auditProjection());
  await catchUpProjection(database.pool, store, load.retentionProjection());
}

/**
 * The compliance commands of the `tollgate` CLI: audit (and verify-chain), retention plan/run,
 * export, accounts correct. Each talks to the database directly.
 */
export function registerComplianceCommands(program: Command): void {
  const audit = program
    .command('audit')
    .description('who did what: administrative and security-relevant acts, oldest first (a table, or JSON lines with --json)')
    .option('--actor <id>', 'the acting admin, key or process: an id, or kind:id (admin:ada)')
    .option('--action <action>', 'e.g. api_key.revoked, account.suspended, price.set, credit.manual_top_up')
    .option('--target <id>', 'the account, key or model acted on: an id, or kind:id (account:acct_1)')
    .option('--from <instant>', 'from this instant (inclusive)', parseInstant)
    .option('--to <instant>', 'until this instant (exclusive)', parseInstant)
    .option('--limit <n>', 'at most this many entries', parsePositiveInt, 1_000);
  withJsonOption(audit, 'one JSON object per line');
  audit.action(async (options: { actor?: string; action?: string; target?: string; from?: string; to?: string; limit: number }, command: Command) => {
    await withCompliance(async (context) => {
      await load.catchUp().catchUpProjection(context.database.pool, context.store, load.auditProjection());
      const entries = await load.auditLog().queryAudit(context.database.pool, options);
      if (wantsJson(command)) {
        write(entries.map((e) => `${JSON.stringify(e)}\n`).join(''));
        return;
      }
      write(
        table(
          ['ENTRY', 'TIME', 'ACTOR', 'ACTION', 'TARGET', 'REASON', 'CORRELATION'],
          entries.map((e) => [
            e.entryNo,
            e.occurredAt,
            `${e.actorKind}:${e.actorId}`,
            e.action,
            `${e.targetKind}:${e.targetId}`,
            e.reason ?? '-',
            e.correlationId,
          ]),
        ),
      );
    });
  });

  const verify = audit.command('verify-chain').description("recompute the audit log's hash chain from its anchor; exits 1 naming the first broken entry");
  withJsonOption(verify, 'print the verification as JSON');
  verify.action(async (_options: unknown, command: Command) => {
    await withCompliance(async (context) => {
      const { describeBrokenLink, recordedAuditAnchors, verifyAuditChain } = load.auditLog();
      await load.catchUp().catchUpProjection(context.database.pool, context.store, load.auditProjection());
      const result = await verifyAuditChain(context.database.pool, await recordedAuditAnchors(context.store));
      if (wantsJson(command)) write(`${JSON.stringify(result, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
      if (!result.ok) return fail(describeBrokenLink(result.broken));
      if (!wantsJson(command)) {
        write(
          `audit chain intact: ${result.entries} entries from anchor ${result.anchor.entryNo} to entry ${result.head.entryNo} (head ${result.head.hash})\n`,
        );
      }
    });
  });

  const retention = program.command('retention').description('what Tollgate keeps and for how long; carry out what is due');
  const plan = retention
    .command('plan')
    .description(
      'list what will expire or be erased when: request metadata and audit entries after 90 days, personal data within 30 days of closure; wallet transactions are kept',
    )
    .option('--now <instant>', 'measure periods as of this instant instead of now', parseInstant);
  withJsonOption(plan, 'print the plan as JSON');
  plan.action(async (options: { now?: string }, command: Command) => {
    await withCompliance(async (context) => {
      await catchUp(context);
      const items = await load.retention().retentionPlan(context.database.pool, options.now !== undefined ? { now: options.now } : {});
      if (wantsJson(command)) {
        write(`${JSON.stringify(items, null, 2)}\n`);
        return;
      }
      write(
        table(
          ['CATEGORY', 'SUBJECT', 'COUNT', 'EXPIRES', 'DUE', 'ACTION'],
          items.map((i) => [i.category, i.subject, i.count === null ? '-' : String(i.count), i.expiresAt ?? 'never', i.due ? 'yes' : 'no', i.action]),
        ),
      );
      const last = await load.retentionSchedule().lastRetentionRun(context.ledger);
      write(
        last === null
          ? 'last retention run: never (the gateway runs it daily, and at start-up when one is overdue)\n'
          : `last retention run: ${last.runId} as of ${last.asOf}: ${last.requestMetadataPurged} request-log entries, ` +
              `${last.auditEntriesPurged} audit entries deleted; personal data erased for ${last.personalDataErased.length} account(s)\n`,
      );
    });
  });

  const run = retention
    .command('run')
    .description(
      "carry out what is due: destroy due accounts' personal-data keys (crypto-shredding) and record the erasure, purge old audit entries (anchoring the chain) and request metadata; records the run on the retention stream",
    )
    .option('--now <instant>', 'measure periods as of this instant instead of now', parseInstant)
    .option('--run-id <id>', 'an id for this run: running again with the same id records nothing new');
  withJsonOption(run, 'print the report as JSON');
  run.action(async (options: { now?: string; runId?: string }, command: Command) => {
    await withCompliance(async (context) => {
      await catchUp(context);
      const report = await load
        .retention()
        .runRetention(
          { pool: context.database.pool, ledger: context.ledger, vault: context.vault },
          { ...(options.now !== undefined ? { now: options.now } : {}), ...(options.runId ? { runId: options.runId } : {}) },
        );
      // The run's own events (erasures, the run record) go into the read models before the command ends.
      await catchUp(context);
      if (wantsJson(command)) {
        write(`${JSON.stringify(report, null, 2)}\n`);
      } else {
        write(
          `retention run ${report.runId} as of ${report.asOf}: personal data erased for ${report.personalDataErased.length} account(s), ` +
            `${report.auditEntriesPurged} audit entries purged, ${report.requestMetadataPurged} request metadata rows purged\n`,
        );
      }
      if (report.erasuresRefused.length > 0) {
        fail(`erasure refused for ${report.erasuresRefused.map((r) => `${r.accountId} (${r.error})`).join(', ')}`);
      }
    });
  });

  program
    .command('export')
    .description('everything held about an account and its people, as JSON, for a data-access request')
    .requiredOption('--account <id>', 'the account id')
    .option('--admin <id>', 'the operator exporting (recorded in the audit log as who saw the personal data)', process.env['TOLLGATE_ADMIN_ID'] ?? 'cli')
    .option('--purpose <text>', 'why, e.g. "data-access request #123" (recorded as the audit entry\'s reason)')
    .action(async (options: { account: string; admin: string; purpose?: string }) => {
      const purposeSchema = load.zod().z.string().trim().min(1).max(200);
      if (options.purpose !== undefined && !purposeSchema.safeParse(options.purpose).success) return fail('--purpose: expected 1-200 characters');
      await withCompliance(async (context) => {
        await catchUp(context);
        const correlationId = `export_${randomUUID()}`;
        const metadata = {
          now: new Date().toISOString(),
          correlationId,
          causationId: correlationId,
          actor: { kind: 'admin' as const, adminId: options.admin },
        };
        const exported = await load.export().exportAccount({ pool: context.database.pool, store: context.store, vault: context.vault }, options.account, {
          metadata,
          purpose: options.purpose?.trim() ?? null,
        });
        if (!exported) return fail(`account ${options.account} not found`);
        write(`${JSON.stringify(exported, null, 2)}\n`);
      });
    });

  // `accounts` may already be a command group of the main program: add to it.
  const accounts = program.commands.find((c) => c.name() === 'accounts') ?? program.command('accounts').description('customer accounts');
  accounts
    .command('correct')
    .description("correct an account's personal data (rectification): recorded as PersonalDataCorrected, encrypted with the account's key, audited")
    .requiredOption('--account <id>', 'the account id')
    .option('--name <name>', 'the corrected display name')
    .option('--email <email>', 'the corrected email address')
    .option('--admin <id>', 'the operator making the correction (the audit actor)', process.env['TOLLGATE_ADMIN_ID'] ?? 'cli')
    .action(async (options: { account: string; name?: string; email?: string; admin: string }) => {
      const { z } = load.zod();
      const emailSchema = z.email().max(254);
      const nameSchema = z.string().trim().min(1).max(200);
      // Messages name the field, never the value given.
      if (options.email !== undefined && !emailSchema.safeParse(options.email).success) return fail('--email: expected an email address');
      if (options.name !== undefined && !nameSchema.safeParse(options.name).success) return fail('--name: expected 1-200 characters');
      if (options.name === undefined && options.email === undefined) return fail('give --name, --email or both');
      await withCompliance(async (context) => {
        const correlationId = `correction_${randomUUID()}`;
        const result = await load.personalData().correctPersonalData(context, {
          accountId: options.account,
          ...(options.name !== undefined ? { displayName: options.name.trim() } : {}),
          ...(options.email !== undefined ? { email: options.email } : {}),
          metadata: { now: new Date().toISOString(), correlationId, causationId: correlationId, actor: { kind: 'admin', adminId: options.admin } },
        });
        if (!result.ok) return fail(`correction refused: ${result.error.error}`);
        write(
          `personal data of account ${options.account} corrected (${[options.name !== undefined ? 'name' : null, options.email !== undefined ? 'email' : null].filter(Boolean).join(', ')})\n`,
        );
      });
    });
}
