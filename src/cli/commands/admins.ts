import { Command, InvalidArgumentError } from 'commander';
import { fail, withDatabase, write } from '../lazy-database-context';

const ROLES = ['operator', 'finance', 'compliance'] as const;
type Role = (typeof ROLES)[number];

function parseRole(value: string): Role {
  if (!(ROLES as readonly string[]).includes(value)) throw new InvalidArgumentError(`expected one of ${ROLES.join(', ')}`);
  return value as Role;
}

/** The password: typed at a prompt that does not echo it, or the first line of stdin when piped. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  process.stderr.write('Password (at least 12 characters): ');
  const muted = rl as unknown as { _writeToOutput: (s: string) => void };
  muted._writeToOutput = () => undefined;
  const answer = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return answer;
}

/** tollgate admins add: the first admin users (operators as people), since there is no one to invite them. */
export function registerAdmins(program: Command): void {
  const admins = program.command('admins').description('operators as people: admin users who sign in with a password and act within a role');
  admins
    .command('add')
    .description(
      'create an admin user (or give an existing user an operator role); they sign in on the dashboard with their password (and two-factor if they turn it on) and reach the /admin routes of their role. Reads the database directly.',
    )
    .requiredOption('--email <email>', "the admin user's email address")
    .requiredOption(
      '--role <role>',
      `one of ${ROLES.join(', ')}: finance reads statements and balances; compliance the audit log, retention and personal data; operator runs accounts, keys, prices, suspensions and credit`,
      parseRole,
    )
    .option('--admin <id>', 'who grants it (recorded in the audit log as the actor)', process.env['TOLLGATE_ADMIN_ID'] ?? 'cli')
    .addHelpText(
      'after',
      '\nThe password is prompted for (not echoed), or read from the first line of stdin:\n  printf "%s\\n" "$PASSWORD" | tollgate admins add --email ops@example.org --role operator',
    )
    .action(async (options: { email: string; role: Role; admin: string }) => {
      const password = await readPassword();
      await withDatabase(async (context) => {
        const { Identity } = require('../../identity/identity') as typeof import('../../identity/identity');
        const { MailOutbox } = require('../../mail/outbox') as typeof import('../../mail/outbox');
        const pino = require('pino') as typeof import('pino');
        const pool = context.database.pool;
        const cost = Number(process.env['TOLLGATE_BCRYPT_COST'] ?? 12);
        if (!Number.isInteger(cost) || cost < 4 || cost > 15) return fail('TOLLGATE_BCRYPT_COST: expected an integer from 4 to 15');
        const identity = new Identity(
          pool,
          context.store,
          context.ledger,
          context.vault,
          new MailOutbox(pool, context.store, context.vault),
          pino({ level: 'warn' }, pino.destination(2)),
          {
            bcryptCost: cost,
            sessionIdleMs: 0,
            sessionMaxMs: 0,
            signupPromo: 0n as never,
            signupPromoDays: 0,
            failuresPerEmail: 0,
            failuresPerAddress: 0,
            failureWindowMs: 0,
          },
        );
        const { randomUUID } = await import('node:crypto');
        const correlationId = `admins-add_${randomUUID()}`;
        const added = await identity.addAdminUser(
          { email: options.email, password, role: options.role },
          { now: new Date().toISOString(), correlationId, causationId: correlationId, actor: { kind: 'admin', adminId: options.admin } },
        );
        if (!added.ok) return fail(added.error.message);
        write(`${JSON.stringify({ user_id: added.value.userId, role: options.role, created: added.value.created })}\n`);
      });
    });
}
