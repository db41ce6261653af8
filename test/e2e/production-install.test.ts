import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  linkSync,
  readFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createTestDatabase } from '../support/database';
import { writeModelsFile } from '../support/e2e-processes';
import { defaultMockLlmConfig, freePort, startMockLlm, type MockLlm } from '../support/mock-llm';

/**
 * What the production image holds, run without Docker: the final stage's files (dist/, bin/,
 * package.json, package-lock.json: test/unit/config/image.test.ts checks the Dockerfile copies
 * exactly these) and the production dependencies alone (`npm ls --omit=dev`), hard-linked into a
 * fresh directory, with the image's environment. No dev dependency can be reached from there:
 * the gateway starts on a models file all the same, and without one it says what is missing.
 */

jest.setTimeout(180_000);

const repoRoot = resolve(__dirname, '../..');
const imageEnv = { NODE_ENV: 'production', TOLLGATE_REQUIRE_MODELS_FILE: 'true' };
let app: string;
let upstream: MockLlm;
const children: ChildProcess[] = [];

/** Recreates `from` at `to` with hard links where it can (no copying of the 60 MB PostgreSQL binaries). */
function link(from: string, to: string): void {
  const stats = lstatSync(from);
  if (stats.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
  else if (stats.isDirectory()) {
    mkdirSync(to, { recursive: true });
    for (const entry of readdirSync(from)) link(join(from, entry), join(to, entry));
  } else {
    try {
      linkSync(from, to);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
      copyFileSync(from, to); // the temporary directory is on another file system
    }
  }
}

beforeAll(async () => {
  upstream = await startMockLlm(defaultMockLlmConfig());
  // Outside the repository, so nothing resolves from its node_modules.
  app = mkdtempSync(join(tmpdir(), 'tollgate-production-'));
  chmodSync(app, 0o755);
  for (const path of ['dist', 'bin', 'package.json', 'package-lock.json']) link(join(repoRoot, path), join(app, path));
  const production = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: repoRoot, encoding: 'utf8' })
    .split('\n')
    .map((path) => relative(repoRoot, path))
    // Top-level packages; the ones nested inside them come along.
    .filter((path) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path));
  for (const path of production) {
    mkdirSync(dirname(join(app, path)), { recursive: true });
    link(join(repoRoot, path), join(app, path));
  }
});

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await upstream?.stop();
  if (app) rmSync(app, { recursive: true, force: true });
});

function gateway(env: Record<string, string | undefined>) {
  const full: NodeJS.ProcessEnv = { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', TOLLGATE_DATA_DIR: join(app, 'data'), ...env };
  for (const [name, value] of Object.entries(full)) if (value === undefined) delete full[name];
  delete full.NODE_OPTIONS;
  const child = spawn(process.execPath, ['dist/src/main.js'], { cwd: app, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return { child, output: () => output, exited };
}

test('the directory holds production dependencies only: no dev dependency resolves from it', () => {
  const resolvable = (name: string) => {
    try {
      require.resolve(`${name}/package.json`, { paths: [join(app, 'dist/src')] });
      return true;
    } catch {
      return false;
    }
  };
  const packageJson = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
  expect(['@dwmkerr/mock-llm', 'typescript', 'tsx', 'jest', 'openai'].filter(resolvable)).toEqual([]);
  // (Not every package exports its package.json: presence is checked on disk.)
  expect(Object.keys(packageJson.dependencies).filter((name) => !existsSync(join(app, 'node_modules', name, 'package.json')))).toEqual([]);
});

test('with a models file, the gateway starts on production dependencies alone: ready, dashboard and API reference served; SIGTERM stops it cleanly', async () => {
  const port = await freePort();
  const modelsFile = writeModelsFile([{ id: 'm', upstreams: [{ baseUrl: upstream.baseUrl, capacity: 4 }], maxOutputTokens: 100, operations: ['chat'] }]);
  const running = gateway({ ...imageEnv, PORT: String(port), DATABASE_URL: await createTestDatabase('prod'), TOLLGATE_MODELS_FILE: modelsFile });
  const url = `http://127.0.0.1:${port}`;
  // A safety net for a process that never gets ready, generous for a loaded machine.
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (running.child.exitCode !== null) throw new Error(`gateway exited with ${running.child.exitCode}: ${running.output()}`);
    const status = await fetch(`${url}/readyz`).then(
      (r) => r.status,
      () => 0,
    );
    if (status === 200) break;
    if (Date.now() > deadline) throw new Error(`gateway not ready: ${running.output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const path of [
    '/dashboard/',
    '/dashboard/static/app.js',
    '/dashboard/vendor/preact.mjs',
    '/openapi.json',
    '/docs',
    '/docs/assets/swagger-ui-bundle.js',
  ]) {
    expect([path, (await fetch(`${url}${path}`)).status]).toEqual([path, 200]);
  }
  running.child.kill('SIGTERM');
  expect(await running.exited).toBe(0);
  expect(running.output()).not.toMatch(/STAND-IN/);
});

test("without the image's requirement and without a models file, a production install stops with one line saying what is missing", async () => {
  const running = gateway({
    PORT: String(await freePort()),
    DATABASE_URL: await createTestDatabase('prod'),
    TOLLGATE_MODELS_FILE: undefined,
    TOLLGATE_REQUIRE_MODELS_FILE: undefined,
    NODE_ENV: 'production',
  });
  expect(await running.exited).toBe(1);
  expect(running.output()).toContain(
    'tollgate: the stand-in upstream needs @dwmkerr/mock-llm, a development dependency this install lacks (installed with --omit=dev): set TOLLGATE_MODELS_FILE to serve real models\n',
  );
});
