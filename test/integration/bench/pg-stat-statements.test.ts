import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'pg';
import { startBenchPostgres } from '../../../bench/support/embedded-postgres';
import { runToCompletion } from '../../support/processes';

// BENCH_PG_STAT_STATEMENTS: a bench's PostgreSQL loads pg_stat_statements (planning tracked) and
// writes calls and plans per statement when it stops; how the named statements' plans were counted.
test('with BENCH_PG_STAT_STATEMENTS a bench PostgreSQL writes calls and plans per statement on stop: a named statement is planned once per generic plan', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pss-'));
  const file = join(dir, 'statements.tsv');
  const previous = process.env.BENCH_PG_STAT_STATEMENTS;
  process.env.BENCH_PG_STAT_STATEMENTS = file;
  try {
    const pg = await startBenchPostgres();
    try {
      const pool = new Pool({ connectionString: pg.url, max: 1 });
      try {
        for (let i = 0; i < 12; i++) await pool.query({ name: 'named_probe', text: 'SELECT $1::int4 AS named_probe', values: [i] });
        for (let i = 0; i < 12; i++) await pool.query('SELECT $1::int8 AS unnamed_probe', [i]);
      } finally {
        await pool.end();
      }
    } finally {
      delete process.env.BENCH_PG_STAT_STATEMENTS;
      await pg.stop();
    }
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('calls\tplans\tplan_ms\texec_ms\tquery');
    const row = (marker: string) =>
      lines
        .find((l) => l.includes(marker))
        ?.split('\t')
        .slice(0, 2);
    // Named: five custom plans, then one generic plan reused. Unnamed: planned on every call.
    expect(row('named_probe')).toEqual(['12', '6']);
    expect(row('unnamed_probe')).toEqual(['12', '12']);
  } finally {
    if (previous === undefined) delete process.env.BENCH_PG_STAT_STATEMENTS;
    else process.env.BENCH_PG_STAT_STATEMENTS = previous;
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

test('bench/plan-cache.ts --help says what it prints and exits 0, starting nothing', async () => {
  const help = await runToCompletion(process.execPath, ['--import', 'tsx', 'bench/plan-cache.ts', '--help'], {});
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('force_generic_plan');
  expect(help.stdout).toContain('BENCH_PG_STAT_STATEMENTS');
});
