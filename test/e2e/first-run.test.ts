import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import OpenAI from 'openai';
import { freePort } from '../support/mock-llm';
import { until } from '../support/wait';

const repoRoot = resolve(__dirname, '../..');

/** `npm start` with nothing configured: embedded PostgreSQL, the stand-in upstream, a demo account. */
function start(dataDir: string, pgPort: number, port: number): { child: ChildProcess; output: () => string } {
  const env: NodeJS.ProcessEnv = { ...process.env, TOLLGATE_DATA_DIR: dataDir, TOLLGATE_EMBEDDED_PG_PORT: String(pgPort), PORT: String(port), LOG_LEVEL: 'warn' };
  for (const name of ['DATABASE_URL', 'TOLLGATE_MODELS_FILE', 'TOLLGATE_ADMIN_KEY', 'EVENTSTORE_URL', 'TOLLGATE_MASTER_KEY', 'TOLLGATE_MASTER_KEY_FILE']) delete env[name];
  const child = spawn(process.execPath, ['--import', 'tsx', resolve(repoRoot, 'src/main.ts')], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

describe('first run', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'tollgate-first-run-'));
  // The embedded server runs as the `postgres` user when we are root: it must reach the directory.
  chmodSync(dataDir, 0o755);
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  test(
    'with nothing configured, a newcomer makes a real chat completion with the openai client within a minute, and a restart keeps the data',
    async () => {
      const began = Date.now();
      const [pgPort, port] = [await freePort(), await freePort()];
      const first = start(join(dataDir, 'state'), pgPort, port);
      let key: string;
      let masterKey = '';
      try {
        key = await until(() => /^\s+(tg_[A-Za-z0-9]{16}_[A-Za-z0-9_-]{43})\s*$/m.exec(first.output())?.[1], { what: 'the printed demo key', timeoutMs: 45_000 });
        await until(() => (first.output().includes('tollgate is listening') || /curl http/.test(first.output()) ? true : undefined), { what: 'the curl line', timeoutMs: 45_000 });
        expect(first.output()).toMatch(/STAND-IN upstream \(mock-llm\)/);
        // The embedded default made its own master key, beside the data, readable by the owner only, and said so.
        const masterKeyFile = join(dataDir, 'state', 'master-key');
        expect(statSync(masterKeyFile).mode & 0o777).toBe(0o600);
        expect(readFileSync(masterKeyFile, 'utf8')).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
        const keyLine = first.output().split('\n').find((line) => line.includes('generated a new master key for personal data; back it up'));
        expect(keyLine).toContain(masterKeyFile);
        masterKey = readFileSync(masterKeyFile, 'utf8');
        expect(first.output()).toMatch(/Tollgate admin key \(shown once, store it now\): tgadmin_/);
        expect(first.output()).toContain(`curl http://127.0.0.1:${port}/v1/chat/completions -H "Authorization: Bearer ${key}"`);

        const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0 });
        const reply = await client.chat.completions.create({ model: 'tollgate-demo', messages: [{ role: 'user', content: 'Hello' }] });
        expect(reply.choices[0]!.message.content).toContain('stand-in upstream');
        expect(Date.now() - began).toBeLessThan(60_000);
      } finally {
        await stop(first.child);
      }

      // Same data directory again: the same database, the same demo key, no new admin key.
      const second = start(join(dataDir, 'state'), pgPort, port);
      try {
        await until(() => (second.output().includes(key) ? true : undefined), { what: 'the demo key printed again', timeoutMs: 45_000 });
        expect(second.output()).not.toContain('Tollgate admin key (shown once');
        // The same master key: not generated again, and the demo account's data still opens (the start would stop otherwise).
        expect(second.output()).not.toContain('generated a new master key');
        expect(readFileSync(join(dataDir, 'state', 'master-key'), 'utf8')).toBe(masterKey);
        const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0 });
        const account = await fetch(`http://127.0.0.1:${port}/v1/account`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json() as Promise<{ balance_usd: string }>);
        // USD 5 of promo less the first request: 12 prompt tokens at USD 0.50/M + 21 completion
        // tokens at USD 1.50/M = 37.5 micro-USD, rounded up once to 38.
        expect(account.balance_usd).toBe('4.999962');
        await client.chat.completions.create({ model: 'tollgate-demo', messages: [{ role: 'user', content: 'Again' }] });
      } finally {
        await stop(second.child);
      }
    },
    120_000,
  );
});
