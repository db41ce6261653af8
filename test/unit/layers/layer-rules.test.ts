/**
 * The layer rules (.dependency-cruiser.cjs, `npm run lint:layers`) bite: dependency-cruiser, run
 * as `npm test` runs it, with the repository's own config, on a small tree laid out like the
 * repository, reports each forbidden import by its rule and exits non-zero; the same tree
 * without those imports passes.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../../..');
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

/** Files every fixture holds: one module per layer, each importing only what it may. */
const ALLOWED: Record<string, string> = {
  'domain/money.ts': `import { z } from 'zod';\nexport const amount = z.bigint();\n`,
  'projections/balances.ts': `import { createHash } from 'node:crypto';\nimport { amount } from '../domain/money';\nexport const rows = [amount, createHash];\n`,
  'src/ports/store.ts': `export interface Store { read(): Promise<string> }\n`,
  'src/handlers/commit.ts': `import type { Store } from '../ports/store';\nimport { rows } from '../../projections/balances';\nexport const commit = (s: Store) => [s, rows];\n`,
  'src/read-models/usage.ts': `import type { Pool } from 'pg';\nexport const usage = (pool: Pool) => pool;\n`,
  'src/gateway.ts': `import { createPool } from '../adapters/postgres/pool';\nimport { app } from '../adapters/http/app';\nexport const wire = [createPool, app];\n`,
  'adapters/postgres/pool.ts': `import { Pool } from 'pg';\nexport const createPool = () => new Pool();\n`,
  'adapters/http/app.ts': `import express from 'express';\nimport { commit } from '../../src/handlers/commit';\nexport const app = [express, commit];\n`,
};

/** One forbidden import per rule: the file that makes it, and the rule that must name it. */
const VIOLATIONS: [rule: string, file: string, source: string][] = [
  ['domain-imports-nothing-of-the-repo', 'domain/leak.ts', `import { commit } from '../src/handlers/commit';\nexport const x = commit;\n`],
  ['domain-imports-only-zod-and-ts-pattern', 'domain/io.ts', `import { Pool } from 'pg';\nexport const x = Pool;\n`],
  ['projections-import-only-domain', 'projections/leak.ts', `import type { Store } from '../src/ports/store';\nexport type X = Store;\n`],
  ['projections-do-no-io', 'projections/io.ts', `import { readFileSync } from 'node:fs';\nexport const x = readFileSync;\n`],
  [
    'src-reaches-postgres-adapters-only-from-composition-roots',
    'src/handlers/pool-user.ts',
    `import { createPool } from '../../adapters/postgres/pool';\nexport const x = createPool;\n`,
  ],
  [
    'src-uses-pg-only-where-postgres-by-design',
    'src/handlers/sql.ts',
    `import type { Pool } from 'pg';\nexport const x = (pool: Pool) => pool.query('SELECT 1');\n`,
  ],
  ['src-imports-no-adapter-outside-composition-roots', 'src/handlers/http.ts', `import { app } from '../../adapters/http/app';\nexport const x = app;\n`],
  ['src-imports-no-infrastructure-client-outside-composition-roots', 'src/handlers/web.ts', `import express from 'express';\nexport const x = express;\n`],
  ['stripe-use-cases-import-only-the-payments-adapter', 'src/payments/http.ts', `import { app } from '../../adapters/http/app';\nexport const x = app;\n`],
  ['inference-use-case-imports-only-the-inference-adapter', 'src/inference/http.ts', `import { app } from '../../adapters/http/app';\nexport const x = app;\n`],
  ['http-adapter-does-not-query-postgres', 'adapters/http/sql.ts', `import { createPool } from '../postgres/pool';\nexport const x = createPool;\n`],
];

interface Outcome {
  readonly code: number;
  /** "rule from" for each violation the report names */
  readonly violations: string[];
}

function fixture(extra: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tollgate-layers-'));
  for (const [file, source] of Object.entries({ ...ALLOWED, ...extra })) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    writeFileSync(join(dir, file), source);
  }
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'commonjs' } }));
  // npm packages resolve through a link to the repository's node_modules; the link is kept as
  // the path (not followed to the repository), as the rules expect node_modules/ beside the layers.
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
  writeFileSync(
    join(dir, '.dependency-cruiser.cjs'),
    `const rules = require(${JSON.stringify(CONFIG)});\nmodule.exports = { ...rules, options: { ...rules.options, preserveSymlinks: true } };\n`,
  );
  return dir;
}

/** dependency-cruiser as `npm run lint:layers` runs it (its default report), with its real exit code. */
function cruise(dir: string): Promise<Outcome> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [DEPCRUISE, '--config', '.dependency-cruiser.cjs', 'domain', 'projections', 'src', 'adapters'],
      { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        const violations = [...`${stdout}\n${stderr}`.matchAll(/^\s*error (\S+): (\S+) →/gm)].map(([, rule, from]) => `${rule} ${from}`);
        done({ code, violations });
      },
    );
  });
}

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

it('passes a tree whose layers import only what they may', async () => {
  const dir = fixture({});
  dirs.push(dir);
  expect(await cruise(dir)).toEqual({ code: 0, violations: [] });
}, 120_000);

it('reports every forbidden import by its rule, and exits non-zero', async () => {
  const dir = fixture(Object.fromEntries(VIOLATIONS.map(([, file, source]) => [file, source])));
  dirs.push(dir);
  const outcome = await cruise(dir);
  expect(outcome.code).not.toBe(0);
  // Each planted import, named by its own rule, and nothing else.
  expect(outcome.violations.sort()).toEqual(VIOLATIONS.map(([rule, file]) => `${rule} ${file}`).sort());
}, 120_000);

/**
 * What an import rule cannot see: a route calling `.query(` on a pool it was handed. The HTTP
 * adapter parses, calls the application and answers; SQL lives in src/ and adapters/postgres.
 */
describe('the HTTP adapter holds no SQL', () => {
  const HTTP = join(ROOT, 'adapters/http');
  const sources = readdirSync(HTTP, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(HTTP, name));
  it('finds the routes', () => expect(sources.length).toBeGreaterThan(10));
  it.each(sources.map((file) => [relative(ROOT, file), file]))('%s sends no query to PostgreSQL', (_name, file) => {
    expect(readFileSync(file, 'utf8')).not.toMatch(/\.query\s*[<(]/);
  });
});
