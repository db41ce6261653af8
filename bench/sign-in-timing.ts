/**
 * Does a failed sign-in take as long for an unknown email as for a known email with a wrong
 * password? Issue 14 asks for "the same answer and timing"; a gap would let anyone probe which
 * addresses are registered. Measured in one run, alternating the two cases so that the machine's
 * load falls on both alike:
 *   npx tsx bench/sign-in-timing.ts [--runs 40] [--cost 12]
 * A fresh embedded PostgreSQL, the real Identity (src/identity) at the given bcrypt cost (12 is
 * TOLLGATE_BCRYPT_COST's default), one registered user. Prints the median, p10 and p90 of each
 * case and the ratio of the medians (unknown / wrong password; 1.00 is equal). A successful
 * sign-in is measured too, for scale. This is a report, not a test: nothing here passes or fails
 * on the clock.
 */
import pino from 'pino';
import { Pool } from 'pg';
import { DEFAULT_ACCOUNT_POLICY } from '../domain/account';
import { domainEventCodec, type DomainEvent } from '../domain/events';
import { createPostgresEventStore } from '../adapters/eventstore/postgres';
import { migrate } from '../adapters/postgres/migrate';
import { migrations } from '../adapters/postgres/migrations';
import { MasterKey, openPersonalDataVault } from '../adapters/postgres/personal-data-vault';
import { systemMetadata } from '../src/command-metadata';
import { Identity } from '../src/identity/identity';
import { createLedger } from '../src/ledger';
import { MailOutbox } from '../src/mail/outbox';
import { flag, printTable, startBenchPostgres } from './support/embedded-postgres';

const runs = flag('--runs', 40);
const cost = flag('--cost', 12);
const PASSWORD = 'violet kettle drums at noon';

function stats(times: readonly number[]) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { median: at(0.5), p10: at(0.1), p90: at(0.9) };
}

async function main(): Promise<void> {
  const pg = await startBenchPostgres();
  const pool = new Pool({ connectionString: pg.url, max: 4 });
  try {
    await migrate(pool, migrations);
    const store = createPostgresEventStore<DomainEvent>(pool, domainEventCodec, { notify: false });
    const vault = (await openPersonalDataVault(pool, MasterKey.generate())).vault;
    const identity = new Identity(
      pool,
      store,
      createLedger(store, DEFAULT_ACCOUNT_POLICY),
      vault,
      new MailOutbox(pool, store, vault),
      pino({ level: 'silent' }),
      {
        bcryptCost: cost,
        sessionIdleMs: 3_600_000,
        sessionMaxMs: 86_400_000,
        signupPromo: 0n as never,
        signupPromoDays: 0,
        // No sign-in limit gets in the way of the measurement.
        failuresPerEmail: 1_000_000,
        failuresPerAddress: 1_000_000,
        failureWindowMs: 60_000,
      },
    );
    const added = await identity.addAdminUser(
      { email: 'known@bench.example', password: PASSWORD, role: 'finance' },
      { ...systemMetadata('bench'), actor: { kind: 'admin', adminId: 'bench' } },
    );
    if (!added.ok) throw new Error(added.error.message);
    const attempt = async (email: string, password: string, expectOk: boolean) => {
      const started = performance.now();
      const result = await identity.signIn({ email, password, clientAddress: '127.0.0.1', userAgent: null });
      const ms = performance.now() - started;
      if (result.ok !== expectOk) throw new Error(`unexpected sign-in outcome for ${expectOk ? 'the right' : 'a wrong'} password`);
      return ms;
    };
    // Warm-up: the dummy hash, the identity secret, connections, JIT.
    for (let i = 0; i < 3; i++) {
      await attempt(`warm${i}@bench.example`, PASSWORD, false);
      await attempt('known@bench.example', 'wrong wrong wrong', false);
    }
    const unknown: number[] = [];
    const wrong: number[] = [];
    const right: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate which goes first, so neither always follows the other.
      if (i % 2 === 0) {
        unknown.push(await attempt(`nobody${i}@bench.example`, PASSWORD, false));
        wrong.push(await attempt('known@bench.example', `wrong password ${i}`, false));
      } else {
        wrong.push(await attempt('known@bench.example', `wrong password ${i}`, false));
        unknown.push(await attempt(`nobody${i}@bench.example`, PASSWORD, false));
      }
      if (i % 4 === 0) right.push(await attempt('known@bench.example', PASSWORD, true));
    }
    const u = stats(unknown);
    const w = stats(wrong);
    const r = stats(right);
    console.log(`sign-in timing, bcrypt cost ${cost}, ${runs} attempts per failing case (Identity.signIn on embedded PostgreSQL)`);
    printTable([
      ['case', 'median ms', 'p10 ms', 'p90 ms', 'ratio to wrong password'],
      ['unknown email', u.median.toFixed(1), u.p10.toFixed(1), u.p90.toFixed(1), (u.median / w.median).toFixed(3)],
      ['known email, wrong password', w.median.toFixed(1), w.p10.toFixed(1), w.p90.toFixed(1), '1.000'],
      ['known email, right password (for scale)', r.median.toFixed(1), r.p10.toFixed(1), r.p90.toFixed(1), (r.median / w.median).toFixed(3)],
    ]);
  } finally {
    await pool.end();
    await pg.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
