import { Command, InvalidArgumentError } from 'commander';
import { fail, withDatabase, write, type DatabaseContext } from '../lazy-database-context';

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

type IdentityModule = typeof import('../../identity/identity');

/** The people-and-credentials use cases over the CLI's database (no sessions or sign-in limits are used here). */
function identityOf(context: DatabaseContext): InstanceType<IdentityModule['Identity']> | null {
  const { Identity } = require('../../identity/identity') as IdentityModule;
  const { MailOutbox } = require('../../mail/outbox') as typeof import('../../mail/outbox');
  const pino = require('pino') as typeof import('pino');
  const pool = context.database.pool;
  const cost = Number(process.env['TOLLGATE_BCRYPT_COST'] ?? 12);
  if (!Number.isInteger(cost) || cost < 4 || cost > 15) {
    fail('TOLLGATE_BCRYPT_COST: expected an integer from 4 to 15');
    return null;
  }
  return new Identity(
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
}

function metadataFor(command: string, admin: string) {
  const { randomUUID } = require('node:crypto') as typeof import('node:crypto');
  const correlationId = `admins-${command}_${randomUUID()}`;
  return { now: new Date().toISOString(), correlationId, causationId: correlationId, actor: { kind: 'admin' as const, adminId: admin } };
}

/** The user named by --user <id> or --email <address>; fails (exit 1) when neither finds one. */
async function userOf(identity: NonNullable<ReturnType<typeof identityOf>>, options: { user?: string; email?: string }): Promise<string | null> {
  if ((options.user === undefined) === (options.email === undefined)) {
    fail('name the admin user with exactly one of --user <id> or --email <address>');
    return null;
  }
  if (options.user !== undefined) return options.user;
  const userId = await identity.userIdOfEmail(options.email!);
  if (userId === null) fail('no user has that email');
  return userId;
}

const ROLE_WORDS = `one of ${ROLES.join(', ')}: finance reads statements, balances, the journal and the verification; compliance the audit log, retention, accounts and personal-data exports; operator runs everything else (accounts, keys, prices, models, suspensions, credit, notices, admin users)`;
const ADMIN_OPTION = ['--admin <id>', 'who acts (recorded in the audit log as the actor)', process.env['TOLLGATE_ADMIN_ID'] ?? 'cli'] as const;

/** tollgate admins add | list | role | remove: operators as people, since there is no one to invite the first ones. */
export function registerAdmins(program: Command): void {
  const admins = program
    .command('admins')
    .description('operators as people: admin users who sign in with a password and act within a role (operator, finance, compliance)')
    .addHelpText(
      'after',
      `
Admin users sign in on the dashboard (/dashboard/#/admin-sign-in) with their email and password, and
two-factor if they turn it on, and reach only the /admin routes of their role; anything else is 403
insufficient_role. Every grant, change and removal is an event in the admin-roles stream and an entry
in the audit log naming who did it (--admin here; the person, over HTTP). There is always at least one
operator: the last one cannot be removed or given another role. The bootstrap admin key
(TOLLGATE_ADMIN_KEY) stays for first set-up and scripts. These commands read the database directly.`,
    );
  admins
    .command('add')
    .description(
      'create an admin user (or give an existing user an operator role); they sign in on the dashboard with their password (and two-factor if they turn it on) and reach the /admin routes of their role',
    )
    .requiredOption('--email <email>', "the admin user's email address")
    .requiredOption('--role <role>', ROLE_WORDS, parseRole)
    .option(...ADMIN_OPTION)
    .addHelpText(
      'after',
      '\nThe password is prompted for (not echoed), or read from the first line of stdin:\n  printf "%s\\n" "$PASSWORD" | tollgate admins add --email ops@example.org --role operator',
    )
    .action(async (options: { email: string; role: Role; admin: string }) => {
      const password = await readPassword();
      await withDatabase(async (context) => {
        const identity = identityOf(context);
        if (!identity) return;
        const added = await identity.addAdminUser({ email: options.email, password, role: options.role }, metadataFor('add', options.admin));
        if (!added.ok) return fail(added.error.message);
        write(`${JSON.stringify({ user_id: added.value.userId, role: options.role, created: added.value.created })}\n`);
      });
    });

  admins
    .command('list')
    .description('every admin user: id, email, role, since when, and whether two-factor is on')
    .option('--json', 'print a JSON array instead of a table')
    .action(async (_options: unknown, command: Command) => {
      // --json may be the main program's global option: read it with the globals.
      const options = command.optsWithGlobals<{ json?: boolean }>();
      await withDatabase(async (context) => {
        const identity = identityOf(context);
        if (!identity) return;
        const { catchUpProjection } = require('../../compliance/catch-up') as typeof import('../../compliance/catch-up');
        const { adminRolesProjection } = require('../../read-models/admin-roles') as typeof import('../../read-models/admin-roles');
        await catchUpProjection(context.database.pool, context.store, adminRolesProjection);
        const list = await identity.listAdmins();
        if (options.json) return write(`${JSON.stringify(list, null, 2)}\n`);
        if (list.length === 0) return write('no admin users (the bootstrap admin key still works)\n');
        write(`${['user_id', 'email', 'role', 'since', 'two_factor'].join('\t')}\n`);
        for (const a of list) write(`${[a.user_id, a.email ?? '(erased)', a.role, a.granted_at, a.two_factor_enabled ? 'on' : 'off'].join('\t')}\n`);
      });
    });

  admins
    .command('role')
    .description('give an admin user another role (refused for the last operator: someone must keep that role)')
    .option('--user <id>', "the admin user's id (usr_...)")
    .option('--email <email>', "or the admin user's email address")
    .requiredOption('--role <role>', ROLE_WORDS, parseRole)
    .option(...ADMIN_OPTION)
    .action(async (options: { user?: string; email?: string; role: Role; admin: string }) => {
      await withDatabase(async (context) => {
        const identity = identityOf(context);
        if (!identity) return;
        const userId = await userOf(identity, options);
        if (userId === null) return;
        const changed = await identity.changeAdminRole(userId, options.role, metadataFor('role', options.admin));
        if (!changed.ok) return fail(changed.error.message);
        write(`${JSON.stringify({ user_id: userId, role: options.role })}\n`);
      });
    });

  admins
    .command('remove')
    .description("take an admin user's operator role away and end their sessions; they stay a user (refused for the last operator)")
    .option('--user <id>', "the admin user's id (usr_...)")
    .option('--email <email>', "or the admin user's email address")
    .option(...ADMIN_OPTION)
    .action(async (options: { user?: string; email?: string; admin: string }) => {
      await withDatabase(async (context) => {
        const identity = identityOf(context);
        if (!identity) return;
        const userId = await userOf(identity, options);
        if (userId === null) return;
        const removed = await identity.removeAdmin(userId, metadataFor('remove', options.admin));
        if (!removed.ok) return fail(removed.error.message);
        write(`${JSON.stringify({ user_id: userId, removed: true })}\n`);
      });
    });
}
